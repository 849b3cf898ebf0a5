"""In-training monitor: its σ and log-likelihood estimates against exact enumeration."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncl import chain as C
from ncl import model as ncl_model
from ncl import model as M
from ncl import monitor as Mo
from tests.helpers import all_binary, random_params


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
    rows = np.maximum(np.asarray(acc.rb_visits), 1)[:, None]
    M_rb = np.exp(np.asarray(acc.log_rb_sum)) / rows
    np.testing.assert_allclose(M_rb, Mx, atol=0.02)
    np.testing.assert_allclose(np.asarray(acc.transitions).sum(1), np.asarray(acc.rb_visits))
    summary = Mo.summarize(acc, params, jnp.asarray(all_binary(D)), config)
    s_rb, s_counts = float(summary.sigma_rb), float(summary.sigma_counts)
    assert sig > 0.01  # a genuinely nonequilibrium model
    assert abs(s_rb - sig) < 0.15 * sig + 0.005, (s_rb, sig)
    assert abs(s_counts - sig) < 0.25 * sig + 0.01, (s_counts, sig)
    np.testing.assert_allclose(np.asarray(summary.occupancy), p, atol=0.02)
    # the precise log-likelihood given p equals the exact mixture likelihood
    data = jnp.asarray(all_binary(D)[::3])
    ll = float(ncl_model.log_likelihood_given_occupancy(
        params, data, jnp.log(jnp.asarray(p, jnp.float32)), config, chunk=5))
    states = M.enumerate_hidden_states(config)
    logA = np.asarray(jax.vmap(lambda z: M.log_A(params, z, data))(states), np.float64)
    expected = np.mean(np.log((p[:, None] * np.exp(logA)).sum(0)))
    assert abs(ll - expected) < 1e-4


def test_accumulator_counts_match_the_trajectory():
    config = M.ModelConfig(n_hidden=3)
    params = random_params(jax.random.key(1), 5, 3, scale=2.0)
    center = jnp.zeros(5)
    _, traj = C.sample_chain(jax.random.key(2), C.init(jnp.zeros((2, 5))), params, center,
                             config, 30)
    acc = Mo.accumulate(Mo.empty_accumulator(config), params, traj, center, config)
    idx = np.asarray(M.hidden_state_index(traj.z, config))          # (T, C)
    np.testing.assert_array_equal(np.asarray(acc.occupancy), np.bincount(idx.ravel(),
                                                                         minlength=3))
    expected = np.zeros((3, 3))
    for c in range(2):
        for a, b in zip(idx[:-1, c], idx[1:, c]):
            expected[a, b] += 1
    np.testing.assert_array_equal(np.asarray(acc.transitions), expected)
    # the RB sum of row z' is the sum of the exact probabilities Ā(x'(t), ·) after z'
    probs = np.asarray(M.hidden_state_probs(params, traj.x, center, config))  # (T, C, S)
    rb = np.zeros((3, 3))
    for c in range(2):
        for t in range(1, 30):
            rb[idx[t - 1, c]] += probs[t, c]
    np.testing.assert_allclose(np.exp(np.asarray(acc.log_rb_sum)), rb, rtol=1e-5, atol=1e-7)
