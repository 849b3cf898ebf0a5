"""Nothing a user saved is lost or silently mixed: faults during and around training end
in one clear error, the last good checkpoint is kept, and a run directory is read only
when its files belong together (manifest checksums, steps, history, seeds)."""
import errno
import json
import shutil

import numpy as np
import pytest

from ncl import cli, io
from ncl import training as T

TINY = ["--seeds", "2", "--epochs", "4", "--steps-per-epoch", "2", "-T", "4",
        "--batch-min", "8", "--batch-max", "8", "--cpu-devices", "1", "-q"]
CFG = T.TrainConfig(epochs=3, steps_per_epoch=2, chain_length=4, batch_min=8, batch_max=8)


def _main(capsys, argv):
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def two_runs(paper_data):
    """Two finished tiny runs (different seeds), as (state, history) pairs."""
    x = paper_data[0][:200]
    return x, T.train_ensemble([0, 1], x, CFG), T.train_ensemble([5, 6], x, CFG)


def _save(directory, result, seeds):
    state, hist = result
    return io.save_run(directory, state, hist, CFG, seeds=seeds)


# ----------------------------------------------------------------------------- --out

def test_out_that_is_a_file_or_unwritable_fails_before_training(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "train_ensemble", lambda *a, **k: pytest.fail("trained"))
    f = tmp_path / "file"
    f.write_text("mine")
    rc, err = _main(capsys, ["train", *TINY, "--out", str(f)])
    assert rc == cli.EXIT_USAGE and "--out" in err and "is a file" in err
    assert f.read_text() == "mine"
    rc, err = _main(capsys, ["train", *TINY, "--out", "/proc/ncl-test/run"])
    assert rc == cli.EXIT_USAGE and "not a writable directory" in err, err


def test_foreign_run_files_are_never_overwritten_without_overwrite(capsys, tmp_path):
    d = tmp_path / "theirs"
    d.mkdir()
    (d / io.STATE_FILE).write_bytes(b"someone's state")
    (d / io.HISTORY_FILE).write_bytes(b"someone's history")
    rc, err = _main(capsys, ["train", *TINY, "--out", str(d)])
    assert rc == cli.EXIT_USAGE and "state.npz" in err and "--overwrite" in err
    assert (d / io.STATE_FILE).read_bytes() == b"someone's state"
    rc, err = _main(capsys, ["reproduce", "--quick", "-q", "--out", str(d)])
    assert rc == cli.EXIT_USAGE and "holds a saved run" in err
    assert (d / io.HISTORY_FILE).read_bytes() == b"someone's history"


# ----------------------------------------------------------------------------- faults in training

def test_disk_full_during_a_checkpoint_keeps_the_last_good_one(capsys, tmp_path, monkeypatch):
    real, calls = io.save_checkpoint, []

    def failing(*a, **k):
        calls.append(k["epochs_done"])
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(io, "save_checkpoint", failing)
    out = tmp_path / "run"
    rc, err = _main(capsys, ["train", *TINY, "--checkpoint-every", "1", "--out", str(out)])
    assert rc == cli.EXIT_FAILURE
    assert "No space left on device" in err and "last good checkpoint (1 epochs done)" in err
    assert f"--resume {out}" in err and err.count("error:") == 1
    assert calls == [1, 2]                       # training stopped at the failed write
    assert not (out / io.MANIFEST_FILE).exists()
    monkeypatch.undo()
    assert io.load_checkpoint(out).meta["epochs_done"] == 1
    rc, err = _main(capsys, ["train", "--resume", str(out), "-q"])  # and it resumes
    assert rc == cli.EXIT_OK, err
    assert io.load_run(out).meta["epochs_done"] == 4


