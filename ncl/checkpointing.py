"""Checkpointed training of a saved run (``ncl train``, also ``--resume``): train or
continue the ensemble with a checkpoint every few epochs, save the run, then say whether
any member diverged (:func:`train_and_save`).

* :class:`Checkpointer` — the host-side ``save`` of :func:`ncl.training.train_ensemble`'s
  ``checkpoint`` (``checkpoint.npz``, written atomically by :func:`ncl.io.save_checkpoint`);
* :func:`last_checkpoint_hint` — what is left on disk after a failed write;
* :func:`data_digest` — the SHA-256 of the data a run was trained on, checked on resume
  by :func:`load_resume_data`;
* :func:`divergence_error` — the error message for members that diverged, or ``None``.

The run directory also gets ``metrics.jsonl`` (:mod:`ncl.metrics`), appended every epoch.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from ncl import io
from ncl import training
from ncl.metrics import combine, run_metrics
from ncl.progress import EpochProgress, summary_table


class Checkpointer:
    """The ``save`` of ``train_ensemble``'s ``checkpoint``: writes ``checkpoint.npz``
    atomically (see :func:`ncl.io.save_checkpoint`) with the history of every epoch done
    so far (``prior`` holds those done before a resume).

    Training calls it on the host between compiled pieces, in order. A failing write
    raises here and training stops with :class:`ncl.training.HostCallbackError`; the
    last checkpoint written stays on disk (``written``: its last epoch, -1 for none).
    """

    def __init__(self, out: Path, config, seeds, data_info, extra, prior=None):
        self.out, self.config, self.seeds = out, config, seeds
        self.data_info, self.extra, self.prior = data_info, extra, prior
        self.written = -1 if prior is None else int(np.shape(prior.loglik)[1]) - 1

    def __call__(self, epoch, history, state) -> None:
        epoch = int(epoch)
        if self.prior is not None:
            history = training.join_histories([self.prior, history])
        io.save_checkpoint(self.out, state, history, self.config, seeds=self.seeds,
                           epochs_done=epoch + 1, data_info=self.data_info,
                           extra=self.extra)
        self.written = epoch


def data_digest(x: np.ndarray) -> str:
    """SHA-256 (hex) of the data as uint8 bytes (recorded with a run, checked on resume)."""
    return hashlib.sha256(np.ascontiguousarray(x, np.uint8).tobytes()).hexdigest()


def load_resume_data(out: Path, info: dict, mnist_dir=None) -> np.ndarray:
    """The data of the run to resume in ``out`` (its recorded selection ``info``; MNIST
    from ``mnist_dir`` or the recorded source); ``RuntimeError`` when they differ from
    the data it was trained on (SHA-256)."""
    from ncl import data as data_lib
    if info.get("source", "").startswith("bundled"):
        x, _ = data_lib.load_paper_data()
    else:
        x, _ = data_lib.load_digits(digits=tuple(info["digits"]), per_digit=info["per_digit"],
                                    directory=mnist_dir or info.get("source"))
    if info.get("sha256") and data_digest(x) != info["sha256"]:
        raise RuntimeError(f"the data found now differ from the data the run in {out} was "
                           "trained on (SHA-256 mismatch); pass --mnist-dir with the original "
                           "files")
    return x


def last_checkpoint_hint(out: Path, saver: Checkpointer) -> str:
    """What the user can do after a failed write: resume from the last checkpoint, if any."""
    if saver.written >= 0:
        return (f"The last good checkpoint ({saver.written + 1} epochs done) is kept in "
                f"{out / io.CHECKPOINT_FILE}: fix the cause (disk space, permissions) and "
                f"continue with `ncl train --resume {out}`")
    return "No checkpoint had been written; fix the cause and train again"


def _only_nonfinite(history, first_bad) -> bool:
    """Whether every diverged member's first diverged epoch has non-finite parameters."""
    finite = np.asarray(history.finite, bool)
    return all(not finite[i, e] for i, e in enumerate(first_bad) if e >= 0)


