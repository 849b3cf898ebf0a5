"""Progress reported on the host between compiled pieces (the tqdm bar, the metrics
stream): the same numbers as an in-program callback, bit for bit (same per-epoch program,
pieces cut at bucket boundaries); errors stop training cleanly; the bar's lines on a
non-terminal; the persistent compilation cache reused by a second `ncl train`."""
import io as _io
import os
import subprocess
import sys

import numpy as np
import pytest

from ncl import training as T
from ncl.progress import EpochProgress
from ncl.protocol import TrainConfig, progress_interval
from tests.helpers import REPO


class _Rows:
    host_side = True

    def __init__(self, fail_at=None):
        self.rows, self.fail_at = [], fail_at

    def __call__(self, epoch, row):
        if epoch == self.fail_at:
            raise ValueError("boom")
        self.rows.append((epoch, np.asarray(row.loglik)))


@pytest.mark.parametrize("epochs, buckets, want", [(120, 4, 10), (100, 4, 5), (3, 4, 1),
                                                   (40, 1, 4), (7, 2, 1)])
def test_progress_interval_divides_the_bucket_boundaries(epochs, buckets, want):
    cfg = TrainConfig(epochs=epochs, batch_buckets=buckets)
    d = progress_interval(cfg)
    assert d == want
    assert all(hi % d == 0 for _, hi, _ in T.epoch_segments(cfg)[:-1])


def test_host_side_progress_equals_the_in_program_callback(paper_data):
    x = paper_data[0][:400]
    cfg = TrainConfig(epochs=6, steps_per_epoch=2, chain_length=4, batch_max=40,
                      batch_buckets=2)   # pieces of one epoch: 2 programs, one per bucket
    seen = []
    s0, h0 = T.train_ensemble([0, 1, 2], x, cfg, progress=lambda e, r: seen.append(int(e)))
    host = _Rows()
    s1, h1 = T.train_ensemble([0, 1, 2], x, cfg, progress=host)
    for name in h0._fields:
        np.testing.assert_array_equal(np.asarray(getattr(h0, name)),
                                      np.asarray(getattr(h1, name)), err_msg=name)
    np.testing.assert_array_equal(np.asarray(s0.params.w), np.asarray(s1.params.w))
    assert seen == [e for e, _ in host.rows] == list(range(6))
    for e, ll in host.rows:
        np.testing.assert_array_equal(ll, np.asarray(h1.loglik)[:, e])


def test_a_failing_host_side_progress_stops_training_cleanly(paper_data):
    x = paper_data[0][:400]
    cfg = TrainConfig(epochs=4, steps_per_epoch=2, chain_length=4, batch_max=40,
                      batch_buckets=1)
    with pytest.raises(T.HostCallbackError, match="progress callback failed.*boom"):
        T.train_ensemble([0, 1], x, cfg, progress=_Rows(fail_at=2))


def test_bar_lines_on_a_non_terminal():
    row = T.History(loglik=np.array([-150.0, np.nan]), loglik_precise=np.zeros(2),
                    sigma_rb=np.zeros(2), sigma_counts=np.zeros(2),
                    batch_size=np.array([16, 16]), hidden_occupancy=np.zeros((2, 3)),
                    finite=np.array([True, False]))
    buf = _io.StringIO()
    bar = EpochProgress(120, stream=buf)
    for e in range(120):
        bar(e, row)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 11                     # epoch 1 and every 12th (120 the last)
    assert lines[-1].startswith("epoch  120/120 |") and "DIVERGED: 1 member(s)" in lines[-1]
    assert "median  -150.00" in lines[0] and "\r" not in buf.getvalue()


@pytest.mark.slow
def test_second_cli_run_reuses_the_compiled_programs(tmp_path):
    env = dict(os.environ, NCL_COMPILE_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("NCL_NO_COMPILE_CACHE", None)
    args = [sys.executable, "-m", "ncl.cli", "train", "--seeds", "2", "--epochs", "4",
            "--steps-per-epoch", "2", "-T", "4", "--batch-max", "40", "-q"]

    def entries():
        return sorted(p.name for p in (tmp_path / "cache").iterdir())

    r = subprocess.run(args + ["--out", str(tmp_path / "a")], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    first = entries()
    assert first, "nothing was cached"
    r = subprocess.run(args + ["--out", str(tmp_path / "b")], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert entries() == first                   # every program came from the cache
    with np.load(tmp_path / "a" / "history.npz") as a, np.load(tmp_path / "b" / "history.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    env["NCL_NO_COMPILE_CACHE"] = "1"
    r = subprocess.run(args + ["--out", str(tmp_path / "c")], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and entries() == first


def test_cli_main_uses_the_cache_for_its_command_only(tmp_path, monkeypatch):
    """In a notebook, ``ncl.cli.main`` caches the command's programs and then gives JAX's
    cache options back: what the caller compiles afterwards is not written there."""
    import jax
    from ncl import cli
    cache = tmp_path / "cache"
    monkeypatch.setenv("NCL_COMPILE_CACHE_DIR", str(cache))
    monkeypatch.delenv("NCL_NO_COMPILE_CACHE")
    before = jax.config.values["jax_compilation_cache_dir"]
    assert cli.main(["train", "--seeds", "2", "--epochs", "2", "--steps-per-epoch", "2",
                     "-T", "4", "--batch-max", "40", "-q", "--out", str(tmp_path / "a")]) == 0
    written = sorted(p.name for p in cache.iterdir())
    assert written, "the command cached nothing"
    assert jax.config.values["jax_compilation_cache_dir"] == before
    after = jax.jit(lambda v: jnp_cos_plus(v))(np.arange(7.0, dtype=np.float32))
    assert np.isfinite(np.asarray(after)).all()
    assert sorted(p.name for p in cache.iterdir()) == written


def jnp_cos_plus(v):
    import jax.numpy as jnp
    return jnp.cos(v) + 0.125 * v
