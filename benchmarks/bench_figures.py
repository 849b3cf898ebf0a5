"""`ncl.figures.make_figures` timed with 1, 2 and 3 drawing processes, interleaved
in one run (each call redraws Figs. 2–4 of the same ``diagnostics.npz``, PNG and PDF),
so the processes' effect is measured side by side; prints every time, the median per
setting and the load average.

    python benchmarks/bench_figures.py [RUN_DIR] [--repeats 5]

RUN_DIR: a directory holding a ``diagnostics.npz`` (default: docs/paper_reproduction);
it is copied to a temporary directory first, so nothing there is overwritten.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", nargs="?", default=str(REPO / "docs" / "paper_reproduction"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--processes", default="1,2,3", help="comma-separated settings")
    args = ap.parse_args(argv)
    from ncl.figures import make_figures
    work = Path(tempfile.mkdtemp(prefix="bench-figures-"))
    settings = [int(p) for p in args.processes.split(",")]
    for p in settings:
        d = work / f"p{p}"
        d.mkdir()
        shutil.copy(Path(args.run_dir) / "diagnostics.npz", d / "diagnostics.npz")
    print(f"# bench_figures: {os.cpu_count()} CPU cores, load average {os.getloadavg()}")
    print(f"# make_figures on {args.run_dir}/diagnostics.npz, PNG + PDF, {args.repeats} "
          f"rounds, settings interleaved")
    make_figures(work / f"p{settings[0]}", log=lambda m: None, processes=1)   # warm-up
    times = {p: [] for p in settings}
    for _ in range(args.repeats):
        for p in settings:
            t0 = time.perf_counter()
            make_figures(work / f"p{p}", log=lambda m: None, processes=p)
            times[p].append(time.perf_counter() - t0)
    base = statistics.median(times[settings[0]])
    for p in settings:
        med = statistics.median(times[p])
        print(f"processes {p}: median {med:5.2f} s ({med / base:4.2f}x of processes "
              f"{settings[0]}); each: " + " ".join(f"{t:.2f}" for t in times[p]))
    print(f"# load average after: {os.getloadavg()}")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
