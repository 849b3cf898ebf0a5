"""ncl.claims: each paper claim's test on synthetic ensembles of known structure: a planted
effect is supported, a reversed one contradicted, none is not supported (at about the
test's level over many draws), and ensembles too small to decide say so."""
import numpy as np
import pytest

from ncl import claims as C

SUP, CON, UND = C.SUPPORTED, C.CONTRADICTED, C.UNDECIDED


def _levels(rng, n, k=4):
    return np.sort(rng.integers(0, k, size=n))


def test_trend_across_levels_supported_reversed_contradicted():
    rng = np.random.default_rng(0)
    lab = _levels(rng, 36)
    sigma = 1.0 + lab + rng.normal(0, 0.5, lab.size)
    v = C.regimes_trend(lab, sigma)
    assert v.verdict == SUP and v.p_value < 1e-4 and v.interval[0] > 0 < v.statistic
    assert C.regimes_trend(lab, -sigma).verdict == CON


def test_no_trend_is_rarely_supported_and_says_how_many_seeds_would_decide(monkeypatch):
    monkeypatch.setattr(C, "N_RESAMPLES", 100)     # the verdict does not use the interval
    rng = np.random.default_rng(1)
    verdicts = []
    for _ in range(100):
        lab = _levels(rng, 36)
        verdicts.append(C.regimes_trend(lab, rng.normal(size=lab.size)))
    share = np.mean([v.verdict == SUP for v in verdicts])
    assert share <= 0.12                       # one-sided α = 0.05, with sampling slack
    undecided = [v for v in verdicts if v.verdict == UND]
    assert undecided and all(v.seeds_to_decide is None or v.seeds_to_decide > 36
                             for v in undecided)


def test_trend_with_two_levels_is_not_three_regimes():
    lab = np.repeat([0, 1], 20)
    v = C.regimes_trend(lab, lab + np.linspace(0, 0.1, 40))
    assert v.verdict == UND and "only 2 levels" in v.note


@pytest.mark.parametrize("n", [1, 3])
def test_tiny_ensembles_are_undecided_with_a_reason(n):
    lab, s, seeds = np.zeros(n, int), np.arange(n, dtype=float), np.arange(n)
    for v in (C.regimes_trend(lab, s), C.low_ll_low_sigma(np.zeros(n, bool), s, seeds),
              C.low_kl_high_sigma(np.full(n, 0.1), s, seeds)):
        assert v.verdict == UND and v.note and np.isnan(v.statistic)


def test_low_ll_at_low_sigma_with_the_exception_named():
    rng = np.random.default_rng(2)
    seeds = np.arange(100, 136)
    low = np.zeros(36, bool)
    low[:8] = True
    sigma = np.where(low, rng.uniform(0.5, 1.5, 36), rng.uniform(2, 10, 36))
    sigma[3] = 9.0                              # one low-LL model with a large σ
    v = C.low_ll_low_sigma(low, sigma, seeds)
    assert v.verdict == SUP and v.exceptions == (103,)
    assert 0.8 < v.statistic <= 1.0 and v.interval[0] <= v.statistic <= v.interval[1]
    assert C.low_ll_low_sigma(low, -sigma, seeds).verdict == CON


def test_low_kl_at_high_sigma():
    rng = np.random.default_rng(3)
    sigma = rng.uniform(0, 10, 144)
    kl = np.exp(-sigma) * 0.1 * rng.uniform(0.5, 2, 144)   # KL falls as σ grows
    v = C.low_kl_high_sigma(kl, sigma, np.arange(144))
    assert v.verdict == SUP and "Spearman ρ(σ, KL) = -" in v.note
    none_low = C.low_kl_high_sigma(np.full(144, 0.5), sigma, np.arange(144))
    assert none_low.verdict == UND and "0 of 144" in none_low.note


def test_tau_trend_and_scale():
    rng = np.random.default_rng(4)
    sigma = rng.uniform(0, 10, 144)
    tau = 5 * sigma * rng.lognormal(0, 0.1, 144)   # top tercile: τ ≈ 35 … 50
    assert C.tau_grows_with_sigma(sigma, tau).verdict == SUP
    scale = C.tau_scale(sigma, tau, np.arange(144))
    assert (scale.verdict == SUP
            and 25 <= scale.interval[0] <= scale.statistic <= scale.interval[1] <= 100)
    assert C.tau_scale(sigma, tau * 10, np.arange(144)).verdict == CON
    tau_max = tau.copy()
    tau_max[7] = 1e4                                 # one huge τ: reported, not the verdict
    v = C.tau_scale(sigma, tau_max, np.arange(144))
    assert v.verdict == scale.verdict and "seed 7" in v.note


def test_trace_below_uniform():
    seeds = np.arange(10)
    v = C.trace_below_uniform(np.full(10, 0.05), np.full(10, 0.001), 6, seeds)
    assert v.verdict == SUP and v.statistic == 1.0
    tr = np.full(10, 0.05)
    tr[4] = 0.3
    v = C.trace_below_uniform(tr, np.full(10, 0.001), 6, seeds)
    assert v.verdict == CON and v.exceptions == (4,)
    tr[4] = 1 / 6 + 0.001                              # above, but within its error
    assert C.trace_below_uniform(tr, np.full(10, 0.01), 6, seeds).verdict == UND


def test_good_run():
    ll = np.array([-150.0, -147.0, -147.1, -147.05])
    top = np.array([False, True, True, True])
    v = C.good_run_structure([False, True, False, True], ll, np.arange(4), top)
    assert v.verdict == SUP and v.exceptions == (2,) and v.statistic == pytest.approx(2 / 3)
    assert C.good_run_structure([True, False, True, True], ll, np.arange(4), top).verdict == CON


def test_seeds_to_decide_grows_as_the_effect_shrinks():
    lab = np.repeat([0, 1, 2], 4)
    noise = np.array([0.3, -0.8, 0.5, -0.1, 0.9, -0.6, 0.2, -0.4, 0.7, -0.9, 0.1, -0.2])
    need = []
    for effect in (0.3, 0.15):
        v = C.regimes_trend(lab, effect * lab + noise)
        assert v.verdict == UND and v.seeds_to_decide > 12
        need.append(v.seeds_to_decide)
    assert need[1] > need[0]


def test_median_interval_is_scipys_bca_interval_one_resample_at_a_time():
    """The vectorized median bootstrap gives the interval scipy computes calling np.median
    once per resample (same generator seed), on data with ties and a heavy tail."""
    import inspect
    from scipy import stats as st
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.standard_t(2, size=30), [1.0, 1.0, 1.0]])
    m, (lo, hi) = C.median_interval(x)
    key = "rng" if "rng" in inspect.signature(st.bootstrap).parameters else "random_state"
    ref = st.bootstrap((x,), np.median, vectorized=False, n_resamples=C.N_RESAMPLES,
                       confidence_level=C.CONFIDENCE, method="BCa",
                       **{key: np.random.default_rng(C.BOOTSTRAP_SEED)})
    assert m == np.median(x)
    assert (lo, hi) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert lo < m < hi
