"""`ncl reproduce` timed twice in one run, as a user meets it: a cold first run (empty
persistent compilation cache) and a warm second run (same shapes, the cache filled by the
first), each in a fresh process; then the same once more with the cache turned off
(``NCL_NO_COMPILE_CACHE=1``), so the cache's effect is measured side by side.

Prints per run the wall time of the whole command and the report's own timings
(training, diagnostics, figures, each compilation included), the figures' share of the
total, the warm/cold ratio, and the load average before and after.

    python benchmarks/bench_reproduce.py [--seeds 36] [--quick] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(out: Path, cache: Path, seeds: int, quick: bool, cache_on: bool = True) -> dict:
    env = dict(os.environ, NCL_COMPILE_CACHE_DIR=str(cache))
    env.pop("NCL_NO_COMPILE_CACHE", None)
    if not cache_on:
        env["NCL_NO_COMPILE_CACHE"] = "1"
    cmd = [sys.executable, "-m", "ncl.cli", "reproduce", "--seeds", str(seeds), "--out",
           str(out), "--overwrite", "-q"] + (["--quick"] if quick else [])
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"ncl reproduce failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    t = json.loads((out / "config.json").read_text()).get("timings", {})
    return dict(wall=wall, train=t.get("train_seconds"), diagnose=t.get("diagnose_seconds"),
                figures=t.get("figures_seconds"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=36)
    ap.add_argument("--quick", action="store_true", help="the --quick protocol (smoke run)")
    ap.add_argument("--keep", help="keep the outputs and the cache in this directory")
    args = ap.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-repro-"))
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    print(f"# bench_reproduce: {os.cpu_count()} CPU cores, load average {os.getloadavg()}")
    print(f"# ncl reproduce --seeds {args.seeds}{' --quick' if args.quick else ''}, "
          "each run a fresh process")
    rows = [("cold (empty cache)", run(work / "a", cache, args.seeds, args.quick)),
            ("warm (cache filled)", run(work / "b", cache, args.seeds, args.quick)),
            ("cache off", run(work / "c", cache, args.seeds, args.quick, cache_on=False))]
    for name, r in rows:
        share = r["figures"] / r["wall"] if r["figures"] else float("nan")
        print(f"{name:20s} total {r['wall']:6.1f} s  (training {r['train']:6.1f} s, "
              f"diagnostics {r['diagnose']:5.1f} s, figures {r['figures']:5.1f} s = "
              f"{share:4.0%} of the total)")
    cold, warm = rows[0][1]["wall"], rows[1][1]["wall"]
    print(f"warm / cold = {warm / cold:.2f}")
    print(f"# load average after: {os.getloadavg()}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
