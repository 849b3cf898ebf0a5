"""Trajectory diagnostics (ncl.trajectory) against independent references.

References: exact M, p̄, σ (eq. 21) by brute-force enumeration of the 2^D visible states,
written here in float64 NumPy (not calling ncl); the exact integrated autocorrelation
time of an observable f from the exact M through the fundamental matrix
Z = (I − M + 1 p̄ᵀ)⁻¹: τ_int = 1/2 + Σ_{t≥1} ρ(t) = p̄·(f̃ ⊙ Z f̃)/p̄·f̃² − 1/2; closed
forms (AR(1), a single eigenmode, the lognormal mean).

Tolerances: σ within NSE = 4 batch-means standard errors (128 batches, t_127: a
false-alarm probability of about 1e-4 per comparison); τ_int within 4 Madras–Sokal
standard errors (conservative: the AR(1) repeats below find them about 1.3× the
actual spread, so the per-comparison false-alarm rate is below 6e-5). All keys are
fixed, so the tests are deterministic.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncl import trajectory as tr
from ncl.model import ModelConfig, Params
from tests import helpers as reference

NSE = 4.0
D = 8                                        # 256 visible states
T, C, K = 10000, 8, 64                       # recorded steps per chain, chains, RB draws
BURN = 200
CENTER = jnp.full((D,), 0.3, jnp.float32)
ZERO = jnp.zeros((D,), jnp.float32)


# ----------------------------------------------------------------------------- reference

_log_sig, _states = reference.log_sigmoid, reference.hidden_states


def exact(params, center, cfg):
    """float64 exact M[z→z'], log M, stationary p̄, σ (eq. 21), states Z."""
    w, a, wb, ab = [np.asarray(t, np.float64) for t in params]
    c = np.asarray(center, np.float64)
    X = np.array(list(itertools.product([0, 1], repeat=w.shape[0])), np.float64)
    Z = _states(cfg.n_hidden, cfg.hidden)
    h = Z @ w.T + a
    logA = X @ h.T - np.logaddexp(0.0, h).sum(1)                     # (2^D, S)
    g = (X - c) @ wb.T + ab
    if cfg.hidden == "onehot":
        lg = g if cfg.recognition == "softmax" else _log_sig(g)
        logAbar = lg - np.logaddexp.reduce(lg, axis=1, keepdims=True)
    else:
        logAbar = _log_sig(g) @ Z.T + _log_sig(-g) @ (1 - Z).T
    logM = np.logaddexp.reduce(logA.T[:, :, None] + logAbar[None], axis=1)
    M = np.exp(logM)
    S = len(M)
    p = np.linalg.solve((np.eye(S) - M + 1.0).T, np.ones(S))
    p /= p.sum()
    sigma = float(np.sum(p[:, None] * M * (logM - logM.T)))
    return dict(M=M, logM=logM, p=p, sigma=sigma, Z=Z)


def tau_int_exact(M, p, f):
    """1/2 + Σ_{t≥1} ρ(t) for observable f (S,) of the stationary chain M."""
    S = len(p)
    ft = f - p @ f
    Zf = np.linalg.solve(np.eye(S) - M + np.outer(np.ones(S), p), ft)   # Σ_{t≥0} M^t f̃
    return float(p @ (ft * Zf) / (p @ (ft * ft)) - 0.5)


def rho_exact(M, p, f, n_lags):
    """Exact ρ(t), t = 0..n_lags−1, from M^t."""
    ft = f - p @ f
    g, out = ft.copy(), []
    for _ in range(n_lags):
        out.append(p @ (ft * g))
        g = M @ g
    return np.array(out) / out[0]


def random_model(seed, L, scale, tied=False):
    rng = np.random.default_rng(seed)
    w = scale * rng.normal(size=(D, L))
    vals = (w, 0.5 * rng.normal(size=D), w.T if tied else scale * rng.normal(size=(L, D)),
            0.5 * rng.normal(size=L))
    return Params(*(jnp.asarray(v, jnp.float32) for v in vals))


def within(est, err, ref, nse=NSE):
    est, err = float(est), float(err)
    assert np.isfinite(est) and np.isfinite(err) and err > 0, (est, err)
    assert abs(est - ref) <= nse * err, \
        f"estimate {est:.5g} ± {err:.3g} vs exact {ref:.5g} ({(est - ref) / err:+.2f} SE)"


# name: (config, params, center); σ > 0.25 for the two main-model systems
SYSTEMS = {
    "binary6": (ModelConfig(n_hidden=6, hidden="binary"), random_model(0, 6, 1.5), CENTER),
    "onehot6": (ModelConfig(n_hidden=6, hidden="onehot"), random_model(0, 6, 2.5), CENTER),
    # tied weights (RBMs; centering vector 0): reversible, σ = 0 exactly
    "rbm_binary6": (ModelConfig(n_hidden=6, hidden="binary"),
                    random_model(1, 6, 1.5, tied=True), ZERO),
    "rbm_onehot6": (ModelConfig(n_hidden=6, hidden="onehot", recognition="softmax"),
                    random_model(0, 6, 2.5, tied=True), ZERO),
}


@pytest.fixture(scope="module")
def runs():
    out = {}
    for i, (name, (cfg, params, center)) in enumerate(SYSTEMS.items()):
        r = tr.trajectory_diagnostics(jax.random.key(100 + i), params, cfg, T, BURN, C, K,
                                      center=center)
        out[name] = (cfg, params, center, exact(params, center, cfg), r)
    return out


# ----------------------------------------------------------------------------- σ

def test_reference_matches_ncl_exact():
    from ncl.exact import log_hidden_transition_matrix
    cfg, params, center = SYSTEMS["binary6"]
    lm = np.asarray(log_hidden_transition_matrix(params, center, cfg))
    np.testing.assert_allclose(lm, exact(params, center, cfg)["logM"], atol=2e-4)


@pytest.mark.parametrize("name", ["binary6", "onehot6"])
def test_sigma_matches_exact(runs, name):
    cfg, _, _, ex, r = runs[name]
    s = r.sigma
    assert ex["sigma"] > 0.25
    within(s.sigma, s.sigma_err, ex["sigma"])
    assert int(s.n_transitions) == C * (T - 1) and int(s.n_batches) == 16 * C
    # the two error bars agree (batch means vs IAT of the terms)
    assert 0.7 < float(s.sigma_err / s.sigma_err_iat) < 1.4
    assert s.sigma_err < 0.02 * ex["sigma"]
    # the exact fraction of self-transitions
    self_exact = float(np.sum(ex["p"] * np.diag(ex["M"])))
    assert abs(float(s.self_fraction) - self_exact) < 0.01
    assert 1.0 <= float(s.rb_ess_min) <= float(s.rb_ess_mean) <= K


@pytest.mark.parametrize("name", ["rbm_binary6", "rbm_onehot6"])
def test_rbm_sigma_is_zero(runs, name):
    _, _, _, ex, r = runs[name]
    assert abs(ex["sigma"]) < 1e-10
    within(r.sigma.sigma, r.sigma.sigma_err, 0.0)
    assert r.sigma.sigma_err < 0.01


def test_sigma_from_recorded_trajectory_matches_exact(recorded):
    cfg, params, center = SYSTEMS["onehot6"]
    ex = exact(params, center, cfg)
    s = tr.sigma_from_trajectory(jax.random.key(3), params, center, cfg, recorded["onehot6"],
                                 n_samples=K, chunk=777)
    within(s.sigma, s.sigma_err, ex["sigma"])
    assert int(s.n_transitions) == C * (T - 1)


def test_bias_correction_reduces_bias_lognormal_closed_form():
    # a_k = exp(ξ_k), ξ ~ N(0, 1): ln E a = 1/2 exactly; plug-in bias ≈ −(e − 1)/(2K)
    R, Kb = 100000, 4
    la = jax.random.normal(jax.random.key(0), (R, Kb))
    bias = {bc: np.asarray(tr.log_mean_exp(la, bc)[0] - 0.5, np.float64)
            for bc in tr.BIAS_CORRECTIONS}
    mean = {k: v.mean() for k, v in bias.items()}
    se = {k: v.std() / np.sqrt(R) for k, v in bias.items()}
    # measured: none −0.164, delta −0.069, jackknife −0.030 (SE ≈ 0.001 each)
    assert mean["none"] < -0.15
    assert abs(mean["jackknife"]) < 0.25 * abs(mean["none"])
    assert abs(mean["delta"]) < 0.5 * abs(mean["none"])
    assert abs(mean["jackknife"]) + 3 * se["jackknife"] < abs(mean["delta"])
    # identities: plug-in returned unchanged; ess = (Σa)²/Σa² ∈ [1, K]
    est, plug, ess = tr.log_mean_exp(la[:5], "jackknife")
    a = np.exp(np.asarray(la[:5], np.float64))
    np.testing.assert_allclose(plug, np.log(a.mean(1)), rtol=1e-5)
    np.testing.assert_allclose(ess, a.sum(1) ** 2 / (a ** 2).sum(1), rtol=1e-4)
    loo = np.log((a.sum(1, keepdims=True) - a) / (Kb - 1))
    np.testing.assert_allclose(est, Kb * np.log(a.mean(1)) - (Kb - 1) * loo.mean(1),
                               rtol=1e-4, atol=1e-5)


def test_bias_correction_reduces_bias_on_model_entries():
    # per entry: many repeats of ln M̂(z→z') with K = 4 against the exact ln M
    cfg, params, center = SYSTEMS["binary6"]
    ex = exact(params, center, cfg)
    Z = jnp.asarray(ex["Z"], jnp.float32)
    i, j = np.unravel_index(np.argmax(ex["p"][:, None] * ex["M"] * (1 - np.eye(64))), (64, 64))
    R = 10000
    zf, zt = jnp.broadcast_to(Z[i], (R, 6)), jnp.broadcast_to(Z[j], (R, 6))
    out = {bc: np.asarray(tr.log_transition_rb(jax.random.key(5), params, center, cfg, zf, zt,
                                               4, bc)[0], np.float64) - ex["logM"][i, j]
           for bc in ("jackknife", "none")}
    b_none, b_jk = out["none"].mean(), out["jackknife"].mean()
    se_jk = out["jackknife"].std() / np.sqrt(R)
    assert b_none < -10 * out["none"].std() / np.sqrt(R)
    assert abs(b_jk) < 0.3 * abs(b_none) and abs(b_jk) < abs(b_none) - 5 * se_jk


@pytest.fixture(scope="module")
def small_k():
    """K = 4 on binary6: one direct call, and binary6 + rbm_binary6 as the two members of
    one vmapped call (the first with the same key)."""
    names = ("binary6", "rbm_binary6")
    cfg = SYSTEMS[names[0]][0]
    keys = jax.random.split(jax.random.key(7), 2)

    def one(k, p, c):
        return tr.trajectory_diagnostics(k, p, cfg, T, BURN, C, 4, center=c)

    single = one(keys[0], *SYSTEMS[names[0]][1:])
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *(SYSTEMS[n][1] for n in names))
    centers = jnp.stack([SYSTEMS[n][2] for n in names])
    return single, jax.vmap(one)(keys, stacked, centers)


