"""NCL vs RBM head-to-head on the paper's data and protocol (writes docs/compare/).

Equivalent to

    ncl compare --seeds 36 --rbm-lr 0.0003 --rbm-exact --out docs/compare

(the default arms are NCL and the RBM trained with the identical protocol; the extra arms
are an RBM with a tuned learning rate, chosen on 4 seeds x {0.1, 0.01, 0.001, 0.0003,
0.0001} by its exact training log-likelihood, and an RBM trained with the gradient of its
exact log-likelihood). Options: --hidden binary, --seeds N, --out DIR, --quick.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=36)
    ap.add_argument("--hidden", choices=("onehot", "binary"), default="onehot")
    ap.add_argument("--rbm-lr", type=float, action="append", default=None,
                    help="extra RBM learning rate(s) (default: 0.0003)")
    ap.add_argument("--no-rbm-exact", action="store_true")
    ap.add_argument("--out", default=None, help="default: docs/compare (onehot) or "
                    "docs/compare/binary")
    ap.add_argument("--quick", action="store_true", help="tiny protocol (smoke test)")
    a = ap.parse_args(argv)
    out = a.out or str(REPO / "docs" / "compare" / ("" if a.hidden == "onehot" else "binary"))
    argv2 = ["compare", "--seeds", str(a.seeds), "--hidden", a.hidden, "--out", out,
             "--overwrite"]
    for lr in (a.rbm_lr if a.rbm_lr is not None else [0.0003]):
        argv2 += ["--rbm-lr", str(lr)]
    if not a.no_rbm_exact:
        argv2.append("--rbm-exact")
    if a.quick:
        argv2 += ["--epochs", "3", "--steps-per-epoch", "5", "-T", "12", "--batch-max", "40",
                  "--burn-in", "50", "--diag-steps", "400", "--diag-chains", "4",
                  "--rb-samples", "100", "--sample-chains", "10", "--bootstrap", "300"]
    from ncl.cli import main as cli_main
    return cli_main(argv2)


if __name__ == "__main__":
    sys.exit(main())
