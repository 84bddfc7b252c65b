"""Training speed of tinynet's MNIST models, next to PyTorch CPU on the same machine.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_training.py              # all three models
    PYTHONPATH=. python benchmarks/bench_training.py --quick      # fewer steps
    PYTHONPATH=. python benchmarks/bench_training.py --models lenet5 --profile

One training step, batch 128, float32, synthetic data of MNIST's shape::

    out = model(x); loss = crit(out, y); model.zero_grad()
    model.backward(crit.backward()); opt.step()

with ``model.requires_input_grad = False`` (the first layer skips dx), as
``tinynet.fit`` does. A full epoch is 60,000 / 128 = 468.75 steps; the
script times ``--steps`` steps after a warm-up and extrapolates. The steps
are split into rounds that alternate tinynet and PyTorch, and the fastest
round of each is reported (other processes on the machine add noise, never
speed). GFLOP/s counts the multiply-adds of the Conv2d and Linear layers
(forward, dW, and dx except for the first layer) at 2 flops each.
"""

from __future__ import annotations

import os
import sys

# BLAS reads its thread count when NumPy is imported, so --threads must be
# applied before the import below.
if "--threads" in sys.argv[:-1]:
    _threads = sys.argv[sys.argv.index("--threads") + 1]
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _threads

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

import tinynet  # noqa: E402
from tinynet import models  # noqa: E402

BATCH = 128
EPOCH_IMAGES = 60_000
MODELS = ("lenet_300_100", "lenet5", "lenet5_caffe")


# ------------------------------------------------------------------ machine
def machine_info() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    blas = "unknown"
    try:
        config = np.show_config(mode="dicts")  # NumPy >= 1.25
        dep = config["Build Dependencies"]["blas"]
        blas = f"{dep.get('name', '?')} {dep.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - informational only
        pass
    return [
        f"CPU      : {cpu} ({cores} cores usable)",
        f"Python   : {platform.python_version()}",
        f"NumPy    : {np.__version__} (BLAS: {blas})",
    ]


def matmul_peak(n: int = 1024, repeats: int = 10) -> float:
    """Best float32 GFLOP/s of an (n x n) @ (n x n) product."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = min(_time(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


CLOCK = time.perf_counter  # --cpu-time switches to time.process_time


def _time(fn: Callable[[], object]) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


# -------------------------------------------------------------------- flops
def step_flops(model: tinynet.Module, x: np.ndarray) -> float:
    """Flops of the Conv2d/Linear work in one training step (forward + backward)."""
    shapes: list[tuple[tinynet.Module, tuple, tuple]] = []
    handles = [
        m.register_forward_hook(lambda m, inp, out: shapes.append((m, inp.shape, out.shape)))
        for m in model.modules()
        if isinstance(m, tinynet.Conv2d | tinynet.Linear)
    ]
    with tinynet.no_grad():
        model(x)
    for h in handles:
        h.remove()
    total = 0.0
    for i, (m, _, out_shape) in enumerate(shapes):
        if isinstance(m, tinynet.Conv2d):
            macs = np.prod(out_shape) * m.in_channels * np.prod(m.kernel_size)
        else:
            macs = np.prod(out_shape) * m.in_features
        passes = 2 if i == 0 else 3  # forward, dW, (dx)
        total += 2.0 * macs * passes
    return total


# ------------------------------------------------------------------ tinynet
def tinynet_step(name: str) -> tuple[Callable[[], None], tinynet.Module, np.ndarray]:
    tinynet.manual_seed(0)
    model = getattr(models, name)()
    model.requires_input_grad = False  # Sequential then spares the first conv's dx
    crit = tinynet.CrossEntropyLoss()
    opt = tinynet.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)

    def step() -> None:
        out = model(x)
        crit(out, y)
        model.zero_grad()
        model.backward(crit.backward())
        opt.step()

    return step, model, x


def torch_step(name: str, threads: int) -> Callable[[], None] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nn = torch.nn
    net = {
        "lenet_300_100": lambda: nn.Sequential(
            nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
            nn.Linear(100, 10),
        ),
        "lenet5": lambda: nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
        ),
        "lenet5_caffe": lambda: nn.Sequential(
            nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10),
        ),
    }[name]()  # fmt: skip
    crit = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))

    def step() -> None:
        opt.zero_grad()
        crit(net(x), y).backward()
        opt.step()

    return step


# ---------------------------------------------------------------- profiling
def profile(model: tinynet.Module, step: Callable[[], None], steps: int) -> None:
    """Print the time spent in each layer's forward and backward."""
    totals: dict[str, list[float]] = {}
    for name, module in model.named_children():
        label = f"{name} {type(module).__name__}"
        totals[label] = [0.0, 0.0]
        for i, method in enumerate(("forward", "backward")):
            original = getattr(module, method)

            def timed(arg, original=original, slot=totals[label], i=i):
                start = CLOCK()
                result = original(arg)
                slot[i] += CLOCK() - start
                return result

            object.__setattr__(module, method, timed)
    start = CLOCK()
    for _ in range(steps):
        step()
    elapsed = CLOCK() - start
    print(f"    per-layer ms/step (forward / backward), total {1e3 * elapsed / steps:.2f} ms:")
    for label, (fwd, bwd) in totals.items():
        print(f"      {label:<18} {1e3 * fwd / steps:6.2f} / {1e3 * bwd / steps:6.2f}")
    for module in model.children():  # restore the class methods
        module.__dict__.pop("forward", None)
        module.__dict__.pop("backward", None)