def test_bias_correction_reduces_bias_of_sigma(small_k):
    # small K on the binary system: plug-in σ is far off, the jackknife much closer
    cfg, params, center = SYSTEMS["binary6"]
    ex = exact(params, center, cfg)
    s = small_k[0].sigma
    err_plug, err_jk = float(s.sigma_plugin) - ex["sigma"], float(s.sigma) - ex["sigma"]
    assert err_plug > 12 * float(s.sigma_err)               # measured +0.144 (18.7 SE)
    assert abs(err_jk) < 0.35 * abs(err_plug)               # measured ≈ +0.035
    assert float(s.rb_ess_mean) < 2.5                       # the diagnostic flags small K


def test_vmaps_over_members(small_k):
    single, out = small_k
    assert out.sigma.sigma.shape == (2,) and out.hidden_iat.tau.shape == (2, 6)
    for a, b in zip(jax.tree_util.tree_leaves(single), jax.tree_util.tree_leaves(out)):
        np.testing.assert_allclose(np.asarray(b[0], np.float64), np.asarray(a, np.float64),
                                   rtol=1e-4, atol=1e-5)
    # member 1 is the RBM: σ = 0 within error even at K = 4 (its bias is odd in the pair)
    within(out.sigma.sigma[1], out.sigma.sigma_err[1], 0.0)


