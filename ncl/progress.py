"""Host-side progress printers (stderr): :class:`Log` for messages,
:class:`EpochProgress` for training's per-epoch callback and :func:`summary_table` for the
per-seed lines after training. One of each serves every command (train, reproduce,
diagnose, figures, compare, sweep)."""
from __future__ import annotations

import sys
import time

import numpy as np


class Log:
    """Prints each message (``print(*parts)``) to ``stream`` (default: the current
    ``sys.stderr``), flushed; nothing when ``quiet``."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream

    def __call__(self, *parts) -> None:
        if not self.quiet:
            print(*parts, file=self.stream or sys.stderr, flush=True)


class EpochProgress:
    """Host-side progress printer for ``train``'s per-epoch callback.

    On a terminal it rewrites one line every epoch; otherwise it prints a line about
    every 10% of the epochs, so logs are not flooded.
    """

    def __init__(self, total_epochs: int, quiet: bool = False, stream=None):
        self.total = total_epochs
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = max(1, total_epochs // 10)
        self.t0 = time.perf_counter()
        self.first_epoch_time = None

    def __call__(self, epoch, row) -> None:
        if self.quiet:
            return
        e = int(epoch) + 1
        ll = np.atleast_1d(np.asarray(row.loglik))
        n = int(np.atleast_1d(np.asarray(row.batch_size))[0])
        finite = np.atleast_1d(np.asarray(row.finite))
        elapsed = time.perf_counter() - self.t0
        fin = ll[np.isfinite(ll)]  # all members NaN (diverged): print nan, no warning
        med, lo, hi = ((np.median(fin), fin.min(), fin.max()) if fin.size
                       else (np.nan, np.nan, np.nan))
        msg = (f"epoch {e:4d}/{self.total}  N={n:3d}  loglik(on-the-fly) median "
               f"{med:8.2f} [min {lo:8.2f}, max {hi:8.2f}]")
        if not finite.all():
            msg += f"  DIVERGED: {int((~finite).sum())} member(s)"
        msg += f"  {elapsed:6.1f}s"
        if self.tty:
            end = "\n" if e == self.total else ""
            print("\r" + msg, end=end, file=self.stream, flush=True)
        elif e % self.every == 0 or e == self.total or e == 1:
            print(msg, file=self.stream, flush=True)


def summary_table(history, seeds) -> str:
    """The per-seed table printed after training: final on-the-fly log-likelihood and
    hidden occupancy of the last epoch, with the median, min and max."""
    ll = np.asarray(history.loglik)[:, -1]
    occ = np.asarray(history.hidden_occupancy)[:, -1]
    lines = ["seed  final loglik(on-the-fly)  hidden occupancy (last epoch)"]
    for s, v_ll, o in zip(seeds, ll, occ):
        lines.append(f"{s:4d}  {v_ll:24.2f}  " + " ".join(f"{v:.2f}" for v in o))
    lines.append(f"median {np.median(ll):.2f}, min {ll.min():.2f}, max {ll.max():.2f} "
                 f"over {len(seeds)} seeds")
    return "\n".join(lines)
