#!/usr/bin/env python
"""Build the shipped digit classifiers in ``ncl/_data`` from MNIST.

* ``classifier_digits012.npz`` — multinomial logistic regression
  (``ncl.classifier.ClassifierConfig()``: full-batch Adam, L2 penalty, seed 0) trained
  on *all* MNIST training images of the digits 0, 1, 2 (18 623 images); held out: the
  3 147 MNIST test images of those digits.
* ``classifier_digits0123456789.npz`` — one-hidden-layer ReLU MLP 784-256-10
  (``ncl.classifier.MLPClassifierConfig()``: minibatch Adam with a cosine learning-rate
  decay, L2 penalty, seed 0) trained on *all* 60 000 MNIST training images; held out:
  the 10 000 MNIST test images.

Images are binarised with gray level > 127.  Each classifier's accuracy on the held-out
MNIST *test* images is printed and stored in its file (``test_accuracy``), with the
training accuracy, the sizes, the training settings, the training wall time and the
SHA-256 of the source IDX files.  The build fails if a held-out accuracy is below 0.97.

Usage:
    python scripts/build_classifier.py --mnist-dir DIR [--digits {012,0123456789,all}]
        [--out-dir DIR] [--no-download]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402

from ncl import classifier as clf  # noqa: E402
from ncl import mnist  # noqa: E402

SEED = 0
MIN_ACCURACY = 0.97
BUILDS = {
    "012": ((0, 1, 2), clf.ClassifierConfig()),
    "0123456789": (tuple(range(10)), clf.MLPClassifierConfig()),
}
"""``--digits`` choice → (digits, training config); the file is ``SHIPPED_FILES[digits]``."""


def build(digits, cfg, out_dir: Path, mnist_dir, download: bool) -> int:
    x_tr, y_tr = clf.all_training_digits(digits, mnist_dir, download, "train")
    x_te, y_te = clf.all_training_digits(digits, mnist_dir, download, "test")
    start = time.perf_counter()
    params = jax.block_until_ready(clf.train_classifier(x_tr, y_tr, digits, SEED, cfg))
    seconds = time.perf_counter() - start
    acc_tr = clf.accuracy(params, x_tr, y_tr)
    acc_te = clf.accuracy(params, x_te, y_te)
    kind = (f"MLP {x_tr.shape[1]}-{params.hidden_units}-{params.n_classes}"
            if params.hidden_units else "logistic regression")
    print(f"digits {digits}: {kind}, {cfg}")
    print(f"  train: {len(y_tr)} images, accuracy {acc_tr:.4f} ({seconds:.1f} s)")
    print(f"  held-out MNIST test: {len(y_te)} images, accuracy {acc_te:.4f}")
    if acc_te < MIN_ACCURACY:
        print(f"held-out accuracy {acc_te:.4f} below the bar {MIN_ACCURACY}", file=sys.stderr)
        return 1
    names = mnist.MNIST_FILES["train"] + mnist.MNIST_FILES["test"]
    meta = dict(test_accuracy=acc_te, train_accuracy=acc_tr,
                n_train=len(y_tr), n_test=len(y_te), seed=SEED, binarize_threshold=127,
                **dataclasses.asdict(cfg),
                source_files=list(names),
                source_sha256=[mnist.MNIST_SHA256[n] for n in names])
    if params.hidden_units:      # the logistic file keeps exactly its original metadata
        meta.update(model=kind, train_seconds=round(seconds, 1))
    out = clf.save_classifier(out_dir / clf.SHIPPED_FILES[digits], params, **meta)
    loaded, _ = clf.load_classifier(out)
    assert abs(clf.accuracy(loaded, x_te, y_te) - acc_te) < 1e-12
    print(f"  wrote {out} ({out.stat().st_size} bytes)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist-dir", default=None, help="directory with the MNIST IDX files")
    ap.add_argument("--digits", choices=[*BUILDS, "all"], default="all",
                    help="which shipped classifier to build (default: all)")
    ap.add_argument("--out-dir", default=str(REPO / "ncl" / "_data"))
    ap.add_argument("--no-download", action="store_true")
    args = ap.parse_args(argv)
    which = list(BUILDS) if args.digits == "all" else [args.digits]
    for name in which:
        digits, cfg = BUILDS[name]
        rc = build(digits, cfg, Path(args.out_dir), args.mnist_dir, not args.no_download)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