# ----------------------------------------------------------------------------- IAT

@pytest.mark.parametrize("name", list(SYSTEMS))
def test_hidden_iat_matches_exact_autocorrelation_sum(runs, name):
    cfg, _, _, ex, r = runs[name]
    iat = r.hidden_iat
    assert iat.tau.shape == (cfg.n_hidden,)
    # observable: each bit (binary) or each one-hot indicator [z = e_α]. The error bars
    # assume a well-sampled observable: indicators of rare states (N·p ≲ 10³ visits) have
    # heavier-tailed autocovariance estimates than the Gaussian Madras–Sokal formula
    # assumes (rbm_onehot6 has states with p̄ = 2e-4 and 7e-3), so those are only
    # required to be finite here.
    p_one = ex["Z"].T @ ex["p"]
    n_checked = 0
    for b in range(cfg.n_hidden):
        f = ex["Z"][:, b]
        W = int(iat.window[b])
        assert bool(iat.converged[b]) and W >= 5 * float(iat.tau[b])
        assert np.isfinite(float(iat.tau_err_jackknife[b]))
        if min(p_one[b], 1 - p_one[b]) < 0.04:
            continue
        n_checked += 1
        rho = rho_exact(ex["M"], ex["p"], f, W + 1)
        windowed = 0.5 + rho[1:].sum()               # what Sokal's estimator targets
        full = tau_int_exact(ex["M"], ex["p"], f)    # 1/2 + Σ_{t≥1} ρ(t)
        within(iat.tau[b], iat.tau_err[b], windowed)
        # the truncation bias |full − windowed| (tails beyond W) is the window's, not the
        # sampler's: at most 0.03 here
        assert abs(full - windowed) < 0.035
        assert abs(float(iat.tau[b]) - full) <= NSE * float(iat.tau_err[b]) + abs(full - windowed)
    assert n_checked >= 2
    np.testing.assert_allclose(iat.ess, C * T / (2 * iat.tau), rtol=1e-5)
    assert float(r.tau_int_max) == pytest.approx(float(jnp.max(iat.tau)))


