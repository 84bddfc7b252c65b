"""Integer-only inference: throughput against float32, and agreement with the fake-quantized twin.

For ``lenet_300_100`` and ``lenet5`` (random weights: speed does not depend
on the values), batch-1000 inference in images/s of

* ``float32``: the tinynet model under ``no_grad`` (NumPy + BLAS);
* ``engine``: :func:`compression.quantization.integer.compile_integer`'s
  integer engine (8-bit, per-channel), gemmlowp's double rounding (the
  default) and the single rounding;
* ``int64 matmul``: the same engine with the exact float32-chunked product
  replaced by NumPy's plain integer ``matmul`` (no BLAS).

Rounds interleave the variants, so background load hits all alike, and
the best round of each is kept (other processes only ever add time).

With ``--mini``, LeNet-5 is trained briefly on the embedded MNIST subset,
compiled, and the engine's predictions on its 2,000 held-out images are
compared with the fake-quantized twin's (every disagreement listed);
``--full`` does the same under the protocol (train on 50,000, compare on
the 10,000 held out).

    python benchmarks/bench_integer.py
    python benchmarks/bench_integer.py --mini
    python benchmarks/bench_integer.py --full --skip-speed --epochs 3
    python benchmarks/bench_integer.py --threads 1 --cpu-time    # load-independent
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
import copy  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from bench_accuracy import SHARED_MNIST, machine  # noqa: E402

import tinynet  # noqa: E402
from compression.quantization.integer import compile_integer, fake_quant_reference  # noqa: E402
from compression.quantization.integer_ops import matmul_int64  # noqa: E402

CLOCK = time.perf_counter  # --cpu-time switches to time.process_time


def naive_matmul(a, b, a_max=None, b_max=None):
    """NumPy's integer matmul (a loop, no BLAS), as the engine's step 2."""
    return matmul_int64(a, b).astype(np.int32)


def with_naive_matmul(engine):
    slow = copy.deepcopy(engine)
    for layer in slow:
        if hasattr(layer, "matmul"):
            layer.matmul = naive_matmul
    return slow


def best_ms(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return 1000 * min(times)


def throughput(name: str, rounds: int, naive_rounds: int) -> None:
    tinynet.manual_seed(0)
    model = getattr(tinynet.models, name)().eval()
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, size=(1000, 1, 28, 28)).astype(np.float32)
    engine = compile_integer(model, x)
    single = compile_integer(model, x, rounding="single")
    naive = with_naive_matmul(engine)

    def float_model():
        with tinynet.no_grad():
            return model(x)

    variants = {
        "float32": float_model,
        "engine": lambda: engine(x),
        "engine, single rounding": lambda: single(x),
    }
    for fn in variants.values():  # warm up
        fn()
    times = {label: [] for label in variants}
    for _ in range(rounds):  # interleaved
        for label, fn in variants.items():
            times[label].append(best_ms(fn, 1))
    ms = {label: min(t) for label, t in times.items()}
    ms["int64 matmul"] = best_ms(lambda: naive(x), naive_rounds)
    np.testing.assert_array_equal(naive(x), engine(x))  # the same integers, only slower
    print(f"\n{name}: batch 1000, best of {rounds} rounds ({naive_rounds} for int64 matmul)")
    for label, t in ms.items():
        ratio = ms["float32"] / t
        print(f"  {label:<24} {t:8.2f} ms  {1000 / t * 1000:10,.0f} images/s  {ratio:5.2f}x float")
    print(f"  engine / float32 throughput: {ms['float32'] / ms['engine']:.2f} (target >= 0.5)")


def layer_differences(engine, x) -> list[str]:
    """Fraction of each weighted layer's outputs where the engine and the twin differ."""
    out, q = [], engine.quantize_input(x)
    for i, layer in enumerate(engine):
        q_next = layer.forward(q)
        if hasattr(layer, "steps"):
            twin = layer.out_quant.quantize(layer.forward_float(layer.in_quant.dequantize(q)))
            diff = np.abs(q_next.astype(np.int64) - twin.astype(np.int64))
            out.append(f"layer {i}: {np.mean(diff != 0):.3%} (max {diff.max()})")
        q = q_next
    return out


