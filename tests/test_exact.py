"""The exact reference (ncl.exact): stationary distribution, exact log-likelihood and its
gradient, the T → ∞ two-step gradient, and exact-gradient training."""
import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncl import chain as chain_lib
from ncl import exact
from ncl import training as T
from ncl.gradient import two_step_gradient
from ncl.model import ModelConfig, Params

CONFIGS = [ModelConfig(n_hidden=3), ModelConfig(n_hidden=3, recognition="softmax"),
           ModelConfig(n_hidden=3, recognition="eq19-exact"),
           ModelConfig(n_hidden=2, hidden="binary")]
IDS = ["paper", "softmax", "eq19-exact", "binary"]


def random_model(key, D, config, scale=1.0):
    L = config.n_hidden
    k = jax.random.split(key, 5)
    p = Params(w=scale * jax.random.normal(k[0], (D, L)),
               a=0.5 * scale * jax.random.normal(k[1], (D,)),
               wbar=scale * jax.random.normal(k[2], (L, D)),
               abar=0.5 * scale * jax.random.normal(k[3], (L,)))
    if not config.trains_visible_bias:
        p = p._replace(a=jnp.zeros(D))
    center = jax.random.uniform(k[4], (D,), minval=0.2, maxval=0.8)
    return p, center


def random_data(seed, n, D):
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 2, (2, D))
    x = protos[rng.integers(0, 2, n)] ^ (rng.random((n, D)) < 0.15)
    return jnp.asarray(x, jnp.float32)


# -------------------------------------------------------------------------- NumPy float64 reference

def np_loglik(params: dict, data, center, config: ModelConfig) -> float:
    """Literal definition in float64: dense P[x', x] = Σ_z Ā(x', z) A(z, x), p = stationary
    vector of P (solved with the normalisation), mean log p over the data."""
    w, a, wbar, abar = (np.asarray(params[k], np.float64) for k in ("w", "a", "wbar", "abar"))
    D, L = w.shape
    X = np.array(list(itertools.product([0, 1], repeat=D)), np.float64)[:, ::-1]  # bit i of s
    if config.hidden == "onehot":
        Z = np.eye(L)
    else:
        Z = np.array([[(s >> b) & 1 for b in range(L)] for s in range(2 ** L)], np.float64)
    H = Z @ w.T + a                                                     # (S, D)
    logA = X @ H.T - np.logaddexp(0, H).sum(1)[None, :]                 # (2^D, S): log A(z, x)
    G = (X - center) @ wbar.T + abar                                    # (2^D, L)
    if config.hidden == "binary":
        logAb = -np.logaddexp(0, -G) @ Z.T - np.logaddexp(0, G) @ (1 - Z).T
    else:
        lg = G if config.recognition == "softmax" else -np.logaddexp(0, -G)
        logAb = lg - np.log(np.exp(lg).sum(1, keepdims=True))
    P = np.exp(logAb) @ np.exp(logA).T                                  # (2^D, 2^D)
    n = P.shape[0]
    Amat = (np.eye(n) - P + 1.0).T
    p = np.linalg.solve(Amat, np.ones(n))
    p /= p.sum()
    idx = (np.asarray(data, np.int64) * (2 ** np.arange(D))).sum(1)
    return float(np.mean(np.log(p[idx])))


def _as_dict(p):
    return {k: np.asarray(v, np.float64) for k, v in p._asdict().items()}


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_loglik_routes_agree_with_float64_reference(config):
    D = 6
    params, center = random_model(jax.random.key(1), D, config)
    data = random_data(0, 40, D)
    ref = np_loglik(_as_dict(params), data, np.asarray(center, np.float64), config)
    hid = float(exact.log_likelihood(params, data, center, config))
    dense = float(exact.log_likelihood(params, data, center, config, method="dense"))
    assert hid == pytest.approx(ref, abs=2e-5 * abs(ref) + 1e-5)
    assert dense == pytest.approx(ref, abs=2e-5 * abs(ref) + 1e-5)
    # the stationary visible distribution is normalised and solves p P = p
    logp = exact.log_stationary_visible(params, center, config)
    p = np.exp(np.asarray(logp, np.float64))
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    P = np.asarray(exact.visible_transition_matrix(params, center, config), np.float64)
    np.testing.assert_allclose(p @ P, p, atol=1e-6)