@pytest.fixture(scope="module")
def recorded():
    """Trajectories from ncl.chain.sample_chain (C chains, T steps) for two systems."""
    from ncl.chain import ChainState, sample_chain
    out = {}
    for name in ("onehot6", "rbm_onehot6"):
        cfg, params, center = SYSTEMS[name]
        st = ChainState(jnp.zeros((C, D), jnp.float32))
        st, _ = sample_chain(jax.random.key(1), st, params, center, cfg, BURN)
        out[name] = sample_chain(jax.random.key(2), st, params, center, cfg, T)[1].z
    return out


def test_iat_single_eigenmode_and_decorrelation_time(recorded):
    # f = right eigenvector of λ₂ (real): ρ(t) = λ₂^t, τ_int = (1+λ₂)/(2(1−λ₂)),
    # and eq. (23) τ = −1/ln λ₂ is the decay time of the same mode
    cfg, params, center = SYSTEMS["rbm_onehot6"]
    ex = exact(params, center, cfg)
    ev, vec = np.linalg.eig(ex["M"])
    order = np.argsort(-np.abs(ev))
    lam, v = ev[order[1]], vec[:, order[1]]
    assert abs(lam.imag) < 1e-12 and lam.real > 0.5
    lam, v = lam.real, v.real
    closed = (1 + lam) / (2 * (1 - lam))
    assert tau_int_exact(ex["M"], ex["p"], v) == pytest.approx(closed, rel=1e-8)
    tau_exp = -1 / np.log(lam)
    assert closed == pytest.approx(1 / (2 * np.tanh(1 / (2 * tau_exp))), rel=1e-10)
    idx = jnp.argmax(recorded["rbm_onehot6"], axis=-1)                     # (T, C)
    f = jnp.asarray(v, jnp.float32)[idx]
    r = tr.integrated_autocorrelation_time(f)
    within(r.tau, r.tau_err, closed)
    rho = np.asarray(tr.autocorrelation(f))
    np.testing.assert_allclose(rho[:6], lam ** np.arange(6), atol=0.02)


def _ar1(key, phi, n, shape):
    e = jax.random.normal(key, (n,) + shape)

    def f(x, ei):
        x = phi * x + ei
        return x, x

    return jax.lax.scan(f, e[0] / np.sqrt(1 - phi ** 2), e[1:])[1]


