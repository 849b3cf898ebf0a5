#!/usr/bin/env python
"""Build the shipped digit classifier ``ncl/_data/classifier_digits012.npz``.

Multinomial logistic regression (``ncl.classifier.train_classifier``: full-batch
Adam, L2 penalty, fixed seed 0) trained on *all* MNIST training images of the
digits 0, 1, 2 (18 623 images), binarised with gray level > 127.  Its accuracy on
the MNIST *test* images of the same digits (3 147 images) is printed and stored in
the file (``test_accuracy``), with the training accuracy, the sizes and the SHA-256
of the source IDX files.  The build fails if the held-out accuracy is below 0.97.

Usage:
    python scripts/build_classifier.py --mnist-dir DIR [--output PATH] [--no-download]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ncl import classifier as clf  # noqa: E402
from ncl import mnist  # noqa: E402

DIGITS = (0, 1, 2)
SEED = 0
MIN_ACCURACY = 0.97


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist-dir", default=None, help="directory with the MNIST IDX files")
    ap.add_argument("--output", default=str(REPO / "ncl" / "_data" / clf.DEFAULT_FILE))
    ap.add_argument("--no-download", action="store_true")
    args = ap.parse_args(argv)
    download = not args.no_download

    x_tr, y_tr = clf.all_training_digits(DIGITS, args.mnist_dir, download, "train")
    x_te, y_te = clf.all_training_digits(DIGITS, args.mnist_dir, download, "test")
    cfg = clf.ClassifierConfig()
    params = clf.train_classifier(x_tr, y_tr, DIGITS, SEED, cfg)
    acc_tr = clf.accuracy(params, x_tr, y_tr)
    acc_te = clf.accuracy(params, x_te, y_te)
    print(f"train: {len(y_tr)} images, accuracy {acc_tr:.4f}")
    print(f"held-out MNIST test digits {DIGITS}: {len(y_te)} images, accuracy {acc_te:.4f}")
    if acc_te < MIN_ACCURACY:
        print(f"held-out accuracy {acc_te:.4f} below the bar {MIN_ACCURACY}", file=sys.stderr)
        return 1
    names = mnist.MNIST_FILES["train"] + mnist.MNIST_FILES["test"]
    out = clf.save_classifier(
        args.output, params,
        test_accuracy=acc_te, train_accuracy=acc_tr,
        n_train=len(y_tr), n_test=len(y_te), seed=SEED, binarize_threshold=127,
        steps=cfg.steps, learning_rate=cfg.learning_rate, l2=cfg.l2,
        source_files=list(names), source_sha256=[mnist.MNIST_SHA256[n] for n in names])
    loaded, meta = clf.load_classifier(out)
    assert abs(clf.accuracy(loaded, x_te, y_te) - acc_te) < 1e-12
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
