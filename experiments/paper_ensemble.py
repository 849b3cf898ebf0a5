#!/usr/bin/env python
"""The paper's experiment (Baiesi & Rosso, Sect. IV, Figs. 2–4) end to end.

Trains the 36-seed ensemble on the bundled data (first 1000 training images of the
digits 0, 1, 2), saves it, runs the diagnostics with the shipped digit classifier and
writes Figs. 2–4, metrics.csv, config.json, diagnostics.npz and REPORT.md. The same code
as ``ncl reproduce``:

    python experiments/paper_ensemble.py --out runs/paper            # full protocol
    python experiments/paper_ensemble.py --out /tmp/smoke --quick    # smoke test
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from ncl.reproduce import paper_diagnostics_config, quick_protocol, reproduce
from ncl.training import TrainConfig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/paper_ensemble", help="output directory")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 36; "
                   "3 with --quick)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 120)")
    p.add_argument("--quick", action="store_true", help="reduced protocol (smoke test)")
    p.add_argument("--estimator", choices=("rb", "counts"), default="rb",
                   help="σ estimator shown in the figures")
    p.add_argument("--key-seed", type=int, default=0, help="diagnostics key seed")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        config, dcfg = quick_protocol()
        n = 3 if args.seeds is None else args.seeds
    else:
        config, dcfg = TrainConfig(), paper_diagnostics_config()
        n = 36 if args.seeds is None else args.seeds
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs)
    reproduce(args.out, seeds=range(n), config=config, dcfg=dcfg, key_seed=args.key_seed,
              progress=not args.quiet, estimator=args.estimator, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
