#!/usr/bin/env python
"""Rebuild the bundled paper data set ``ncl/_data/mnist_012_first1000.npz``.

The paper data set is the first 1000 MNIST *training* images of each of the
digits 0, 1, 2 (in file order), binarised with gray level > 127, giving
x: uint8 (3000, 784) in {0, 1} and labels: uint8 (3000,).  It is stored
bit-packed (np.packbits along axis 1) with SHA-256 digests of the unpacked
arrays and of the source IDX files.

Usage:
    python scripts/build_bundled_subset.py [--mnist-dir DIR] [--output PATH] [--no-download]

DIR holds train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]; by
default it is resolved like ncl.mnist.load_mnist ($NCL_MNIST_DIR, then the user
cache directory), downloading there if allowed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ncl import data  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist-dir", default=None, help="directory with the MNIST IDX files")
    ap.add_argument(
        "--output",
        default=str(REPO / "ncl" / "_data" / data.PAPER_SUBSET_FILE),
        help="output .npz (default: the bundled file in ncl/_data)",
    )
    ap.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    args = ap.parse_args(argv)

    subset = data.build_paper_subset(args.mnist_dir, download=not args.no_download)
    out = data.save_subset(subset, args.output)
    # Round trip: the written file must load and verify.
    x, labels = data.load_subset_npz(out)
    counts = {int(d): int((labels == d).sum()) for d in data.PAPER_DIGITS}
    print(f"wrote {out} ({out.stat().st_size} bytes): x {x.shape} {x.dtype}, per-digit counts {counts}")
    print(f"x_sha256 {subset['x_sha256']}  labels_sha256 {subset['labels_sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