def test_failing_final_save_keeps_the_checkpoint(capsys, tmp_path, monkeypatch):
    def failing(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(io, "save_run", failing)
    out = tmp_path / "run"
    rc, err = _main(capsys, ["train", *TINY, "--checkpoint-every", "2", "--out", str(out)])
    assert rc == cli.EXIT_FAILURE and "Read-only file system" in err
    assert "last good checkpoint (4 epochs done)" in err
    assert io.load_checkpoint(out).meta["epochs_done"] == 4


def test_raising_progress_callback_is_one_clear_error(paper_data):
    x = paper_data[0][:200]

    def progress(epoch, row):
        if epoch == 1:
            raise ValueError("my plotting code broke")

    with pytest.raises(T.HostCallbackError, match="my plotting code broke"):
        T.train_ensemble([0, 1], x, CFG, progress=progress)
    saved = []
    with pytest.raises(T.HostCallbackError, match="checkpoint save after epoch 2"):
        T.train_ensemble([0, 1], x, CFG, checkpoint=(1, lambda e, h, s: saved.append(e)
                                                     if e == 0 else 1 / 0))
    assert saved == [0]


def test_log_likelihood_blow_up_is_reported_as_divergence(capsys, tmp_path):
    """Finite but absurd weights (lr 1000): not a success, even though nothing is NaN."""
    out = tmp_path / "run"
    rc, err = _main(capsys, ["train", *TINY, "--lr", "1000", "--out", str(out)])
    assert rc == cli.EXIT_FAILURE
    assert "training diverged" in err and "log-likelihood below" in err and "--lr" in err
    assert io.load_run(out).meta["epochs_done"] == 4  # saved, with its record


def test_divergence_epochs_rule():
    hist = T.History(loglik=np.array([[-150., -151.], [-150., -1e31], [-150., np.nan]]),
                     loglik_precise=np.zeros((3, 2)), sigma_rb=np.zeros((3, 2)),
                     sigma_counts=np.zeros((3, 2)), batch_size=np.zeros((3, 2)),
                     hidden_occupancy=np.zeros((3, 2, 6)),
                     finite=np.array([[True, True], [True, True], [True, True]]))
    np.testing.assert_array_equal(T.divergence_epochs(hist, 784), [-1, 1, 1])
    hist = hist._replace(finite=np.array([[True, False], [True, True], [True, True]]))
    np.testing.assert_array_equal(T.divergence_epochs(hist, 784), [1, 1, 1])


# ----------------------------------------------------------------------------- run directories

def test_interrupted_overwrite_is_refused_not_mixed(tmp_path, monkeypatch, two_runs):
    _, a, b = two_runs
    d = _save(tmp_path / "run", a, [0, 1])
    assert io.load_run(d).seeds == (0, 1)
    real = io._atomic_write

    def disk_full_at_history(path, fn):
        if path.name == io.HISTORY_FILE:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, fn)

    monkeypatch.setattr(io, "_atomic_write", disk_full_at_history)
    with pytest.raises(OSError):
        _save(d, b, [5, 6])  # new state.npz written, old history.npz and config left
    monkeypatch.undo()
    with pytest.raises(io.RunFileError, match="config.json is missing"):
        io.load_run(d)


def test_files_from_another_run_are_refused(tmp_path, two_runs):
    _, a, b = two_runs
    d1, d2 = _save(tmp_path / "a", a, [0, 1]), _save(tmp_path / "b", b, [5, 6])
    mixed = tmp_path / "mixed"
    shutil.copytree(d1, mixed)
    shutil.copy(d2 / io.STATE_FILE, mixed / io.STATE_FILE)
    with pytest.raises(io.RunIntegrityError, match="does not match manifest.json"):
        io.load_run(mixed)
    (mixed / io.MANIFEST_FILE).unlink()
    with pytest.raises(io.RunIntegrityError, match="incomplete run"):
        io.load_run(mixed)


def test_inconsistent_run_is_refused_even_with_a_matching_manifest(tmp_path, two_runs):
    _, (state, hist), _ = two_runs
    d = io.save_run(tmp_path / "run", state, hist, CFG, seeds=[0, 1], epochs_done=2)
    with pytest.raises(io.RunIntegrityError, match="history holds 3 epochs"):
        io.load_run(d)
    d = io.save_run(tmp_path / "run2", state, hist, CFG, seeds=[0, 0])
    with pytest.raises(io.RunIntegrityError, match="duplicate seeds"):
        io.load_run(d)


def test_diagnose_never_writes_into_a_run_or_over_diagnostics(capsys, tmp_path, two_runs):
    _, a, _ = two_runs
    d = _save(tmp_path / "run", a, [0, 1])
    before = (d / io.CONFIG_FILE).read_bytes()
    rc, err = _main(capsys, ["diagnose", str(d), "--out", str(d), "--quick", "-q"])
    assert rc == cli.EXIT_USAGE and "holds a saved run" in err
    assert (d / io.CONFIG_FILE).read_bytes() == before
    assert io.load_run(d).seeds == (0, 1)
    out = tmp_path / "diag"
    out.mkdir()
    (out / "diagnostics.npz").write_bytes(b"earlier results")
    rc, err = _main(capsys, ["diagnose", str(d), "--out", str(out), "--quick", "-q"])
    assert rc == cli.EXIT_USAGE and "already holds diagnostics" in err and "--overwrite" in err
    assert (out / "diagnostics.npz").read_bytes() == b"earlier results"


def test_format_2_runs_still_load(tmp_path, two_runs):
    """Runs saved before the manifest (format 2, committed by config.json) load."""
    _, a, _ = two_runs
    d = _save(tmp_path / "run", a, [0, 1])
    meta = json.loads((d / io.CONFIG_FILE).read_text())
    meta["format_version"] = 2
    (d / io.CONFIG_FILE).write_text(json.dumps(meta))
    (d / io.MANIFEST_FILE).unlink()
    assert io.load_run(d).seeds == (0, 1)


def test_sizes_that_cannot_fit_fail_before_compiling(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "_train_in_pieces", lambda *a, **k: pytest.fail("compiled"))
    rc, err = _main(capsys, ["train", *TINY, "-L", "2000000", "--out", str(tmp_path / "r")])
    assert rc == cli.EXIT_FAILURE and "GiB" in err and "more than the" in err
    x = np.zeros((100, 784), np.float32)
    with pytest.raises(ValueError, match="GiB"):
        T.train_ensemble(range(3_000_000), x, T.TrainConfig(batch_max=100))
    need = T.estimate_memory_bytes(T.TrainConfig(), 1152, 3000, 784)
    assert 0.3 * 2 ** 30 < need < 3 * 2 ** 30  # measured: 1.5 GiB (docs/benchmarks.md)
