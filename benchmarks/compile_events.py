"""Run one ``ncl`` command in this process and print where JAX spent its time before
running anything: the durations JAX reports through ``jax.monitoring`` (tracing,
lowering to MLIR, XLA's backend compilation, persistent-cache retrieval and the compile
time it saved), summed per event, with the command's wall time.

    python benchmarks/compile_events.py reproduce --seeds 36 --out /tmp/r --overwrite -q

Set ``NCL_COMPILE_CACHE_DIR`` to an empty directory for a cold run, run again for a warm
one; compare the two to see what a warm start can skip at most.
"""
from __future__ import annotations

import atexit
import collections
import sys
import time


def main(argv: list[str]) -> int:
    import jax.monitoring

    durations = collections.defaultdict(list)
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kw: durations[event].append(seconds))
    t0 = time.perf_counter()

    def report():
        print(f"# wall {time.perf_counter() - t0:.2f} s: ncl {' '.join(argv)}")
        for event, ds in sorted(durations.items(), key=lambda kv: -sum(kv[1])):
            print(f"# {sum(ds):7.2f} s  n={len(ds):3d}  {event}")
    atexit.register(report)
    from ncl.cli import main as ncl_main
    return ncl_main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
