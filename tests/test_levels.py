"""ncl.levels: discrete likelihood levels from the data. Known structure is found exactly;
noise gives one level; the committed 144-seed ensemble gives its four levels."""
import csv

import numpy as np
import pytest

from ncl.levels import find_levels, low_group
from tests.helpers import REPO


def _noise(kind, rng, n):
    return {"normal": lambda: rng.normal(size=n), "uniform": lambda: rng.uniform(size=n),
            "student-t5": lambda: rng.standard_t(5, size=n),
            "exponential": lambda: rng.exponential(size=n)}[kind]()


@pytest.mark.parametrize("kind", ["normal", "uniform", "student-t5", "exponential"])
@pytest.mark.parametrize("n", [36, 144])
def test_noise_is_one_level(kind, n):
    rng = np.random.default_rng(n)
    found = [find_levels(_noise(kind, rng, n)).n_levels for _ in range(100)]
    assert np.mean(np.array(found) > 1) <= 0.02, "structure found in noise"


def test_planted_levels_are_recovered_exactly():
    rng = np.random.default_rng(1)
    means = np.array([-152.5, -150.6, -148.3, -147.05])
    sizes = np.array([5, 30, 15, 94])
    for _ in range(40):
        truth = np.repeat(np.arange(4), sizes)
        x = rng.normal(means[truth], 0.06)
        lv = find_levels(x)
        assert lv.n_levels == 4 and lv.stragglers.size == 0
        np.testing.assert_array_equal(lv.label, truth)   # every model on its own level
        assert [lv.levels[k].size for k in range(4)] == sizes.tolist()


def test_a_single_outlier_is_a_straggler_not_a_level():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(-147.0, 0.05, 35), [-151.0]])
    lv = find_levels(x)
    assert lv.n_levels == 1 and lv.stragglers.tolist() == [35]
    assert low_group(lv, x).sum() == 0          # one level: no low group to speak of


def test_two_levels_and_the_low_group():
    x = np.array([-150.0, -150.05, -149.98, -147.0, -147.02, -146.97, -147.01, -152.9])
    lv = find_levels(x)
    assert [round(level.mean, 1) for level in lv.levels] == [-150.0, -147.0]
    assert lv.stragglers.tolist() == [7]
    assert low_group(lv, x).tolist() == [True, True, True, False, False, False, False, True]


@pytest.mark.parametrize("x", [[], [1.0], [1.0, 1.0, 1.0], [np.nan, -147.0, -147.1],
                               [np.inf, -np.inf]])
def test_degenerate_inputs(x):
    lv = find_levels(x)
    assert lv.label.shape == (len(x),)
    assert set(lv.stragglers.tolist()) >= {i for i, v in enumerate(x) if not np.isfinite(v)}


@pytest.mark.parametrize("kw", [dict(spread_floor=0), dict(min_gap_ratio=-1),
                                dict(min_level_size=0), dict(min_level_size=1.5)])
def test_bad_options_are_named(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        find_levels([1.0, 2.0], **kw)


def test_committed_144_seed_ensemble_has_its_four_levels():
    rows = list(csv.DictReader(open(REPO / "docs/paper_reproduction_144/metrics.csv")))
    ll = np.array([float(r["loglik"]) for r in rows])
    lv = find_levels(ll)
    assert [round(level.mean, 1) for level in lv.levels] == [-152.4, -150.6, -148.3, -147.0]
    assert lv.stragglers.size <= 4 and sum(level.size for level in lv.levels) >= 140
