"""Host-side progress (stderr): :class:`Log` for messages, :class:`EpochProgress` (a tqdm
bar) for training's per-epoch callback, :func:`steps` for other multi-step host work and
:func:`summary_table` for the per-seed lines after training. One of each serves every
command (train, reproduce, diagnose, figures, compare, sweep). A workflow-layer leaf."""
from __future__ import annotations

import sys
import time

import numpy as np
from tqdm import tqdm


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
    """Host-side progress bar (tqdm) for ``train``'s per-epoch callback: one bar style
    for every command that trains (train, reproduce, compare, sweep).

    On a terminal the bar is redrawn every epoch; otherwise (a log file, CI) the same
    bar is printed as a line about every 10 % of the epochs, so logs are not flooded.
    The postfix holds the epoch's minibatch size and the median (min, max) on-the-fly
    log-likelihood over the members, and names diverged members. Called on the host
    between or after compiled epochs, never from inside ``vmap``.
    """

    BAR_FORMAT = ("epoch {n:4d}/{total} |{bar:20}| {elapsed}<{remaining}"
                  "{postfix}")
    host_side = True   # training calls it between compiled pieces (ncl.training.host_side)

    def __init__(self, total_epochs: int, quiet: bool = False, stream=None):
        self.total = int(total_epochs)
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = max(1, self.total // 10)
        self.t0 = time.perf_counter()
        self.bar = None
        if not quiet and self.tty:
            self.bar = tqdm(total=self.total, file=self.stream, bar_format=self.BAR_FORMAT,
                            leave=True, mininterval=0.0, dynamic_ncols=True)

    @staticmethod
    def postfix(row) -> str:
        ll = np.atleast_1d(np.asarray(row.loglik))
        n = int(np.atleast_1d(np.asarray(row.batch_size))[0])
        finite = np.atleast_1d(np.asarray(row.finite))
        fin = ll[np.isfinite(ll)]  # all members NaN (diverged): print nan, no warning
        med, lo, hi = ((np.median(fin), fin.min(), fin.max()) if fin.size
                       else (np.nan, np.nan, np.nan))
        msg = (f"N={n:3d}  loglik(on-the-fly) median {med:8.2f} "
               f"[min {lo:8.2f}, max {hi:8.2f}]")
        if not finite.all():
            msg += f"  DIVERGED: {int((~finite).sum())} member(s)"
        return msg

    def __call__(self, epoch, row) -> None:
        if self.quiet:
            return
        e = int(epoch) + 1
        post = self.postfix(row)
        if self.bar is not None:
            self.bar.set_postfix_str(post, refresh=False)
            self.bar.update(e - self.bar.n)
            if e >= self.total:
                self.bar.close()
        elif e % self.every == 0 or e == self.total or e == 1:
            line = tqdm.format_meter(e, self.total, time.perf_counter() - self.t0,
                                     bar_format=self.BAR_FORMAT, postfix=post)
            print(line, file=self.stream, flush=True)


def steps(iterable, desc: str, quiet: bool = False, stream=None):
    """``iterable`` wrapped in the same bar style (a tqdm bar on a terminal, nothing
    otherwise), for multi-step host work such as drawing figures."""
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    return tqdm(iterable, desc=desc, file=stream, disable=quiet or not tty, leave=False,
                bar_format="{desc} {n}/{total} |{bar:20}| {elapsed}")


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
