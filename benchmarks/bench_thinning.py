"""Batch inference time: LeNet-300-100 against its thinned copy.

Half of each hidden layer's neurons are removed (structured pruning, then
``thin``): the masked model is no faster than the dense one (it multiplies
the same matrices, zeros included), the thinned one multiplies smaller
matrices. Runs interleave the models so background load hits all alike; the
process-CPU-time figure is the stable one on a busy machine.

    python benchmarks/bench_thinning.py
"""

import os
import platform
import time

import numpy as np

import tinynet
from compression.pruning import count_parameters, prune_units, thin

print(
    f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}"
)
tinynet.manual_seed(0)
dense = tinynet.models.lenet_300_100().eval()
masked = tinynet.models.lenet_300_100().eval()
masked.load_state_dict(dense.state_dict())
prune_units(masked, 0.5)  # layers 1 and 3: 300 -> 150, 100 -> 50
thinned = thin(masked).eval()
x = np.random.default_rng(0).random((1000, 1, 28, 28), dtype=np.float32)


def run_ms(model, clock=time.perf_counter):
    t0 = clock()
    model(x)
    return 1000 * (clock() - t0)


models = {"dense": dense, "masked": masked, "thinned": thinned}
times = {name: [] for name in models}
cpu = {name: [] for name in models}
with tinynet.no_grad():
    print("max |thinned - masked| =", float(np.abs(thinned(x) - masked(x)).max()))
    for _ in range(20):  # interleaved, so background load hits every model alike
        for name, model in models.items():
            times[name].append(run_ms(model))
            cpu[name].append(run_ms(model, time.process_time))
med = {name: float(np.median(t)) for name, t in times.items()}
print(f"parameters: dense {count_parameters(dense):,}, thinned {count_parameters(thinned):,}")
for name in models:
    print(f"{name:<8} median {med[name]:.2f} ms over 20 runs of a batch of 1000")
print(f"speedup thinned vs dense: {med['dense'] / med['thinned']:.2f}x (wall clock)")
cmed = {name: float(np.median(t)) for name, t in cpu.items()}
print("cpu time medians: " + ", ".join(f"{n} {v:.2f} ms" for n, v in cmed.items()))
print(f"speedup thinned vs dense: {cmed['dense'] / cmed['thinned']:.2f}x (process CPU time)")
