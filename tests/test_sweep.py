"""Sweeps: grid parsing, grouping by shape, and member == the same settings alone.

A sweep group is one vmapped program; a member trained alone is another shape, so the two
agree to float32 round-off only, until a Bernoulli draw flips (see ``tests/helpers.py``).
Members are therefore compared after one training step (parameters to round-off, each
closest to its own standalone run, which catches settings or seeds attached to the wrong
member), with keys bit for bit.
"""
import dataclasses

import jax
import numpy as np
import pytest

from ncl import sweep as S
from ncl import training as T
from tests import helpers as A

BASE = T.TrainConfig(epochs=3, steps_per_epoch=4, chain_length=10, batch_min=8, batch_max=30,
                     batch_buckets=1)


def test_parse_grid():
    g = S.parse_grid("lr=0.03,0.1 T=24,48 centering=on,off recognition=paper,softmax")
    assert g == {"lr": [0.03, 0.1], "T": [24, 48], "centering": [True, False],
                 "recognition": ["paper", "softmax"]}
    for bad, match in [("lr=0.1 learning_rate=0.2", "twice"), ("foo=1", "unknown"),
                       ("lr", "name=v1"), ("T=abc", "T"), ("centering=maybe", "on/off"),
                       ("", "empty")]:
        with pytest.raises(ValueError, match=match):
            S.parse_grid(bad)
    with pytest.raises(ValueError, match="recognition"):
        S.expand(BASE, {"recognition": ["nonsense"]}, [0])


@pytest.mark.slow   # end to end; CI runs it (-m slow)
def test_sweep_members_equal_standalone_runs(paper_data):
    x, _ = paper_data
    grid = S.parse_grid("lr=0.05,0.2 centering=on,off T=8,12")
    first = dataclasses.replace(BASE, epochs=1, steps_per_epoch=1)  # one training step
    members = S.expand(first, grid, seeds=[0, 1])
    assert len(members) == 16
    results = S.train_sweep(members, x)
    assert len(results) == 2  # one compiled group per T; lr and centering vary inside
    rows = S.summary_rows(results)
    assert [r["member"] for r in rows] == list(range(16))
    for res in results:
        picked = [j for j in range(len(res.members)) if j % 3 == 0]  # a subset: time
        alone = [T.train(res.members[j].seed, x, res.members[j].config) for j in picked]
        params = jax.tree_util.tree_map(lambda *a: np.stack([np.asarray(v) for v in a]),
                                        *[s.params for s, _ in alone])
        A.assert_first_step_matches(jax.tree_util.tree_map(
            lambda a, picked=picked: np.asarray(a)[picked], res.state.params), params)
        np.testing.assert_array_equal(A.key_data(res.state)[picked],
                                      np.stack([A.key_data(s) for s, _ in alone]))
        A.assert_members_close(np.asarray(res.history.loglik)[picked, 0],
                               [float(h.loglik[0]) for _, h in alone])
        for j in picked:
            lr = float(res.state.opt_state.hyperparams["learning_rate"][j])
            assert lr == pytest.approx(res.members[j].config.learning_rate)
    # learning rate matters: same seed and T, different lr -> different parameters
    r0 = results[0]
    a = [j for j, m in enumerate(r0.members) if m.seed == 0 and m.config.learning_rate == 0.05]
    b = [j for j, m in enumerate(r0.members) if m.seed == 0 and m.config.learning_rate == 0.2]
    assert not np.allclose(r0.state.params.w[a[0]], r0.state.params.w[b[0]])


@pytest.mark.slow   # end to end; CI runs it (-m slow)
def test_cli_sweep(tmp_path):
    import csv

    from ncl.cli import main
    out = tmp_path / "sw"
    assert main(["sweep", "--grid", "lr=0.05,0.2 T=6,8", "--seeds", "2", "--epochs", "2",
                 "--steps-per-epoch", "2", "--batch-max", "20", "--batch-min", "4",
                 "--out", str(out), "-q"]) == 0
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert len(rows) == 8 and {r["lr"] for r in rows} == {"0.05", "0.2"}
    assert (out / "group_00" / "config.json").exists() and (out / "group_01").exists()
    assert main(["sweep", "--grid", "bogus=1", "--out", str(tmp_path / "x")]) == 2