def test_visible_index_roundtrip_and_limits():
    X = exact.enumerate_visible(5)
    np.testing.assert_array_equal(np.asarray(exact.visible_state_index(X)), np.arange(32))
    with pytest.raises(ValueError, match="2\\*\\*D"):
        exact.enumerate_visible(exact.MAX_VISIBLE + 1)
    cfg = ModelConfig(n_hidden=2)
    params, center = random_model(jax.random.key(0), exact.MAX_DENSE_VISIBLE + 1, cfg, 0.1)
    with pytest.raises(ValueError, match="dense"):
        exact.visible_transition_matrix(params, center, cfg)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_exact_gradient_matches_finite_differences(config):
    """jax.grad through the S x S solve (float32) vs central differences of the float64
    dense reference (2^D x 2^D solve)."""
    D = 5
    params, center = random_model(jax.random.key(7), D, config)
    data = random_data(3, 30, D)
    grads, value = exact.exact_gradient(params, None, data, center, config)
    base = _as_dict(params)
    c64 = np.asarray(center, np.float64)
    assert float(value) == pytest.approx(np_loglik(base, data, c64, config), abs=1e-4)
    rng = np.random.default_rng(0)
    h = 1e-5
    names = ["w", "wbar", "abar"] + (["a"] if config.trains_visible_bias else [])
    for name in names:
        arr = base[name]
        for flat in rng.choice(arr.size, size=min(4, arr.size), replace=False):
            idx = np.unravel_index(flat, arr.shape)
            plus = {k: v.copy() for k, v in base.items()}
            minus = {k: v.copy() for k, v in base.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            fd = ((np_loglik(plus, data, c64, config) - np_loglik(minus, data, c64, config))
                  / (2 * h))
            got = float(np.asarray(getattr(grads, name))[idx])
            assert got == pytest.approx(fd, rel=2e-3, abs=2e-4), (name, idx, got, fd)
    if not config.trains_visible_bias:
        assert np.all(np.asarray(grads.a) == 0)


def test_stationary_distribution_matches_long_chain_histogram():
    """Chi-square test of the visible histogram of a long chain (pooled over chains, thinned
    to reduce correlation) against the exact stationary p(x)."""
    D = 4
    config = ModelConfig(n_hidden=3)
    params, center = random_model(jax.random.key(11), D, config, scale=1.5)
    p = np.exp(np.asarray(exact.log_stationary_visible(params, center, config), np.float64))
    C, n_steps, burn = 256, 400, 100
    x0 = (jax.random.uniform(jax.random.key(0), (C, D)) < 0.5).astype(jnp.float32)
    state, _ = chain_lib.sample_chain(jax.random.key(1), chain_lib.init(x0), params, center,
                                      config, burn)
    _, traj = chain_lib.sample_chain(jax.random.key(2), state, params, center, config, n_steps)
    xs = np.asarray(traj.x[::5])                                    # thin: (80, C, D)
    idx = (xs.astype(np.int64) * (2 ** np.arange(D))).sum(-1).ravel()
    counts = np.bincount(idx, minlength=2 ** D)
    n = counts.sum()
    expected = n * p
    chi2 = np.sum((counts - expected) ** 2 / expected)
    dof = 2 ** D - 1
    # thinning leaves little correlation; allow a generous 5-sigma band of chi^2(dof)
    assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)
    assert np.max(np.abs(counts / n - p)) < 5 * np.sqrt(np.max(p) / n) * 2


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_expected_two_step_gradient_is_the_long_chain_limit(config):
    """two_step_gradient pooled over a very long stationary trajectory approaches
    expected_two_step_gradient (its T -> inf limit)."""
    D = 5
    params, center = random_model(jax.random.key(5), D, config)
    data = random_data(1, 40, D)
    g_exp, ll = exact.expected_two_step_gradient(params, None, data, center, config)
    assert float(ll) == pytest.approx(float(exact.log_likelihood(params, data, center, config)),
                                      abs=1e-5)
    C = 200
    x0 = (jax.random.uniform(jax.random.key(3), (C, D)) < 0.5).astype(jnp.float32)
    state, _ = chain_lib.sample_chain(jax.random.key(4), chain_lib.init(x0), params, center,
                                      config, 100)
    _, traj = chain_lib.sample_chain(jax.random.key(6), state, params, center, config, 500)
    g_mc, _ = two_step_gradient(params, traj, data, center, config)
    angle = float(exact.gradient_angle(g_mc, g_exp, config))
    assert angle < 2.0, angle
    v1 = exact.trainable_vector(g_mc, config)
    v2 = exact.trainable_vector(g_exp, config)
    assert float(jnp.linalg.norm(v1 - v2) / jnp.linalg.norm(v2)) < 0.04