def test_iat_ar1_closed_form_and_error_calibration():
    phi = np.array([0.0, 0.5, 0.9])
    closed = (1 + phi) / (2 * (1 - phi))                  # 0.5, 1.5, 9.5
    y = _ar1(jax.random.key(1), jnp.asarray(phi, jnp.float32), 20001, (4, 3))  # (T, C, 3)
    r = tr.integrated_autocorrelation_time(y)
    assert r.tau.shape == (3,)
    for k in range(3):
        within(r.tau[k], r.tau_err[k], closed[k])
    assert bool(jnp.all(r.converged))
    np.testing.assert_allclose(tr.effective_sample_size(y), 4 * 20000 / (2 * r.tau),
                               rtol=1e-5)
    # the Madras–Sokal error against the spread over 300 independent series (φ = 0.8)
    rep = tr.integrated_autocorrelation_time(_ar1(jax.random.key(2), 0.8, 4000, (1, 300)))
    sd, mean_err = float(jnp.std(rep.tau)), float(jnp.mean(rep.tau_err))
    assert abs(float(jnp.mean(rep.tau)) - 4.5) < 0.15          # measured 4.42 (window bias)
    assert 0.8 < mean_err / sd < 1.8                           # measured 1.32


def test_iat_flags_a_too_short_series_and_a_constant_one():
    y = _ar1(jax.random.key(4), 0.99, 401, (1,))       # τ = 99.5 ≫ T/50
    r = tr.integrated_autocorrelation_time(y)
    assert r.tau.shape == () and not bool(r.converged)
    assert tr.integrated_autocorrelation_time(y[:, 0]).tau == r.tau       # (T,) = (T, 1)
    assert np.isnan(float(tr.integrated_autocorrelation_time(jnp.ones((400, 1))).tau))


# ----------------------------------------------------------------------------- scale, vmap

def test_binary_64_units_runs_and_is_finite():
    L, Dm = 64, 784
    rng = np.random.default_rng(0)
    params = Params(*(jnp.asarray(v, jnp.float32) for v in (
        0.1 * rng.normal(size=(Dm, L)), 0.1 * rng.normal(size=Dm),
        0.1 * rng.normal(size=(L, Dm)), 0.1 * rng.normal(size=L))))
    cfg = ModelConfig(n_hidden=L, hidden="binary")
    center = jnp.full((Dm,), 0.13, jnp.float32)
    r = tr.trajectory_diagnostics(jax.random.key(0), params, cfg, 300, 20, 2, 8,
                                  center=center)
    assert r.hidden_iat.tau.shape == (L,)
    for v in (r.sigma.sigma, r.sigma.sigma_err, r.sigma.sigma_plugin, r.tau_int_max):
        assert np.isfinite(float(v))
    assert np.all(np.isfinite(np.asarray(r.hidden_iat.tau)))
    assert int(r.sigma.n_transitions) == 2 * 299
    # 2^64 states: no two visited states coincide by chance, no self-transitions
    assert float(r.sigma.self_fraction) == 0.0
    # default chunking keeps one chunk's draws near CHUNK_ELEMENTS
    assert tr.default_chunk(2, 8, Dm, L) * 2 * 8 * (Dm + L) <= tr.CHUNK_ELEMENTS


def test_onehot_300_units_runs():
    L, Dm = 300, 16
    rng = np.random.default_rng(1)
    params = Params(*(jnp.asarray(v, jnp.float32) for v in (
        rng.normal(size=(Dm, L)), np.zeros(Dm), rng.normal(size=(L, Dm)), np.zeros(L))))
    r = tr.trajectory_diagnostics(jax.random.key(0), params, ModelConfig(n_hidden=L), 200,
                                  10, 2, 8, center=jnp.zeros((Dm,)))
    assert r.hidden_iat.tau.shape == (L,) and np.isfinite(float(r.sigma.sigma))


def test_input_errors():
    cfg, params, center = SYSTEMS["binary6"]
    with pytest.raises(ValueError, match="bias_correction"):
        tr.log_mean_exp(jnp.zeros((3, 4)), "bogus")
    with pytest.raises(ValueError, match="rb_samples"):
        tr.trajectory_diagnostics(jax.random.key(0), params, cfg, 100, 0, 2, 1, center=center)
    with pytest.raises(ValueError, match="center"):
        tr.trajectory_diagnostics(jax.random.key(0), params, cfg, 100, 0, 2, 4,
                                  center=jnp.zeros(3))
    with pytest.raises(ValueError, match="z must be"):
        tr.sigma_from_trajectory(jax.random.key(0), params, center, cfg, jnp.zeros((10, 2, 5)))
