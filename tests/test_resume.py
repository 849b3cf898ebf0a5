"""Resumable runs: a real `ncl train` subprocess killed mid-run, then `--resume`, equals
the uninterrupted run bit for bit; a checkpoint torn mid-write leaves the previous one."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from ncl import io
from tests.conftest import REPO

EPOCHS = 20
ARGS = ["--seeds", "4", "--epochs", str(EPOCHS), "--steps-per-epoch", "40", "-T", "48",
        "--batch-max", "60", "--checkpoint-every", "1", "--cpu-devices", "1", "-q"]


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


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full = _ncl(*ARGS, "--out", str(full_dir))
    cut = _ncl(*ARGS, "--out", str(cut_dir))
    ckpt = cut_dir / io.CHECKPOINT_FILE
    deadline = time.time() + 300
    while time.time() < deadline and not ckpt.exists() and cut.poll() is None:
        time.sleep(0.01)  # kill as soon as the first checkpoint exists
    assert cut.poll() is None, "run finished before it could be interrupted"
    cut.send_signal(signal.SIGKILL)
    cut.wait()
    assert not (cut_dir / io.CONFIG_FILE).exists()       # it really was interrupted
    done = io.load_checkpoint(cut_dir).meta["epochs_done"]
    assert 1 <= done < EPOCHS
    assert full.wait(timeout=600) == 0, full.stderr.read()[-2000:]

    resumed = _ncl("--resume", str(cut_dir), "--cpu-devices", "1", "-q")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]
    a, b = io.load_run(full_dir), io.load_run(cut_dir)
    for x, y in zip(_leaves(a.state), _leaves(b.state)):
        np.testing.assert_array_equal(x, y)
    for name in a.history._fields:
        np.testing.assert_array_equal(getattr(a.history, name), getattr(b.history, name))
    assert b.meta["epochs_done"] == EPOCHS and not (cut_dir / io.CHECKPOINT_FILE).exists()


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
