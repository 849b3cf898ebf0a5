#!/usr/bin/env python
"""Rebuild the bundled data sets: the paper's training set
``ncl/_data/mnist_012_first1000.npz`` and its held-out set ``ncl/_data/mnist_012_test.npz``.

The paper data set is the first 1000 MNIST *training* images of each of the
digits 0, 1, 2 (in file order), binarised with gray level > 127, giving
x: uint8 (3000, 784) in {0, 1} and labels: uint8 (3000,).  It is stored
bit-packed (np.packbits along axis 1) with SHA-256 digests of the unpacked
arrays and of the source IDX files. The held-out set is every MNIST *test*
image of the digits 0, 1, 2 (3147 images), binarised and stored the same way.

Usage:
    python scripts/build_bundled_subset.py [--mnist-dir DIR] [--output PATH] [--no-download]

DIR holds the train and t10k images and labels (IDX, optionally gzipped); by
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
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist-dir", default=None, help="directory with the MNIST IDX files")
    ap.add_argument(
        "--output-dir",
        default=str(REPO / "ncl" / "_data"),
        help="where to write both .npz files (default: the bundled files in ncl/_data)",
    )
    ap.add_argument("--no-download", action="store_true",
                    help="fail instead of downloading missing files")
    args = ap.parse_args(argv)

    for build, name in ((data.build_paper_subset, data.PAPER_SUBSET_FILE),
                        (data.build_heldout_subset, data.HELDOUT_SUBSET_FILE)):
        subset = build(args.mnist_dir, download=not args.no_download)
        out = data.save_subset(subset, Path(args.output_dir) / name)
        # Round trip: the written file must load and verify.
        x, labels = data.load_subset_npz(out)
        counts = {int(d): int((labels == d).sum()) for d in data.PAPER_DIGITS}
        print(f"wrote {out} ({out.stat().st_size} bytes): x {x.shape} {x.dtype}, "
              f"per-digit counts {counts}")
        print(f"x_sha256 {subset['x_sha256']}  labels_sha256 {subset['labels_sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
