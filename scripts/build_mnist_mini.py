"""Build ``tinynet/datasets/mnist_mini.npz``, the MNIST subset shipped inside tinynet.

Usage (from the repository root)::

    python scripts/build_mnist_mini.py                      # IDX files in ../shared/data/mnist
    python scripts/build_mnist_mini.py --root ~/data/mnist  # or anywhere else
    python scripts/build_mnist_mini.py --check              # rebuild in memory, compare

What it does:

1. reads the official training files ``train-images-idx3-ubyte`` and
   ``train-labels-idx1-ubyte`` (gzipped or not) and verifies the MD5 of their
   uncompressed content against ``tinynet.download.FILES``;
2. applies the protocol, ``protocol_split(labels, 10000, seed=0)``;
3. picks 8,000 images of protocol-train and 2,000 of protocol-held-out, each
   a stratified, seeded sample (``stratified_sample(..., seed=0)``);
4. saves them with ``np.savez_compressed``: uint8 images (N, 28, 28), uint8
   labels (N,), their positions in the official files (uint16), and the
   CC BY-SA 3.0 attribution as a unicode string array. Nothing is pickled.

Running it twice gives identical arrays (the zip container's time stamps may
differ); the MD5 of each array is printed so runs can be compared.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing tinynet

from tinynet.data import MNIST_ATTRIBUTION, TRAIN_FILES, protocol_split, stratified_sample  # noqa: E402
from tinynet.download import FILES, find_local, read_verified  # noqa: E402

N_TRAIN, N_HELDOUT, SEED = 8_000, 2_000, 0

ATTRIBUTION = MNIST_ATTRIBUTION + (
    " This file is a subset of the official MNIST training set, images and labels "
    f"unchanged: {N_TRAIN} images of tinynet's protocol train split and {N_HELDOUT} of "
    "its held-out split (protocol_split(labels, 10000, seed=0)), each a class-stratified "
    f"sample drawn with seed {SEED} by scripts/build_mnist_mini.py. The arrays index_train "
    "and index_heldout give each image's position in train-images-idx3-ubyte."
)


def build(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of the subset, from the official training images (60000, 28, 28) and labels."""
    train_idx, heldout_idx = protocol_split(labels, n_heldout=10_000, seed=0)
    pick_train = train_idx[stratified_sample(labels[train_idx], N_TRAIN, SEED)]
    pick_heldout = heldout_idx[stratified_sample(labels[heldout_idx], N_HELDOUT, SEED)]
    return {
        "x_train": images[pick_train],
        "y_train": labels[pick_train],
        "x_heldout": images[pick_heldout],
        "y_heldout": labels[pick_heldout],
        "index_train": pick_train.astype(np.uint16),
        "index_heldout": pick_heldout.astype(np.uint16),
        "attribution": np.array(ATTRIBUTION),  # 0-d unicode array, dtype <U...
    }


def read_official(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and MD5-verify the official training images and labels in ``root``."""
    arrays = []
    for name in TRAIN_FILES:
        md5, size = FILES["mnist"][name]
        path = find_local(root, name)
        if path is None:
            sys.exit(f"{name}[.gz] not found in {root}; pass --root <folder holding it>")
        arrays.append(read_verified(path, name, md5, size))  # checks size and MD5 first
        print(f"verified {path} (uncompressed MD5 {md5})")
    return arrays[0], arrays[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument(
        "--out", type=Path, default=REPO / "tinynet" / "datasets" / "mnist_mini.npz"
    )
    parser.add_argument("--check", action="store_true", help="compare with --out, write nothing")
    args = parser.parse_args(argv)

    arrays = build(*read_official(args.root))
    for key, a in arrays.items():
        digest = hashlib.md5(np.ascontiguousarray(a).tobytes(), usedforsecurity=False).hexdigest()
        print(f"{key:14s} {str(a.shape):16s} {a.dtype!s:8s} md5 {digest}")
    print("train classes  ", np.bincount(arrays["y_train"], minlength=10).tolist())
    print("heldout classes", np.bincount(arrays["y_heldout"], minlength=10).tolist())

    if args.check:
        with np.load(args.out, allow_pickle=False) as npz:
            same = set(npz.files) == set(arrays) and all(
                np.array_equal(npz[k], a) and npz[k].dtype == a.dtype for k, a in arrays.items()
            )
        print(f"{args.out}: {'identical arrays' if same else 'DIFFERENT'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {args.out.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