def test_gradient_angle_and_vectors():
    cfg = ModelConfig(n_hidden=3)
    g, _ = random_model(jax.random.key(0), 4, cfg)
    assert float(exact.gradient_angle(g, g, cfg)) == pytest.approx(0.0, abs=0.1)
    neg = jax.tree_util.tree_map(jnp.negative, g)
    assert float(exact.gradient_angle(g, neg, cfg)) == pytest.approx(180.0, abs=0.1)
    # a is excluded when it is not trained
    assert exact.trainable_vector(g, cfg).shape == (4 * 3 * 2 + 3,)


def test_exact_training_modes_raise_the_exact_loglik():
    x, _, _ = exact.noisy_prototypes(0, n_visible=8, n_prototypes=3, n_samples=300)
    base = T.TrainConfig(model=ModelConfig(n_hidden=3), epochs=6, steps_per_epoch=10,
                         chain_length=16, batch_min=16, batch_max=64, batch_buckets=1,
                         monitor=False)
    xj = jnp.asarray(x, jnp.float32)
    for gradient in ("exact", "two-step-expected"):
        cfg = dataclasses.replace(base, gradient=gradient)
        s0 = T.init_ensemble_state([0, 1], x, cfg)
        state, hist = T.train_ensemble([0, 1], x, cfg)
        ll = jax.vmap(lambda p, c, cfg=cfg: exact.log_likelihood(p, xj, c, cfg.model))
        before = np.asarray(ll(s0.params, s0.center))
        after = np.asarray(ll(state.params, state.center))
        assert np.all(after > before + 0.5), (gradient, before, after)
        assert np.all(np.isfinite(np.asarray(hist.loglik)))
    with pytest.raises(ValueError, match="2\\*\\*D"):  # D = 784 is far beyond enumeration
        T.train(0, np.zeros((200, 784), np.float32) + (np.arange(784) % 2),
                dataclasses.replace(base, gradient="exact"))


def test_ascend_reaches_a_stationary_point_of_the_exact_loglik():
    x, _, _ = exact.noisy_prototypes(2, n_visible=6, n_prototypes=2, n_samples=200)
    cfg = ModelConfig(n_hidden=2, recognition="softmax")
    xj = jnp.asarray(x, jnp.float32)
    params, center = random_model(jax.random.key(3), 6, cfg, 0.3)
    p, lls = exact.ascend(params, xj, center, cfg, "exact", steps=600, learning_rate=0.05)
    assert float(lls[-1]) > float(lls[0]) + 0.5
    g, _ = exact.exact_gradient(p, None, xj, center, cfg)
    g0, _ = exact.exact_gradient(params, None, xj, center, cfg)
    assert float(exact.gradient_norm(g, cfg)) < 0.1 * float(exact.gradient_norm(g0, cfg))


def test_data_helpers():
    img = np.zeros((2, 784), np.uint8)
    img[0, :392] = 1  # top half on
    out = exact.block_downsample(img, (4, 3), threshold=0.5)
    assert out.shape == (2, 12) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0].reshape(4, 3), [[1] * 3, [1] * 3, [0] * 3, [0] * 3])
    assert out[1].sum() == 0
    x, y, protos = exact.noisy_prototypes(0, n_visible=10, n_prototypes=3, n_samples=500,
                                          flip=0.0)
    np.testing.assert_array_equal(x, protos[y])
    assert exact.empirical_log_likelihood(x) == pytest.approx(
        np.sum(np.bincount(y) / 500 * np.log(np.bincount(y) / 500)), abs=1e-9) or \
        len(np.unique(protos, axis=0)) < 3
