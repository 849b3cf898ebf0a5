"""The metrics stream: records equal the History the training returns; metrics.jsonl is
appended per epoch, survives a torn last line and a resume without duplicate epochs; the
TensorBoard adapter's event file, read back, holds the same scalars."""
import json
import struct

import numpy as np
import pytest

from ncl import metrics
from ncl.training import TrainConfig, train_ensemble

SEEDS = [3, 5, 8]


@pytest.fixture(scope="module")
def trained(paper_data):
    x, _ = paper_data
    rows = []
    cfg = TrainConfig(epochs=3, steps_per_epoch=2, chain_length=4, batch_max=20)
    state, history = train_ensemble(SEEDS, x[:200], cfg,
                                    progress=lambda e, r: rows.append((int(e), r)))
    return history, rows


def test_records_match_the_history(trained, tmp_path):
    history, rows = trained
    sink = metrics.JsonlMetrics(tmp_path / metrics.METRICS_JSONL)
    cb = metrics.MetricsCallback(SEEDS, [sink])
    for e, r in rows:
        cb(e, r)
    cb.close()
    recs = metrics.read_metrics_jsonl(tmp_path / metrics.METRICS_JSONL)
    assert len(recs) == 3 * len(SEEDS)
    for r in recs:
        i, e = r["member"], r["epoch"] - 1
        assert r["seed"] == SEEDS[i]
        for name in ("loglik", "sigma_rb", "sigma_counts", "loglik_precise"):
            want = float(np.asarray(getattr(history, name))[i, e])
            assert r[name] == pytest.approx(want, rel=1e-6)
        assert r["batch_size"] == int(np.asarray(history.batch_size)[i, e])
        np.testing.assert_allclose(r["hidden_occupancy"],
                                   np.asarray(history.hidden_occupancy)[i, e], rtol=1e-6)
        assert r["finite"] is True and r["wall_seconds"] >= 0
    walls = [r["wall_seconds"] for r in recs]
    assert walls == sorted(walls)


def _row(value):
    from ncl.training import History
    return History(loglik=np.array([value, np.nan]), loglik_precise=np.array([1.0, 2.0]),
                   sigma_rb=np.array([np.inf, 0.1]), sigma_counts=np.array([0.0, 0.0]),
                   batch_size=np.array([16, 16]), hidden_occupancy=np.ones((2, 3)) / 3,
                   finite=np.array([True, False]))


def test_non_finite_values_are_null_and_the_file_is_strict_json(tmp_path):
    path = tmp_path / "m.jsonl"
    cb = metrics.MetricsCallback([0, 1], [metrics.JsonlMetrics(path)])
    cb(0, _row(-150.0))
    cb.close()
    lines = path.read_text().splitlines()
    recs = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
            for line in lines]
    assert recs[1]["loglik"] is None and recs[0]["sigma_rb"] is None
    assert recs[1]["finite"] is False


def test_resume_drops_epochs_after_the_checkpoint_and_a_torn_line(tmp_path):
    path = tmp_path / "m.jsonl"
    cb = metrics.MetricsCallback([0, 1], [metrics.JsonlMetrics(path)])
    for e in range(5):
        cb(e, _row(-150.0 - e))
    cb.close()
    with open(path, "a") as f:
        f.write('{"epoch": 6, "se')                 # a kill in the middle of a write
    assert [r["epoch"] for r in metrics.read_metrics_jsonl(path)] == [1, 1, 2, 2, 3, 3, 4, 4,
                                                                      5, 5]
    sink = metrics.JsonlMetrics(path, keep_epochs=3)   # the checkpoint held 3 epochs
    cb = metrics.MetricsCallback([0, 1], [sink], wall_offset=sink.last_wall)
    for e in range(3, 5):
        cb(e, _row(-140.0 - e))
    cb.close()
    recs = metrics.read_metrics_jsonl(path)
    assert [r["epoch"] for r in recs] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert recs[-2]["loglik"] == -144.0                # the resumed run's, not the old one's
    assert metrics.JsonlMetrics(path).last_wall == 0.0 and path.read_text() == ""  # new run


def _read_events(path):
    """TFRecord framing: uint64 length, uint32 crc, data, uint32 crc (crc not checked)."""
    from tensorboardX.proto import event_pb2
    data, events, i = path.read_bytes(), [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        events.append(event_pb2.Event.FromString(data[i + 12:i + 12 + n]))
        i += 12 + n + 4
    return events


def test_tensorboard_adapter_event_file_reads_back(trained, tmp_path):
    pytest.importorskip("tensorboardX")
    history, rows = trained
    cb = metrics.MetricsCallback(SEEDS, [metrics.TensorBoardMetrics(tmp_path)])
    for e, r in rows:
        cb(e, r)
    cb.close()
    (event_file,) = tmp_path.glob("events.out.tfevents.*")
    got = {}
    for ev in _read_events(event_file):
        for v in ev.summary.value:
            got[(v.tag, ev.step)] = v.simple_value
    for i, seed in enumerate(SEEDS):
        for e in range(3):
            want = float(np.asarray(history.loglik)[i, e])
            assert got[(f"loglik/seed_{seed}", e + 1)] == pytest.approx(want, rel=1e-6)
    assert len([k for k in got if k[0].startswith("sigma_rb/")]) == 3 * len(SEEDS)


def test_tensorboard_adapter_without_tensorboardx_says_how_to_install(monkeypatch, tmp_path):
    import builtins
    real = builtins.__import__

    def no_tbx(name, *a, **kw):
        if name.startswith("tensorboardX"):
            raise ImportError(name)
        return real(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_tbx)
    with pytest.raises(ImportError, match=r"pip install 'ncl\[tensorboard\]'"):
        metrics.TensorBoardMetrics(tmp_path)


def test_combine_calls_each_callback():
    seen = []
    fn = metrics.combine(None, lambda e, r: seen.append(("a", e)),
                         lambda e, r: seen.append(("b", e)))
    fn(2, None)
    assert seen == [("a", 2), ("b", 2)] and metrics.combine(None, None) is None