def batched(fn, x, batch: int = 1000) -> np.ndarray:
    """``fn`` on 1,000 images at a time (im2col of 10,000 images would need gigabytes)."""
    return np.concatenate([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


def agreement(data, epochs: int) -> None:
    tinynet.manual_seed(0)
    model = tinynet.models.lenet5()
    opt = tinynet.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    t0 = time.perf_counter()
    tinynet.fit(
        model,
        (data.x_train, data.y_train),
        tinynet.CrossEntropyLoss(),
        opt,
        epochs,
        batch_size=64,
        progress=False,
    )
    model.eval()
    print(
        f"\nlenet5 trained {epochs} epoch(s) on {data.name}'s {len(data.y_train):,} training "
        f"images in {time.perf_counter() - t0:.1f} s"
    )
    x, y = data.x_heldout, data.y_heldout
    with tinynet.no_grad():
        p_float = batched(model, x).argmax(1)
    print(f"  float32 held-out accuracy {np.mean(p_float == y):.2%} ({len(y)} images)")
    for rounding in ("double", "single"):
        engine = compile_integer(model, data.x_train[:1000], rounding=rounding)
        p_int = engine(x).argmax(1)
        p_twin = batched(lambda xb, e=engine: fake_quant_reference(e, xb), x).argmax(1)
        differ = np.flatnonzero(p_int != p_twin)
        print(
            f"  rounding={rounding}: engine {np.mean(p_int == y):.2%}, twin "
            f"{np.mean(p_twin == y):.2%}; same prediction on {len(y) - len(differ)}/{len(y)} "
            f"({1 - len(differ) / len(y):.2%}), {len(differ)} disagreement(s)"
        )
        for i in differ:
            print(
                f"    image {i}: label {y[i]}, engine {p_int[i]}, twin {p_twin[i]}, "
                f"float {p_float[i]}"
            )
        print("    per layer, on the engine's own integer inputs: outputs one step off the twin")
        print("    " + ", ".join(layer_differences(engine, x[:500])))
    print("  weights int8 per-channel; input, every activation and the logits uint8")
    print("  " + repr(engine).replace("\n", "\n  "))


def main(argv: list[str] | None = None) -> None:
    global CLOCK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet_300_100", "lenet5"])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds (default 15)")
    parser.add_argument("--naive-rounds", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="BLAS threads (set before NumPy loads)"
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with this process's CPU time: with --threads 1 it is unaffected by other "
        "processes",
    )
    parser.add_argument(
        "--mini", action="store_true", help="agreement run on the embedded subset (2,000 held out)"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="agreement run on full MNIST under the protocol (10,000 held out)",
    )
    parser.add_argument("--root", default=None, help="folder of the MNIST IDX files for --full")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (agreement runs)")
    parser.add_argument("--skip-speed", action="store_true", help="only the agreement runs")
    args = parser.parse_args(argv)
    if args.cpu_time:
        CLOCK = time.process_time
    print(f"machine: {machine()}")
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"BLAS threads: {threads}; clock: {'process CPU time' if args.cpu_time else 'wall'}")
    if not args.skip_speed:
        for name in args.models:
            throughput(name, args.rounds, args.naive_rounds)
    if args.mini:
        agreement(tinynet.data.load_mnist_mini(), args.epochs)
    if args.full:
        root = args.root or (SHARED_MNIST if SHARED_MNIST.is_dir() else None)
        with warnings.catch_warnings():  # the t10k split is not needed here
            warnings.simplefilter("ignore", UserWarning)
            data = tinynet.data.load_mnist(root=root, download=root is None)
        agreement(data, args.epochs)


if __name__ == "__main__":
    main()