# --------------------------------------------------------------------- main
def run(
    name: str, steps: int, rounds: int, warmup: int, peak: float, show_profile: bool, threads: int
) -> None:
    step, model, x = tinynet_step(name)
    ref = torch_step(name, threads)
    for _ in range(warmup):
        step()
        if ref is not None:
            ref()
    per_round = max(1, steps // rounds)
    best, best_ref = float("inf"), float("inf")
    for _ in range(rounds):  # alternate, so both see the same machine load
        best = min(best, _time(lambda: [step() for _ in range(per_round)]) / per_round)
        if ref is not None:
            best_ref = min(best_ref, _time(lambda: [ref() for _ in range(per_round)]) / per_round)
    epoch = best * EPOCH_IMAGES / BATCH
    gflops = step_flops(model, x) / best / 1e9
    print(f"{name}:")
    print(
        f"  tinynet : {1e3 * best:7.2f} ms/step  {epoch:6.2f} s/epoch  "
        f"{BATCH / best:8.0f} images/s  {gflops:6.1f} GFLOP/s ({100 * gflops / peak:.0f}% of matmul peak)"
    )
    if ref is not None:
        epoch_ref = best_ref * EPOCH_IMAGES / BATCH
        print(
            f"  PyTorch : {1e3 * best_ref:7.2f} ms/step  {epoch_ref:6.2f} s/epoch  "
            f"{BATCH / best_ref:8.0f} images/s"
        )
        print(f"  ratio tinynet / PyTorch: {best / best_ref:.2f}")
    if show_profile:
        profile(model, step, per_round)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--steps", type=int, default=150, help="timed steps per model")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    parser.add_argument("--quick", action="store_true", help="30 steps, 5 warm-up")
    parser.add_argument("--profile", action="store_true", help="per-layer time breakdown")
    parser.add_argument(
        "--threads", type=int, default=2, help="BLAS threads for NumPy and PyTorch (default 2)"
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with this process's CPU time: with --threads 1 it is unaffected by other "
        "processes on a busy machine",
    )
    args = parser.parse_args(argv)
    steps, warmup = (30, 5) if args.quick else (args.steps, 10)
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time

    for line in machine_info():
        print(line)
    try:
        import torch

        print(f"PyTorch  : {torch.__version__}, torch.set_num_threads({args.threads})")
    except ImportError:
        print("PyTorch  : not installed (no reference column)")
    peak = matmul_peak()
    print(
        f"float32 np.matmul 1024^3 peak: {peak:.1f} GFLOP/s "
        f"(OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})"
    )
    if args.cpu_time:
        print("clock: process CPU time (--cpu-time), not wall-clock")
    print(
        f"batch {BATCH}, float32, SGD(momentum=0.9); s/epoch = ms/step x {EPOCH_IMAGES}/{BATCH} "
        f"steps, extrapolated from {steps} timed steps (best of {args.rounds} rounds) "
        f"after {warmup} warm-up steps"
    )
    for name in args.models:
        run(name, steps, args.rounds, warmup, peak, args.profile, args.threads)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
