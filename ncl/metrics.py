"""A metrics stream: one record per epoch per ensemble member, written while training runs.

Workflow layer (imports nothing from ``ncl`` but the atomic-file leaf). Training calls its
``progress(epoch, row)`` callback on the host once per epoch with that epoch's
:class:`ncl.training.History` row (each field with a leading member axis ``(E,)`` for an
ensemble, scalars for one model). :class:`MetricsCallback` turns the row into one plain
record per member and hands them to its sinks:

* :class:`JsonlMetrics` appends them to ``metrics.jsonl`` in the run directory (one JSON
  object per line, flushed every epoch, so ``tail -f`` or a notebook can follow a week-long
  sweep while it runs; non-finite numbers are written as ``null``);
* :class:`TensorBoardMetrics` writes TensorBoard scalars (optional extra:
  ``pip install ncl[tensorboard]``, which installs tensorboardX);
* any object with ``write(records)`` and ``close()`` (the :class:`MetricsSink` protocol),
  e.g. a Weights & Biases adapter::

      class WandbMetrics:
          def __init__(self, run): self.run = run
          def write(self, records):
              for r in records:
                  self.run.log({f"{k}/seed_{r['seed']}": r[k] for k in ("loglik", "sigma_rb")},
                               step=r["epoch"])
          def close(self): pass

A record: ``epoch`` (1-based count of epochs done), ``seed``, ``member`` (index in the
ensemble), ``loglik`` (on-the-fly), ``loglik_precise``, ``sigma_rb``, ``sigma_counts``,
``batch_size``, ``hidden_occupancy`` (list of L floats), ``finite`` and ``wall_seconds``
(since the run started, earlier pieces of a resumed run included).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from ncl._atomic import atomic_write

METRICS_JSONL = "metrics.jsonl"
SCALARS = ("loglik", "loglik_precise", "sigma_rb", "sigma_counts", "batch_size")


class MetricsSink(Protocol):
    """Where records go: ``write`` is called once per epoch with that epoch's records
    (one per member, in member order); ``close`` once at the end."""

    def write(self, records: Sequence[dict]) -> None: ...

    def close(self) -> None: ...


def _number(v):
    v = float(v)
    return v if math.isfinite(v) else None


def epoch_records(epoch: int, row, seeds: Sequence[int], wall_seconds: float) -> list[dict]:
    """The records of epoch ``epoch`` (0-based index; written 1-based) from a History row.

    ``row``: a History row (fields of shape ``(E,)``, ``hidden_occupancy (E, L)``; or
    scalars / ``(L,)`` for one model); ``seeds``: the ``E`` member seeds.
    """
    n = len(seeds)
    cols = {name: np.asarray(getattr(row, name), dtype=np.float64).reshape(n)
            for name in SCALARS}
    occ = np.asarray(row.hidden_occupancy, dtype=np.float64).reshape(n, -1)
    finite = np.asarray(row.finite).reshape(n)
    out = []
    for i, seed in enumerate(seeds):
        rec = {"epoch": int(epoch) + 1, "seed": int(seed), "member": i}
        rec.update({name: _number(cols[name][i]) for name in SCALARS})
        rec["batch_size"] = int(cols["batch_size"][i])
        rec["hidden_occupancy"] = [_number(v) for v in occ[i]]
        rec["finite"] = bool(finite[i])
        rec["wall_seconds"] = round(float(wall_seconds), 4)
        out.append(rec)
    return out


def read_metrics_jsonl(path) -> list[dict]:
    """All records of a ``metrics.jsonl`` file (a torn last line, from a killed run, is
    skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # only the last line can be torn: the writer appends whole lines
    return records


class JsonlMetrics:
    """Appends records to ``path`` (``metrics.jsonl``), one JSON object per line.

    ``keep_epochs``: for a resumed run, the epochs done before the resume; records of
    later epochs (written by the interrupted run after its last checkpoint) are dropped
    first, so no epoch appears twice. ``None`` (a new run): an existing file is replaced.
    """

    def __init__(self, path, keep_epochs: int | None = None):
        self.path = Path(path)
        kept = []
        if keep_epochs is not None and self.path.exists():
            kept = [r for r in read_metrics_jsonl(self.path) if r.get("epoch", 0) <= keep_epochs]
        text = "".join(json.dumps(r) + "\n" for r in kept).encode()
        atomic_write(self.path, lambda f: f.write(text))
        self.last_wall = max((r.get("wall_seconds") or 0.0 for r in kept), default=0.0)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, records: Sequence[dict]) -> None:
        self._f.write("".join(json.dumps(r, allow_nan=False) + "\n" for r in records))
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


class TensorBoardMetrics:
    """TensorBoard scalars ``<field>/seed_<seed>`` at step ``epoch``, in ``logdir``
    (tensorboardX's event files; needs ``pip install ncl[tensorboard]``)."""

    def __init__(self, logdir):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError("TensorBoardMetrics needs tensorboardX: "
                              "pip install 'ncl[tensorboard]'") from None
        self.writer = SummaryWriter(str(logdir))

    def write(self, records: Sequence[dict]) -> None:
        for r in records:
            for name in SCALARS:
                if r[name] is not None:
                    self.writer.add_scalar(f"{name}/seed_{r['seed']}", r[name], r["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MetricsCallback:
    """A training ``progress(epoch, row)`` callback that sends each epoch's records to
    ``sinks``; ``wall_offset`` seconds are added to the wall time (a resumed run)."""

    host_side = True   # training calls it between compiled pieces (ncl.training.host_side)

    def __init__(self, seeds: Sequence[int], sinks: Sequence[MetricsSink],
                 wall_offset: float = 0.0, clock: Callable[[], float] = time.perf_counter):
        self.seeds = [int(s) for s in seeds]
        self.sinks = list(sinks)
        self.clock = clock
        self.t0 = clock() - float(wall_offset)

    def __call__(self, epoch, row) -> None:
        records = epoch_records(epoch, row, self.seeds, self.clock() - self.t0)
        for sink in self.sinks:
            sink.write(records)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def run_metrics(out_dir, seeds: Sequence[int], keep_epochs: int | None = None
                ) -> MetricsCallback:
    """The callback the CLI attaches to a run directory: ``metrics.jsonl`` there, plus
    TensorBoard event files in ``out_dir/tensorboard`` when ``NCL_TENSORBOARD=1``."""
    jsonl = JsonlMetrics(Path(out_dir) / METRICS_JSONL, keep_epochs=keep_epochs)
    sinks: list = [jsonl]
    if os.environ.get("NCL_TENSORBOARD", "").strip() not in ("", "0"):
        sinks.append(TensorBoardMetrics(Path(out_dir) / "tensorboard"))
    return MetricsCallback(seeds, sinks, wall_offset=jsonl.last_wall)


def combine(*callbacks: Callable | None) -> Callable | None:
    """One progress callback calling each non-None callback in turn (None if none)."""
    fns = [c for c in callbacks if c is not None]
    if not fns:
        return None
    if len(fns) == 1:
        return fns[0]

    def progress(epoch, row):
        for fn in fns:
            fn(epoch, row)
    # reported between compiled pieces only if every part can be (ncl.training.host_side)
    progress.host_side = all(getattr(fn, "host_side", False) for fn in fns)
    return progress
