"""Resumable runs, as a user runs them: a real `ncl train` subprocess with the DEFAULT
device count (one XLA CPU device per core) is killed with SIGKILL at a random epoch, then
`ncl train --resume DIR` (no other option: the recorded device count is used) must give a
state and history equal, bit for bit, to the uninterrupted run. Bit-identity is
guaranteed here: the resumed epochs run the same per-epoch program on the same shapes and
devices, with step keys ``fold_in(key, step)``. Checked at the default checkpoint
interval (10) and at others; a checkpoint torn mid-write leaves the previous one."""
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ncl import io
from tests.helpers import REPO

EPOCHS = 20
ARGS = ["--seeds", "16", "--epochs", str(EPOCHS), "--steps-per-epoch", "60", "-T", "48",
        "--batch-max", "60", "-q"]  # default --cpu-devices and --checkpoint-every


def _ncl(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "ncl.cli", "train", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _leaves(state):
    out = []
    for leaf in jax.tree_util.tree_leaves(state):
        if hasattr(leaf, "dtype") and jax.numpy.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out.append(np.asarray(leaf))
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    p = _ncl(*ARGS, "--out", str(out))
    assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    return io.load_run(out)


def _checkpoint_epochs(directory) -> int:
    try:
        return int(io.read_checkpoint_meta(directory)["epochs_done"])
    except io.RunFileError:
        return 0


def _kill_and_resume(tmp_path, uninterrupted, every):
    """Kill a run after a random due checkpoint plus a random fraction of an epoch;
    resume it; compare with the uninterrupted run bit for bit."""
    rng = random.Random()
    extra = [] if every is None else ["--checkpoint-every", str(every)]
    interval = 10 if every is None else every
    for attempt in range(4):  # a fast machine may finish before the kill lands: retry
        target = rng.choice(range(interval, EPOCHS, interval))
        cut_dir = tmp_path / f"cut{attempt}"
        cut = _ncl(*ARGS, *extra, "--out", str(cut_dir))
        deadline = time.time() + 300
        while (time.time() < deadline and cut.poll() is None
               and _checkpoint_epochs(cut_dir) < target):
            time.sleep(0.002)
        if attempt < 2:
            time.sleep(rng.uniform(0.0, 0.3))  # part of an epoch, or a few
        cut.send_signal(signal.SIGKILL)
        cut.wait()
        if not (cut_dir / io.MANIFEST_FILE).exists():
            break                                         # it really was interrupted
    else:
        pytest.fail("every run finished before it could be interrupted")
    with pytest.raises(io.RunFileError):
        io.load_run(cut_dir)                              # ... and is no finished run
    done = io.load_checkpoint(cut_dir).meta["epochs_done"]
    # a kill after the last epoch's checkpoint but before the finished run's manifest
    # leaves done == EPOCHS: a legitimate interrupted state, which resume must finish
    assert target <= done <= EPOCHS and done % interval == 0

    resumed = _ncl("--resume", str(cut_dir), "-q")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]
    a, b = uninterrupted, io.load_run(cut_dir)
    assert b.meta["extra"]["cpu_devices"] == a.meta["extra"]["cpu_devices"] == os.cpu_count()
    assert b.meta["provenance"]["device_count"] == a.meta["provenance"]["device_count"]
    for x, y in zip(_leaves(a.state), _leaves(b.state)):
        np.testing.assert_array_equal(x, y)
    for name in a.history._fields:
        np.testing.assert_array_equal(getattr(a.history, name), getattr(b.history, name),
                                      err_msg=f"{name}, killed after epoch {done}")
    assert b.meta["epochs_done"] == EPOCHS and not (cut_dir / io.CHECKPOINT_FILE).exists()


@pytest.mark.parametrize("every", [None], ids=["default-interval"])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, every):
    _kill_and_resume(tmp_path, uninterrupted, every)


@pytest.mark.slow
@pytest.mark.parametrize("every", [1, 3, 7])
def test_killed_run_resumes_at_other_intervals(tmp_path, uninterrupted, every):
    _kill_and_resume(tmp_path, uninterrupted, every)


def test_checkpoints_hold_every_epoch_at_any_interval(paper_data):
    """The history handed to ``save`` covers every epoch run so far (not only the due
    ones) and equals the final history's prefix; intervals do not change results."""
    from ncl.training import TrainConfig, continue_training, init_ensemble_state, train_ensemble
    x = paper_data[0][:300]
    cfg = TrainConfig(epochs=7, steps_per_epoch=2, chain_length=4, batch_min=4, batch_max=20,
                      batch_buckets=1)
    base_state, base = train_ensemble([0, 1, 2], x, cfg)
    for every in (3,):
        saved = {}
        state, hist = train_ensemble([0, 1, 2], x, cfg, checkpoint=(
            every, lambda e, h, s, saved=saved: saved.__setitem__(e, (h, np.asarray(s.step)))))
        want = sorted({e for e in range(cfg.epochs) if (e + 1) % every == 0} | {6})
        assert sorted(saved) == want
        for e, (h, steps) in saved.items():
            assert np.shape(h.loglik) == (3, e + 1)
            np.testing.assert_array_equal(h.loglik, np.asarray(hist.loglik)[:, :e + 1])
            assert (steps == (e + 1) * cfg.steps_per_epoch).all()
        np.testing.assert_array_equal(np.asarray(hist.loglik), np.asarray(base.loglik))
    # a resumed piece hands over the epochs of the piece
    saved = {}
    s4, _ = continue_training(init_ensemble_state([0, 1, 2], x, cfg), x, cfg, 0, 4)
    continue_training(s4, x, cfg, 4, checkpoint=(2, lambda e, h, s: saved.__setitem__(e, h)))
    assert sorted(saved) == [5, 6] and np.shape(saved[6].loglik) == (3, 3)
    np.testing.assert_array_equal(saved[6].loglik, np.asarray(base.loglik)[:, 4:])


def test_torn_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, paper_data):
    from ncl.training import TrainConfig, train_ensemble
    x, _ = paper_data
    cfg = TrainConfig(epochs=2, steps_per_epoch=2, chain_length=4, batch_max=20, batch_min=4)
    state, hist = train_ensemble([0, 1], x, cfg)
    io.save_checkpoint(tmp_path, state, hist, cfg, seeds=[0, 1], epochs_done=2)
    before = (tmp_path / io.CHECKPOINT_FILE).read_bytes()

    def torn(file, **arrays):  # simulates a crash in the middle of writing
        file.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(io.np, "savez", torn)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint(tmp_path, state, hist, cfg, seeds=[0, 1], epochs_done=2)
    monkeypatch.undo()
    assert (tmp_path / io.CHECKPOINT_FILE).read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    run = io.load_checkpoint(tmp_path)
    assert run.meta["epochs_done"] == 2
    # a corrupted checkpoint is a clear error, not a traceback from numpy
    (tmp_path / io.CHECKPOINT_FILE).write_bytes(before[: len(before) // 2])
    with pytest.raises(io.RunFileError, match="corrupt or truncated"):
        io.load_checkpoint(tmp_path)
