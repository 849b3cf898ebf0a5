"""Diagnostics against exact values from brute-force enumeration of all 2^D visible states.

The reference below is written independently in float64 NumPy (it does not call
ncl.model or ncl.diagnostics): log A, log Ā, M[z', z] = Σ_x A(z', x) Ā(x, z) (eq. 3),
its stationary vector (np.linalg.eig), σ (eq. 21), τ (eq. 23) and the exact
log-likelihood (eqs. 5, 7). Stochastic estimates use fixed keys and are compared with
the exact values within NSE of their own (jackknife) standard errors; the error bars
themselves are checked against the spread of repeated runs.
"""
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncl import diagnostics as dg
from ncl import markov
from ncl import model as ncl_model
from ncl.model import ModelConfig, Params
from tests import helpers as reference

# Tolerance in standard errors. The jackknife SE has n_chains − 1 = 15 degrees of
# freedom, so a z-score is t_15-distributed: P(|t_15| > 5) ≈ 2e-4 per comparison.
NSE = 5.0

# One DiagnosticsConfig for all tiny-system runs, so compiled programs are shared.
DCFG = dg.DiagnosticsConfig(burn_in=200, n_steps=40000, n_chains=16, rb_samples=8000,
                            loglik_chunk=16, segment=500, rb_chunk=500)


# ----------------------------------------------------------------------------- reference

def _all_x(D):
    return np.array(list(itertools.product([0, 1], repeat=D)), np.float64)


_log_sig, _states = reference.log_sigmoid, reference.hidden_states


def exact(params, center, L, hidden, recognition="paper", data=None):
    """Exact M, log M, stationary p, σ, τ (and log-likelihood of ``data``), float64."""
    w, a, wb, ab = [np.asarray(t, np.float64) for t in params]
    c = np.asarray(center, np.float64)
    X = _all_x(w.shape[0])
    Z = _states(L, hidden)
    h = Z @ w.T + a
    logA = X @ h.T - np.logaddexp(0.0, h).sum(1)                    # (2^D, S)
    g = (X - c) @ wb.T + ab
    if hidden == "onehot":
        lg = g if recognition == "softmax" else _log_sig(g)
        logAbar = lg - np.logaddexp.reduce(lg, axis=1, keepdims=True)
    else:
        logAbar = _log_sig(g) @ Z.T + _log_sig(-g) @ (1 - Z).T
    logM = np.logaddexp.reduce(logA.T[:, :, None] + logAbar[None], axis=1)
    M = np.exp(logM)
    ev, vec = np.linalg.eig(M.T)
    i = np.argmin(np.abs(ev - 1))
    p = np.real(vec[:, i])
    p /= p.sum()
    lam = np.sort(np.abs(ev))[::-1]
    tau = np.inf if lam[1] >= 1 - 1e-12 else -1.0 / np.log(lam[1])
    lF = np.log(p)[:, None] + logM
    S = len(p)
    sigma = sum((np.exp(lF[i, j]) - np.exp(lF[j, i])) * (lF[i, j] - lF[j, i])
                for i in range(S) for j in range(i + 1, S))
    out = dict(M=M, logM=logM, p=p, tau=tau, sigma=sigma, flux=np.exp(lF))
    if data is not None:
        xd = np.asarray(data, np.float64)
        la = xd @ h.T - np.logaddexp(0.0, h).sum(1)
        out["loglik"] = np.mean(np.logaddexp.reduce(np.log(p)[None] + la, axis=1))
    return out


def random_model(seed, D, L, scale=2.5):
    rng = np.random.default_rng(seed)
    vals = (scale * rng.normal(size=(D, L)), 0.5 * rng.normal(size=D),
            scale * rng.normal(size=(L, D)), 0.5 * rng.normal(size=L))
    return Params(*(jnp.asarray(v, jnp.float32) for v in vals))


def random_data(seed, N, D):
    return (np.random.default_rng(seed).random((N, D)) < 0.4).astype(np.float32)


def within(est, err, ref, nse=NSE, slack=0.0):
    est, err = float(est), float(err)
    assert np.isfinite(est) and np.isfinite(err), (est, err)
    assert abs(est - ref) <= nse * err + slack, \
        f"estimate {est:.6g} ± {err:.3g} vs exact {ref:.6g} ({abs(est - ref) / err:.2f} SE)"