def divergence_error(history, seeds, n_visible: int, out: Path) -> str | None:
    """``ncl train``'s error message naming the members that diverged (non-finite
    parameters, or a log-likelihood 10x worse than coin flips) and their first diverged
    epoch; ``None`` when none did."""
    first_bad = training.divergence_epochs(history, n_visible)
    if not (first_bad >= 0).any():
        return None
    bad = [(seeds[i], int(e)) for i, e in enumerate(first_bad) if e >= 0]
    what = ("non-finite parameters" if _only_nonfinite(history, first_bad)
            else "non-finite parameters or a log-likelihood below "
                 f"{-10 * n_visible * np.log(2):.0f} nats, 10x worse than coin flips")
    return (f"ncl train: error: training diverged ({what}) for "
            f"{len(bad)} of {len(seeds)} seeds, seed@epoch (first diverged epoch, "
            "1-based): " + ", ".join(f"{s}@{e + 1}" for s, e in bad)
            + f"; the run was saved to {out} (History.finite marks non-finite epochs); "
            "lower the learning rate (--lr)")


def train_and_save(out: Path, config, seeds, x, info: dict, extra: dict, start: int = 0,
                   state=None, prior=None, *, checkpoint_every: int | None = None,
                   quiet: bool = False, log=None) -> str | None:
    """Train ``seeds`` on ``x`` (or continue ``state`` from epoch ``start``, ``prior``
    holding the history so far) with a checkpoint every ``checkpoint_every`` epochs
    (default: only at the end), save the run to ``out`` (:func:`ncl.io.save_run`, by
    process 0), remove the checkpoint and print the per-seed summary. Returns
    :func:`divergence_error` (``None`` if every member is fine, and in processes other
    than 0). ``RuntimeError`` when a checkpoint or the run cannot be written, saying what
    is left on disk."""
    import jax
    log = log or (lambda *a: None)
    log(f"ncl train: {len(seeds)} seeds, L={config.model.n_hidden} {config.model.hidden}, "
        f"T={config.chain_length}, {config.epochs} epochs x {config.steps_per_epoch} steps, "
        f"data {x.shape[0]}x{x.shape[1]} ({info['source']}), "
        f"{jax.local_device_count()} x {jax.devices()[0].device_kind}")
    # metrics.jsonl: one record per epoch per member, appended as training goes (process
    # 0 writes; a resumed run keeps the records of the epochs its checkpoint holds)
    stream = (run_metrics(out, seeds, keep_epochs=start if prior is not None else None)
              if jax.process_index() == 0 and start < config.epochs else None)
    progress = combine(EpochProgress(config.epochs, quiet=quiet), stream)
    every = checkpoint_every or config.epochs
    saver = Checkpointer(out, config, seeds, info, extra, prior=prior)
    t0 = time.perf_counter()
    try:
        if start >= config.epochs:  # the checkpoint already holds the finished run
            history = prior
        elif state is None:
            state, history = training.train_ensemble(seeds, x, config, progress=progress,
                                                     checkpoint=(every, saver))
        else:
            state, rest = training.continue_training(state, x, config, start,
                                                     progress=progress,
                                                     checkpoint=(every, saver))
            history = training.join_histories([prior, rest])
        jax.block_until_ready(state)
    except training.HostCallbackError as e:
        raise RuntimeError(f"{e}. {last_checkpoint_hint(out, saver)}") from None
    finally:
        if stream is not None:
            stream.close()
    wall = time.perf_counter() - t0
    if jax.process_index() != 0:  # multi-process: process 0 writes the run
        return None
    extra = dict(extra, train_wall_seconds=wall + extra.get("train_wall_seconds", 0.0),
                 processes=jax.process_count())
    try:
        io.save_run(out, state, history, config, seeds=seeds, data_info=info, extra=extra)
    except OSError as e:
        raise RuntimeError(f"could not save the trained run to {out} ({e}). "
                           f"{last_checkpoint_hint(out, saver)}") from None
    (out / io.CHECKPOINT_FILE).unlink(missing_ok=True)
    log(summary_table(history, seeds))
    log(f"trained in {wall:.1f}s (compile included); saved to {out}")
    return divergence_error(history, seeds, x.shape[1], out)
