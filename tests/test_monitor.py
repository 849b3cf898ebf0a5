"""In-training monitor: its σ and log-likelihood estimates against exact enumeration."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncl import chain as C
from ncl import model as M
from ncl import monitor as Mo
from tests.test_model import all_binary, random_params


def exact_M(params, center, config, D):
    xs = jnp.asarray(all_binary(D))
    states = M.enumerate_hidden_states(config)
    A = jnp.exp(jax.vmap(lambda z: M.log_A(params, z, xs))(states))          # (S, 2^D)
    Abar = M.hidden_state_probs(params, xs, center, config)                 # (2^D, S)
    return np.asarray(A @ Abar, np.float64)


def exact_sigma(p, Mx):
    F = p[:, None] * Mx
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (F - F.T) * np.log(F / F.T)
    return 0.5 * np.nansum(np.where(np.eye(len(p)) > 0, 0, t))


def run_monitor(params, center, config, D, n_segments=400, T=50, seed=0):
    acc = Mo.empty_accumulator(config)
    state = C.init(jnp.zeros(D))

    @jax.jit
    def seg(carry, key):
        state, acc = carry
        state, traj = C.sample_chain(key, state, params, center, config, T)
        return (state, Mo.accumulate(acc, params, traj, center, config)), None

    (state, acc), _ = jax.lax.scan(seg, (state, acc), jax.random.split(jax.random.key(seed),
                                                                         n_segments))
    return acc


@pytest.mark.parametrize("config, seed", [(M.ModelConfig(n_hidden=3), 3),
                                          (M.ModelConfig(n_hidden=2, hidden="binary"), 4)],
                         ids=["onehot", "binary"])
def test_monitor_estimates_match_exact(config, seed):
    D = 6
    params = random_params(jax.random.key(seed), D, config.n_hidden, scale=2.0)
    center = jnp.full((D,), 0.5)
    Mx = exact_M(params, center, config, D)
    w, v = np.linalg.eig(Mx.T)
    p = np.real(v[:, np.argmin(np.abs(w - 1))])
    p = p / p.sum()
    sig = exact_sigma(p, Mx)
    acc = run_monitor(params, center, config, D)
    log_M = np.asarray(Mo.rb_log_transition_matrix(acc))
    np.testing.assert_allclose(np.exp(log_M), Mx, atol=0.02)
    p_rb = np.asarray(Mo.stationary_distribution(jnp.exp(log_M)))
    np.testing.assert_allclose(p_rb, p, atol=0.02)
    s_rb = float(Mo.entropy_production_from_log(jnp.log(p_rb), log_M))
    s_counts = float(Mo.entropy_production_counts(acc.transitions))
    assert sig > 0.01  # a genuinely nonequilibrium model
    assert abs(s_rb - sig) < 0.15 * sig + 0.005, (s_rb, sig)
    assert abs(s_counts - sig) < 0.25 * sig + 0.01, (s_counts, sig)
    # the precise log-likelihood given p equals the exact mixture likelihood
    data = jnp.asarray(all_binary(D)[::3])
    ll = float(Mo.data_log_likelihood(params, data, jnp.log(jnp.asarray(p, jnp.float32)),
                                      config, chunk=5))
    states = M.enumerate_hidden_states(config)
    logA = np.asarray(jax.vmap(lambda z: M.log_A(params, z, data))(states), np.float64)
    expected = np.mean(np.log((p[:, None] * np.exp(logA)).sum(0)))
    assert abs(ll - expected) < 1e-4


def test_sigma_edge_cases():
    # detailed balance: symmetric flux matrix -> sigma = 0 for both estimators
    Mx = jnp.array([[0.5, 0.3, 0.2], [0.3, 0.4, 0.3], [0.2, 0.3, 0.5]])
    p = Mo.stationary_distribution(Mx)
    np.testing.assert_allclose(p, 1 / 3, atol=1e-6)
    assert abs(float(Mo.entropy_production_from_log(jnp.log(p), jnp.log(Mx)))) < 1e-6
    counts = jnp.array([[5.0, 3, 2], [3, 4, 3], [2, 3, 5]])
    assert abs(float(Mo.entropy_production_counts(counts))) < 1e-6
    # a perfect 3-cycle: stationary uniform (no oscillation), RB sigma infinite,
    # count estimator leaves out one-way pairs and gives 0 (biased low)
    cyc = jnp.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]])
    np.testing.assert_allclose(Mo.stationary_distribution(cyc), 1 / 3, atol=1e-6)
    assert np.isinf(float(Mo.entropy_production_from_log(jnp.full(3, -np.log(3)), jnp.log(cyc))))
    assert float(Mo.entropy_production_counts(cyc * 10)) == 0.0
    # a near-cycle: closed form sigma = (1-e)/3... computed independently here
    e = 0.1
    near = jnp.array([[e, 1 - e, 0], [0, e, 1 - e], [1 - e, 0, e]]) * 0.97 + 0.01
    pn = np.full(3, 1 / 3)
    s = exact_sigma(pn, np.asarray(near, np.float64))
    got = float(Mo.entropy_production_from_log(jnp.log(jnp.asarray(pn)), jnp.log(near)))
    assert abs(got - s) < 1e-4 * s
