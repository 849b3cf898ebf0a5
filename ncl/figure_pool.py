"""Figures drawn side by side in worker processes.

A :class:`FigureJob` names a figure function of :mod:`ncl.plots`, its keyword arguments
(NumPy arrays, numbers, strings) and where to save it (:func:`ncl.plots.save_figure`).
:func:`draw_jobs` shares the jobs between this process and the workers of
:func:`start_workers`: matplotlib draws on one core and holds the GIL throughout
(threads do not help), so on a machine with more than one core the figures of
:func:`ncl.figures.make_figures` take about the time of the slowest share instead of
the sum.

A worker is ``python -m ncl.figure_pool``, a fresh interpreter that imports NumPy,
matplotlib and :mod:`ncl.plots` only (not JAX; about 0.5 s, spent while this process
prepares the jobs), then reads the path of its payload file (this process's matplotlib
``rcParams``, so a style set by the caller applies to every figure, and its jobs) from
stdin, draws and writes back the paths, or the error; what it prints on stderr
(matplotlib's warnings) is passed on to this process's. A worker that cannot start or
fails never loses a figure: its jobs are drawn here afterwards, and ``log`` says why, so
an error in a figure surfaces as it would without workers.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from ncl import plots

# rcParams a worker keeps as its own: which backend it draws with, and interactivity
_PROCESS_RC = ("backend", "backend_fallback", "interactive", "toolbar")


class FigureJob(NamedTuple):
    """One figure to draw and save.

    Attributes:
      function: name of a figure function of :mod:`ncl.plots` (``"figure2"``, ...).
      kwargs: its keyword arguments (picklable: arrays, numbers, strings, lists, dicts).
      path_stem: where to save it, without suffix (``path_stem.<format>``).
      formats: file formats, e.g. ``("png", "pdf")``.
    """

    function: str
    kwargs: dict
    path_stem: str
    formats: tuple


def draw(job: FigureJob) -> list[Path]:
    """Draw and save one job in this process; returns the paths written."""
    fn = getattr(plots, job.function, None)
    if not callable(fn) or not job.function.startswith("figure"):
        raise ValueError(f"FigureJob.function: {job.function!r} is not a figure function "
                         "of ncl.plots; use 'figure2', 'figure3' or 'figure4'")
    return plots.save_figure(fn(**job.kwargs), job.path_stem, tuple(job.formats))


def default_processes() -> int:
    """Processes :func:`draw_jobs` uses by default: one per figure of
    :func:`ncl.figures.make_figures` (three), at most the core count."""
    return max(1, min(3, os.cpu_count() or 1))


def _shares(n_jobs: int, processes: int) -> list[list[int]]:
    """Job indices per process, round robin (process 0 is this one)."""
    return [list(range(p, n_jobs, processes)) for p in range(processes)]


def _rc_params() -> dict:
    import matplotlib
    return {k: v for k, v in matplotlib.rcParams.items() if k not in _PROCESS_RC}


class Worker:
    """A drawing worker: started at once (its imports overlap whatever this process does
    next), given its jobs by :meth:`submit`, its result taken by :meth:`result`."""

    def __init__(self):
        env = dict(os.environ)
        # the worker imports the same ncl as this process: from a source checkout put on
        # the path by hand too (an installed one is found anyway; a site directory is not
        # put ahead of the standard library)
        here = Path(__file__).resolve().parents[1]
        if here.name not in ("site-packages", "dist-packages"):
            env["PYTHONPATH"] = os.pathsep.join([str(here)] + [
                p for p in [env.get("PYTHONPATH")] if p])
        self.payload = None
        self.proc = subprocess.Popen([sys.executable, "-m", "ncl.figure_pool"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)

    def submit(self, jobs: list[FigureJob]) -> None:
        """Send ``jobs`` (through a temporary file: a pipe could block on a large
        payload while the worker is still importing)."""
        fd, self.payload = tempfile.mkstemp(prefix="ncl-figures-", suffix=".pkl")
        with os.fdopen(fd, "wb") as f:
            pickle.dump({"rc": _rc_params(), "jobs": jobs}, f)
        stdin, self.proc.stdin = self.proc.stdin, None   # communicate() must not flush it
        stdin.write(self.payload.encode() + b"\n")
        stdin.close()

    def stop(self) -> None:
        """End the worker, whatever it is doing, and remove its payload."""
        self.proc.kill()
        self.proc.communicate()
        self._unlink()

    def _unlink(self) -> None:
        if self.payload is not None and os.path.exists(self.payload):
            os.unlink(self.payload)

    def result(self) -> list[Path]:
        """The paths the worker wrote; ``RuntimeError`` saying why when it failed."""
        try:
            out, err = self.proc.communicate()
        finally:
            self._unlink()
        try:
            status, value = pickle.loads(out)
        except Exception:  # noqa: BLE001 - a crash: no result on stdout
            tail = err.decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"exit code {self.proc.returncode}: "
                               + (" | ".join(tail) or "no message")) from None
        if status != "ok":
            raise RuntimeError(value)
        if err:
            sys.stderr.write(err.decode(errors="replace"))
        return [Path(p) for p in value]


def start_workers(processes: int | None = None, log: Callable[[str], None] | None = None
                  ) -> list[Worker]:
    """The ``processes − 1`` workers of a :func:`draw_jobs` call over ``processes``
    processes (default :func:`default_processes`), started now. A worker that cannot
    start is left out (``log`` says why): its share is drawn here."""
    from ncl import _validate as _v
    processes = (default_processes() if processes is None
                 else _v.integer("processes", processes, min=1))
    workers = []
    for _ in range(processes - 1):
        try:
            workers.append(Worker())
        except OSError as e:
            if log:
                log(f"figures: could not start a drawing worker ({e}); drawing here")
    return workers


def draw_jobs(jobs: Sequence[FigureJob], workers: Sequence[Worker] = (),
              log: Callable[[str], None] | None = None) -> list[Path]:
    """Draw and save ``jobs``, shared round robin between this process and ``workers``
    (:func:`start_workers`; none: all here, one after the other). Returns the paths in
    job order, whichever process drew them. Every worker is ended on return."""
    jobs, workers = list(jobs), list(workers)
    for w in workers[max(len(jobs) - 1, 0):]:   # more workers than jobs to give them
        w.stop()
    workers = workers[:max(len(jobs) - 1, 0)]
    shares = _shares(len(jobs), len(workers) + 1)
    try:
        for w, share in zip(workers, shares[1:]):
            w.submit([jobs[i] for i in share])
        paths = {i: draw(jobs[i]) for i in shares[0]}
    except BaseException:
        for w in workers:   # leave no worker behind
            w.stop()
        raise
    failed = []
    for w, share in zip(workers, shares[1:]):   # every worker's result, then the redraws
        try:
            written = iter(w.result())
        except RuntimeError as e:
            if log:
                log(f"figures: a drawing worker failed ({e}); drawing its figures here")
            failed += share
            continue
        for i in share:
            paths[i] = [next(written) for _ in jobs[i].formats]
    paths.update({i: draw(jobs[i]) for i in failed})
    return [q for i in range(len(jobs)) for q in paths[i]]


def _main() -> int:
    """Worker entry point: read the payload file's path from stdin (none: nothing to
    do), draw its jobs, write ``("ok", paths)`` or ``("error", message)`` pickled to
    stdout."""
    import traceback

    import matplotlib
    path = sys.stdin.readline().strip()
    if not path:
        return 0
    with open(path, "rb") as f:
        payload = pickle.load(f)
    try:
        matplotlib.rcParams.update(payload["rc"])
        result = ("ok", [str(p) for job in payload["jobs"] for p in draw(job)])
    except Exception as e:  # noqa: BLE001 - sent back to the parent
        traceback.print_exc()
        result = ("error", f"{type(e).__name__}: {e}")
    sys.stdout.buffer.write(pickle.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