D_TINY = 9  # 512 visible states; the cycle model below uses D = 9 too (shared compiles)
CENTER = jnp.full((D_TINY,), 0.3, jnp.float32)
ONEHOT3 = ModelConfig(n_hidden=3, hidden="onehot")
BINARY2 = ModelConfig(n_hidden=2, hidden="binary")
TINY = {  # (config, seed of random_model); seeds give σ ~ 0.1 (clearly non-zero)
    "onehot": (ONEHOT3, 5),
    "binary": (BINARY2, 8),
}


@pytest.fixture(scope="module")
def tiny_runs():
    out = {}
    data = random_data(7, 50, D_TINY)
    for name, (cfg, seed) in TINY.items():
        params = random_model(seed, D_TINY, cfg.n_hidden)
        ex = exact(params, CENTER, cfg.n_hidden, cfg.hidden, data=data)
        res = dg.diagnose(jax.random.key(3), params, CENTER, cfg, data, DCFG)
        out[name] = (params, cfg, ex, res, data)
    return out


# ----------------------------------------------------------------------------- exact system

@pytest.mark.parametrize("name", list(TINY))
def test_estimators_match_exact_tiny_system(tiny_runs, name):
    params, cfg, ex, r, data = tiny_runs[name]
    S = cfg.n_states
    assert ex["sigma"] > 0.05  # a genuinely irreversible test system
    # M and p̄
    np.testing.assert_allclose(r.M_counts, ex["M"], atol=0.02)
    # an RB entry is a mean of K terms in [0, 1]: its SE is at most sqrt(M(1 − M)/K)
    M_se = np.sqrt(ex["M"] * (1 - ex["M"]) / r.rb_samples)
    assert np.all(np.abs(np.exp(r.log_M_rb) - ex["M"]) <= NSE * M_se + 1e-6)
    np.testing.assert_allclose(np.exp(r.log_M_rb).sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(r.p_bar, ex["p"], atol=0.015)
    np.testing.assert_allclose(r.p_bar_rb, ex["p"], atol=0.01)
    assert r.M_counts.shape == r.log_M_rb.shape == (S, S)
    assert not r.unvisited.any()
    assert r.occupancy_counts.sum() == r.n_steps == 40000
    # σ, τ, log-likelihood, each within NSE standard errors (and the errors are informative)
    for est, err, ref in [(r.sigma_counts, r.sigma_counts_err, ex["sigma"]),
                          (r.sigma_rb, r.sigma_rb_err, ex["sigma"]),
                          (r.tau_counts, r.tau_counts_err, ex["tau"]),
                          (r.tau_rb, r.tau_rb_err, ex["tau"]),
                          (r.loglik, r.loglik_err, ex["loglik"]),
                          (r.loglik_rb, r.loglik_rb_err, ex["loglik"])]:
        within(est, err, ref)
        assert 0 < err < 0.25 * abs(ref) + 1e-3
    # (No "RB error < counts error" here: which estimator is tighter depends on rb_samples
    # vs n_steps and on the model (binary: 8000 RB samples vs 40000 chain steps, and the
    # counts win for some keys); the error bars' calibration is tested over repeats below.)
    # eq. (24) and currents
    np.testing.assert_allclose(r.self_transition_rb, np.trace(ex["M"]) / S, atol=0.01)
    within(r.self_transition_counts, r.self_transition_counts_err, np.trace(ex["M"]) / S)
    within(r.self_transition_rb, r.self_transition_rb_err, np.trace(ex["M"]) / S)
    J = ex["flux"] - ex["flux"].T
    np.testing.assert_allclose(r.currents_rb, J, atol=0.005)
    np.testing.assert_allclose(r.currents_counts, J, atol=0.01)


def test_rao_blackwell_function_matches_exact(tiny_runs):
    # (binary RB is checked against the exact M through diagnose above)
    params, cfg, ex, _, _ = tiny_runs["onehot"]
    logM = dg.rao_blackwell_log_transition_matrix(jax.random.key(11), params, CENTER, cfg,
                                                  n_samples=4000, chunk=333)
    np.testing.assert_allclose(jax.nn.logsumexp(logM, axis=1), 0.0, atol=1e-5)
    M = ex["M"]
    # each entry is a mean of K i.i.d. terms in [0, 1]: SE <= sqrt(M(1 − M)/K)
    assert np.all(np.abs(np.exp(logM) - M) <= 5 * np.sqrt(M * (1 - M) / 4000) + 1e-6)


def test_hidden_trajectory_counts_match_exact(tiny_runs):
    params, cfg, ex, _, data = tiny_runs["onehot"]
    x0 = jnp.asarray(data[:4])
    states = dg.hidden_trajectory(jax.random.key(5), params, CENTER, cfg, x0, 100, 5000,
                                  segment=128)
    assert states.shape == (4, 5000) and states.dtype == jnp.int32
    single = dg.hidden_trajectory(jax.random.key(5), params, CENTER, cfg, x0[0], 10, 777,
                                  segment=100)
    assert single.shape == (777,)
    counts = sum(markov.transition_counts(s, 3) for s in states)
    assert int(counts.sum()) == 4 * 4999
    M = np.asarray(markov.count_transition_matrix(counts))
    n_row = np.asarray(counts).sum(1, keepdims=True)
    assert np.all(np.abs(M - ex["M"]) <= 5 * np.sqrt(ex["M"] * (1 - ex["M"]) / n_row) + 1e-3)
    occ = np.mean([np.asarray(markov.occupancy(s, 3)) for s in states], axis=0)
    np.testing.assert_allclose(occ, ex["p"], atol=0.03)


# ----------------------------------------------------------------------------- tied weights

def rbm_model(seed, D, L, hidden):
    """Tied weights, centering off: wbar = wᵀ, abar = hidden biases → an RBM (softmax
    hidden unit for one-hot with recognition='softmax'; factorised bits for binary)."""
    rng = np.random.default_rng(seed)
    w = 1.5 * rng.normal(size=(D, L))
    return Params(*(jnp.asarray(v, jnp.float32) for v in
                    (w, 0.5 * rng.normal(size=D), w.T, 0.5 * rng.normal(size=L))))


@pytest.mark.parametrize("hidden,recognition,L", [("onehot", "softmax", 3), ("binary", "paper", 2)])
def test_tied_weights_rbm_is_reversible(hidden, recognition, L):
    # centering off = centre vector 0 (passed explicitly; the config flag only matters for
    # ncl.model.data_center), so the binary case shares BINARY2's compiled program.
    cfg = (ModelConfig(n_hidden=L, hidden=hidden, recognition=recognition)
           if hidden == "onehot" else BINARY2)
    params = rbm_model(2, D_TINY, L, hidden)
    zero = jnp.zeros((D_TINY,), jnp.float32)
    ex = exact(params, zero, L, hidden, recognition)
    # exact detailed balance: p_i M_ij = p_j M_ji, σ = 0 to round-off
    np.testing.assert_allclose(ex["flux"], ex["flux"].T, atol=1e-12)
    assert abs(ex["sigma"]) < 1e-12
    assert float(markov.entropy_production_from_log(jnp.log(jnp.asarray(ex["p"], jnp.float32)),
                                                jnp.asarray(ex["logM"], jnp.float32))) < 1e-6
    r = dg.diagnose(jax.random.key(9), params, zero, cfg, random_data(1, 50, D_TINY), DCFG)
    for est, err in [(r.sigma_counts, r.sigma_counts_err), (r.sigma_rb, r.sigma_rb_err)]:
        assert est >= 0
        within(est, err, 0.0)
        assert err < 2e-3
    np.testing.assert_allclose(r.currents_rb, 0.0, atol=3e-3)


# ----------------------------------------------------------------------------- cycle

def cycle_model(gen_strength, rec_strength):
    """L = 3 one-hot, D = 9: unit α generates prototype P_α (pixel block α on);
    Ā maps P_α to unit α + 1 (mod 3). Centering vector 0.5."""
    D, L = 9, 3
    P = np.zeros((L, D))
    for al in range(L):
        P[al, 3 * al:3 * al + 3] = 1
    w = gen_strength * (2 * P.T - 1)                       # (D, L)
    wbar = rec_strength * (2 * np.roll(P, 1, axis=0) - 1)  # unit β responds to P_{β−1}
    params = Params(*(jnp.asarray(v, jnp.float32) for v in
                      (w, np.zeros(D), wbar, np.zeros(L))))
    return params, jnp.full((D,), 0.5, jnp.float32)


CYCLE_CFG = ONEHOT3
# the three prototypes, cycled to 50 rows (all tiny runs use (50, 9) data: one compile)
PROTOTYPES = np.eye(3, dtype=np.float32).repeat(3, axis=1)[np.arange(50) % 3]


def test_cycle_model_matches_construction():
    params, center = cycle_model(3.0, 2.0)
    data = PROTOTYPES
    ex = exact(params, center, 3, "onehot", data=data)
    M = ex["M"]
    # the construction: one dominant off-diagonal entry per row, α → α + 1
    assert np.all(np.argmax(M, axis=1) == (np.arange(3) + 1) % 3)
    assert np.all(M[np.arange(3), (np.arange(3) + 1) % 3] > 0.8)
    r = dg.diagnose(jax.random.key(4), params, center, CYCLE_CFG, data, DCFG)
    for est, err, ref in [(r.sigma_counts, r.sigma_counts_err, ex["sigma"]),
                          (r.sigma_rb, r.sigma_rb_err, ex["sigma"]),
                          (r.tau_counts, r.tau_counts_err, ex["tau"]),
                          (r.tau_rb, r.tau_rb_err, ex["tau"]),
                          (r.loglik, r.loglik_err, ex["loglik"])]:
        within(est, err, ref)
    assert ex["sigma"] > 1.0 and ex["tau"] > 1.0
    # eq. (24): fewer self-transitions than random
    assert r.self_transition_counts < 1 / 3 and r.self_transition_rb < 1 / 3
    # currents: antisymmetric, circulating 0 → 1 → 2 → 0 with equal magnitude
    for J in (r.currents_counts, r.currents_rb):
        np.testing.assert_allclose(J, -J.T, atol=1e-7)
        circ = np.array([J[0, 1], J[1, 2], J[2, 0]])
        assert np.all(circ > 0)
        np.testing.assert_allclose(circ, circ.mean(), rtol=0.05)
    np.testing.assert_allclose(r.currents_rb, ex["flux"] - ex["flux"].T, atol=0.01)


def test_near_deterministic_cycle_rb_sigma_large_and_finite():
    """Backward fluxes ~1e-9: the count estimator sees no reverse transition (its σ
    drops those pairs, biased low); the RB estimate in log space is large, finite and
    matches the exact value."""
    params, center = cycle_model(8.0, 12.0)
    data = PROTOTYPES
    ex = exact(params, center, 3, "onehot")
    assert ex["M"].min() < 1e-5 and ex["sigma"] > 10
    r = dg.diagnose(jax.random.key(8), params, center, CYCLE_CFG, data, DCFG)
    assert np.isfinite(r.sigma_rb)
    within(r.sigma_rb, r.sigma_rb_err, ex["sigma"])
    assert r.sigma_counts < r.sigma_rb
    fwd = np.roll(np.eye(3, dtype=bool), 1, axis=1)  # 0 → 1 → 2 → 0
    np.testing.assert_allclose(r.log_M_rb[fwd], ex["logM"][fwd], atol=1e-5)
    # entries ~e^-12 are rare-event averages: only their order of magnitude is checked
    np.testing.assert_allclose(r.log_M_rb[~fwd], ex["logM"][~fwd], atol=1.5)
    within(r.tau_rb, r.tau_rb_err, ex["tau"])


# ----------------------------------------------------------------------------- edge cases

def test_unvisited_state_gives_zero_row_no_nan():
    states = jnp.array([0, 1, 0, 1, 1, 0, 0, 1], jnp.int32)
    counts = markov.transition_counts(states, 3)
    M = markov.count_transition_matrix(counts)
    np.testing.assert_array_equal(np.asarray(M[2]), 0.0)
    np.testing.assert_allclose(np.asarray(M[:2]).sum(1), 1.0)
    np.testing.assert_array_equal(np.asarray(markov.unvisited_states(counts)), [False, False, True])
    p = markov.occupancy(states, 3)
    assert float(p[2]) == 0.0
    ps = markov.stationary_distribution(M)
    assert np.all(np.isfinite(ps)) and float(ps[2]) == 0.0
    assert np.isfinite(float(markov.entropy_production(p, M)))
    assert np.isfinite(markov.decorrelation_time(M))
    # a model whose unit 2 is (numerically) never chosen
    params = random_model(1, D_TINY, 3)._replace(abar=jnp.array([0.0, 0.0, -120.0]))
    r = dg.diagnose(jax.random.key(1), params, CENTER, ONEHOT3, random_data(2, 50, D_TINY),
                    DCFG)
    assert r.unvisited.tolist() == [False, False, True]
    np.testing.assert_array_equal(r.M_counts[2], 0.0)
    assert r.p_bar[2] == 0.0
    for v in (r.sigma_counts, r.sigma_rb, r.loglik, r.loglik_rb, r.tau_counts, r.tau_rb):
        assert np.isfinite(v)
    assert np.all(np.isfinite(r.currents_counts)) and np.all(np.isfinite(r.log_M_rb[:2]))


def test_periodic_chain():
    P = jnp.asarray(np.roll(np.eye(4), 1, axis=1), jnp.float32)   # 0 → 1 → 2 → 3 → 0
    assert markov.decorrelation_time(P) == np.inf
    np.testing.assert_allclose(markov.stationary_distribution(P), 0.25, atol=1e-6)
    p = jnp.full((4,), 0.25)
    assert float(markov.entropy_production(p, P)) == 0.0           # paper's estimator: 0
    with np.errstate(divide="ignore"):
        logP = jnp.log(P)
    assert float(markov.entropy_production_from_log(jnp.log(p), logP)) == np.inf
    assert float(markov.mean_self_transition(P)) == 0.0
    J = markov.probability_currents(p, P)
    np.testing.assert_allclose(J, -J.T)
    assert np.all(np.asarray(J[np.arange(4), (np.arange(4) + 1) % 4]) == 0.25)
    # a near-periodic cycle gives a large finite σ from logs
    eps = 1e-30
    lM = jnp.log(jnp.asarray((1 - 3 * eps) * np.asarray(P) + eps, jnp.float32))
    s = float(markov.entropy_production_from_log(markov.stationary_distribution_from_log(lM), lM))
    assert np.isfinite(s) and s > 60


def test_collapsed_model_self_transition_is_one_over_L():
    states = jnp.zeros((1000,), jnp.int32)
    M = markov.count_transition_matrix(markov.transition_counts(states, 6))
    assert float(markov.mean_self_transition(M)) == np.float32(1) / np.float32(6)
    params = random_model(1, D_TINY, 3)._replace(abar=jnp.array([200.0, -200.0, -200.0]))
    r = dg.diagnose(jax.random.key(1), params, CENTER, ONEHOT3, random_data(2, 50, D_TINY),
                    DCFG)
    assert r.self_transition_counts == np.float32(1) / np.float32(3)
    np.testing.assert_array_equal(r.p_bar, [1.0, 0.0, 0.0])
    assert r.sigma_counts == 0.0 and r.unvisited.tolist() == [False, True, True]


def test_decorrelation_time_known_values():
    a, b = 0.2, 0.1
    M = np.array([[1 - a, a], [b, 1 - b]])
    assert markov.decorrelation_time(M) == pytest.approx(-1 / np.log(1 - a - b))
    rank1 = np.tile([0.2, 0.3, 0.5], (3, 1))            # λ2 = 0
    assert markov.decorrelation_time(rank1) == 0.0
    batch = np.stack([M, M, np.eye(2)])
    tau = markov.decorrelation_time(batch)
    assert tau.shape == (3,) and tau[2] == np.inf


def test_jackknife_se_of_mean_is_standard_error():
    x = np.random.default_rng(0).normal(size=10)
    loo = (x.sum() - x) / 9
    assert markov.jackknife_se(loo) == pytest.approx(x.std(ddof=1) / np.sqrt(10))
    assert np.isnan(markov.jackknife_se([1.0, np.inf, 2.0]))


# ----------------------------------------------------------------------------- likelihood

def test_log_likelihood_exact_and_chunked():
    params = random_model(3, D_TINY, 3)
    data = random_data(4, 37, D_TINY)
    p = jnp.array([0.5, 0.0, 0.5])
    ex = exact(params, CENTER, 3, "onehot")
    w, a = np.asarray(params.w, np.float64), np.asarray(params.a, np.float64)
    h = np.eye(3) @ w.T + a
    la = data @ h.T - np.logaddexp(0, h).sum(1)
    with np.errstate(divide="ignore"):
        ref = np.mean(np.logaddexp.reduce(np.log(np.asarray(p, np.float64)) + la, axis=1))
    lp = jnp.log(p)
    full = ncl_model.log_likelihood_given_occupancy(params, data, lp, ONEHOT3, chunk=1024)
    # 8 chunks, padded
    chunked = ncl_model.log_likelihood_given_occupancy(params, data, lp, ONEHOT3, chunk=5)
    assert np.isfinite(float(full))
    assert float(full) == pytest.approx(ref, abs=1e-5)
    assert float(chunked) == pytest.approx(float(full), abs=1e-5)
    batch = ncl_model.log_likelihood_given_occupancy(
        params, data, jnp.stack([lp, jnp.log(jnp.full(3, 1 / 3))]), ONEHOT3, chunk=7)
    assert batch.shape == (2,) and float(batch[0]) == pytest.approx(ref, abs=1e-5)
    del ex


def test_binary_log_likelihood_enumerates_states():
    params = random_model(5, D_TINY, 2)
    data = random_data(6, 20, D_TINY)
    ex = exact(params, CENTER, 2, "binary", data=data)
    ll = ncl_model.log_likelihood_given_occupancy(
        params, data, jnp.log(jnp.asarray(ex["p"], jnp.float32)), BINARY2, chunk=6)
    assert float(ll) == pytest.approx(ex["loglik"], abs=1e-4)


# ----------------------------------------------------------------------------- jit / vmap

class PureFunctionsTest(chex.TestCase):

    def _M(self, seed=0, S=4):
        rng = np.random.default_rng(seed)
        M = rng.random((S, S)) ** 3
        return jnp.asarray(M / M.sum(1, keepdims=True), jnp.float32)

    @chex.variants(with_jit=True, without_jit=True)
    def test_stationary_and_sigma(self):
        M = self._M()
        p = self.variant(markov.stationary_distribution)(M)
        Mn = np.asarray(M, np.float64)
        ev, vec = np.linalg.eig(Mn.T)
        ref = np.real(vec[:, np.argmin(np.abs(ev - 1))])
        ref /= ref.sum()
        np.testing.assert_allclose(p, ref, atol=1e-6)
        s = self.variant(markov.entropy_production)(p, M)
        lp = jnp.log(p)
        s_log = self.variant(markov.entropy_production_from_log)(lp, jnp.log(M))
        F = ref[:, None] * Mn
        s_ref = sum((F[i, j] - F[j, i]) * np.log(F[i, j] / F[j, i])
                    for i in range(4) for j in range(i + 1, 4))
        assert float(s) == pytest.approx(s_ref, rel=1e-4)
        assert float(s_log) == pytest.approx(s_ref, rel=1e-4)
        lps = self.variant(markov.stationary_distribution_from_log)(jnp.log(M))
        np.testing.assert_allclose(jnp.exp(lps), ref, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_monitor_sigmas(self):
        M = self._M(1, 3)
        occ = jnp.array([300, 500, 200])
        trans = jnp.round(occ[:, None] * M).astype(jnp.int32)
        log_rb_sum = jnp.log(M * 50.0)
        visits = jnp.full((3,), 50)
        out = self.variant(markov.sigma_from_counts_and_rb_sums)(occ, trans, log_rb_sum, visits)
        p = markov.stationary_distribution(M)
        assert float(out.sigma_rb) == pytest.approx(
            float(markov.entropy_production(p, M)), rel=1e-4)
        assert float(out.sigma_counts) == pytest.approx(float(markov.entropy_production(
            occ / occ.sum(), markov.count_transition_matrix(trans))), rel=1e-6)

    def test_vmap_matches_loop(self):
        Ms = jnp.stack([self._M(s) for s in range(5)])
        ps = jax.vmap(markov.stationary_distribution)(Ms)
        sig = jax.jit(jax.vmap(markov.entropy_production))(ps, Ms)
        for i in range(5):
            np.testing.assert_allclose(ps[i], markov.stationary_distribution(Ms[i]), atol=1e-7)
            assert float(sig[i]) == pytest.approx(float(markov.entropy_production(ps[i], Ms[i])),
                                                  rel=1e-5)

    def test_stationary_fallback_for_two_closed_classes(self):
        M = jnp.eye(3, dtype=jnp.float32)         # three absorbing states: not unique
        p = markov.stationary_distribution(M)
        assert np.all(np.isfinite(p)) and float(p.sum()) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- monitor

def test_rb_log_sum_update_matches_direct_sum():
    rng = np.random.default_rng(0)
    S, T = 4, 50
    prev = jnp.asarray(rng.integers(0, 3, size=T), jnp.int32)       # state 3 never seen
    la = jnp.asarray(np.log(rng.dirichlet(np.ones(S), size=T)), jnp.float32)
    acc = (jnp.full((S, S), -jnp.inf), jnp.zeros((S,), jnp.int32))
    acc = markov.rb_log_sum_update(*acc, prev[:20], la[:20])
    acc = markov.rb_log_sum_update(*acc, prev[20:], la[20:])
    ref = np.zeros((S, S))
    np.add.at(ref, np.asarray(prev), np.exp(np.asarray(la, np.float64)))
    np.testing.assert_allclose(np.exp(acc[0]), ref, rtol=1e-5)
    np.testing.assert_array_equal(acc[1], np.bincount(np.asarray(prev), minlength=S))
    assert np.all(np.isneginf(np.asarray(acc[0][3])))
    out = markov.sigma_from_counts_and_rb_sums(jnp.asarray(acc[1]),
                                           jnp.zeros((S, S), jnp.int32), acc[0], acc[1])
    assert np.isfinite(float(out.sigma_rb))


def test_training_monitor_on_a_chain_matches_exact(tiny_runs):
    """The RB sum over a chain's own (z(t−1), x'(t)) pairs estimates M; σ from it ≈ exact."""
    from ncl import chain as chain_lib
    params, cfg, ex, _, data = tiny_runs["onehot"]
    st = chain_lib.init(jnp.asarray(data[:8]))
    _, traj = chain_lib.sample_chain(jax.random.key(2), st, params, CENTER, cfg, 4000)
    z = jnp.argmax(traj.z, axis=-1)                                  # (T, C)
    la = ncl_model.log_abar_all_states(params, traj.x[1:], CENTER, cfg)     # (T−1, C, S)
    acc = (jnp.full((3, 3), -jnp.inf), jnp.zeros((3,), jnp.int32))
    acc = markov.rb_log_sum_update(*acc, z[:-1].reshape(-1), la.reshape(-1, 3))
    trans = sum(markov.transition_counts(z[:, c], 3) for c in range(8))
    occ = sum(markov.state_counts(z[:, c], 3) for c in range(8))
    out = markov.sigma_from_counts_and_rb_sums(occ, trans, *acc)
    assert float(out.sigma_rb) == pytest.approx(ex["sigma"], rel=0.15)
    assert float(out.sigma_counts) == pytest.approx(ex["sigma"], rel=0.3)
    np.testing.assert_allclose(np.exp(acc[0] - jnp.log(acc[1])[:, None]), ex["M"], atol=0.02)


# ----------------------------------------------------------------------------- errors & ensembles

def test_binary_too_many_units_is_a_clear_error():
    cfg = ModelConfig(n_hidden=13, hidden="binary")
    with pytest.raises(ValueError, match="L = 13 > 12"):
        ncl_model.check_enumerable(cfg)
    params = random_model(0, 4, 13)
    # the likelihood given p̄ is linear in S and enumerates up to 20 binary units
    lp = jnp.full(2 ** 13, -13 * np.log(2.0), jnp.float32)
    assert np.isfinite(float(ncl_model.log_likelihood_given_occupancy(
        params, np.zeros((2, 4), np.float32), lp, cfg)))
    big = ModelConfig(n_hidden=21, hidden="binary")
    with pytest.raises(ValueError, match="binary L = 21 > 20 is not supported"):
        ncl_model.log_likelihood_given_occupancy(random_model(0, 4, 21),
                                                 np.zeros((2, 4), np.float32),
                                                 jnp.zeros(4), big)
    with pytest.raises(ValueError, match="binary hidden units"):
        dg.diagnose(jax.random.key(0), params, jnp.zeros(4), cfg, np.zeros((2, 4)), DCFG)


def test_config_validation():
    with pytest.raises(ValueError, match="n_chains"):
        dg.DiagnosticsConfig(n_chains=1)
    with pytest.raises(ValueError, match="burn_in"):
        dg.DiagnosticsConfig(burn_in=-1)
    with pytest.raises(ValueError, match="p_floor"):
        dg.DiagnosticsConfig(p_floor=0.0)
    with pytest.raises(ValueError, match="binary"):
        dg.diagnose(jax.random.key(0), random_model(0, D_TINY, 3), CENTER, ONEHOT3,
                    np.full((3, D_TINY), 0.5), DCFG)


def test_error_bars_are_calibrated(tiny_runs):
    """Over R independent repeats, the spread of the estimates matches the reported
    jackknife SE, and their mean matches the exact value (no bias at this precision)."""
    params, cfg, ex, _, data = tiny_runs["onehot"]
    R = 24
    runs = [dg.diagnose(k, params, CENTER, cfg, data, DCFG)
            for k in jax.random.split(jax.random.key(100), R)]
    for name, ref in [("sigma_counts", ex["sigma"]), ("sigma_rb", ex["sigma"]),
                      ("tau_counts", ex["tau"]), ("tau_rb", ex["tau"]),
                      ("loglik", ex["loglik"]), ("loglik_rb", ex["loglik"]),
                      ("self_transition_counts", np.trace(ex["M"]) / cfg.n_states),
                      ("self_transition_rb", np.trace(ex["M"]) / cfg.n_states)]:
        v = np.array([getattr(r, name) for r in runs])
        se = np.array([getattr(r, name + "_err") for r in runs])
        sd = v.std(ddof=1)
        # sd of 24 draws is within ±45% of the truth with probability > 0.999
        assert 0.55 < sd / se.mean() < 1.6, (name, sd, se.mean())
        assert abs(v.mean() - ref) < NSE * sd / np.sqrt(R), (name, v.mean(), ref)
    bc = np.array([r.sigma_rb_bc for r in runs])
    assert abs(bc.mean() - ex["sigma"]) < NSE * bc.std(ddof=1) / np.sqrt(R)


def test_jackknife_bias_correction_is_exact_for_a_squared_mean():
    """For θ = (mean of G group means)², the jackknife bias-corrected estimate is the
    unbiased U-statistic Σ_{i≠j} m_i m_j / (G(G−1)) (a closed form)."""
    m = np.random.default_rng(0).normal(0.3, 1.0, size=(5, 7))       # 5 problems, G = 7
    G = m.shape[-1]
    full = m.mean(-1) ** 2
    loo = ((m.sum(-1, keepdims=True) - m) / (G - 1)) ** 2
    u = (m.sum(-1) ** 2 - (m ** 2).sum(-1)) / (G * (G - 1))
    np.testing.assert_allclose(markov.jackknife_bias_corrected(full, loo), u, rtol=1e-12)


def test_diagnose_ensemble_matches_members(tiny_runs):
    """Vmapped, ``lax.map``-ped and single-model diagnostics run the same estimators with
    the same keys but on other batch shapes, so float32 round-off may flip a few of the
    millions of Bernoulli draws (XLA promises no bits across shapes). Tolerances allow a
    handful of flipped RB samples (each moves an entry of M by at most 1/K = 1.25e-4) and
    the chain noise of p̄; members' models differ by O(0.1-1) in each, so a mixed-up or
    dropped member still fails."""
    params, cfg, _, _, data = tiny_runs["onehot"]
    other = random_model(4, D_TINY, 3)
    ens = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), params, other)
    r = dg.diagnose_ensemble(jax.random.key(0), ens, jnp.stack([CENTER, CENTER]), cfg, data,
                             DCFG, member_batch=None)                     # fully vmapped
    r1 = dg.diagnose_ensemble(jax.random.key(0), ens, jnp.stack([CENTER, CENTER]), cfg, data,
                              DCFG, member_batch=1)                       # lax.map
    np.testing.assert_allclose(r1.log_M_rb, r.log_M_rb, atol=2e-2)
    np.testing.assert_allclose(r1.p_bar, r.p_bar, atol=1e-2)
    with pytest.raises(ValueError, match="member_batch"):
        dg.diagnose_ensemble(jax.random.key(0), ens, jnp.stack([CENTER, CENTER]), cfg, data,
                             DCFG, member_batch=0)
    assert r.sigma_rb.shape == (2,) and r.log_M_rb.shape == (2, 3, 3)
    assert r.tau_counts_err.shape == (2,) and r.p_bar.shape == (2, 3)
    assert r.transition_counts.shape == (2, 3, 3) and r.unvisited.shape == (2, 3)
    keys = jax.random.split(jax.random.key(0), 2)
    for i, p in enumerate((params, other)):
        ri = dg.diagnose(keys[i], p, CENTER, cfg, data, DCFG)
        np.testing.assert_allclose(r.log_M_rb[i], ri.log_M_rb, atol=2e-2)
        np.testing.assert_allclose(r.p_bar[i], ri.p_bar, atol=1e-2)
        assert r.sigma_rb[i] == pytest.approx(ri.sigma_rb, rel=2e-2, abs=1e-4)
        assert r.loglik[i] == pytest.approx(ri.loglik, abs=5e-2)
    # the two members really differ by more than these tolerances
    assert np.abs(np.asarray(r.log_M_rb[0]) - np.asarray(r.log_M_rb[1])).max() > 0.2
