"""Tests of the plain NumPy reference (benchmarks/numpy_reference.py)."""

import numpy as np
import pytest

from benchmarks import numpy_reference as ref


# ----------------------------------------------------------------------------
# independent float64 helpers (written out again, not taken from the module)
# ----------------------------------------------------------------------------
def _log_sigmoid(u):
    return -np.logaddexp(0.0, -u)


def _ell(w, a, zs, batch):
    """l[n, t] = log A(z(t), x_n), looped and explicit."""
    N, T = batch.shape[0], zs.shape[0]
    out = np.empty((N, T))
    for n in range(N):
        for t in range(T):
            h = w @ zs[t] + a
            out[n, t] = np.sum(batch[n] * h - np.logaddexp(0.0, h))
    return out


def _log_q(wbar, abar, xs, zs, c):
    """log q(z(t)|x'(t)) = sum_b [z_b log s(g_b) + (1 - z_b) log s(-g_b)], (T,)."""
    g = (xs - c) @ wbar.T + abar
    return np.sum(zs * _log_sigmoid(g) + (1 - zs) * _log_sigmoid(-g), axis=1)


def _lse(v, axis):
    m = v.max(axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.exp(v - m).sum(axis=axis))


def _surrogate(p, p0, xs, zs, batch, c):
    """S = mean_n lse_t[log A(z(t), x_n) + log q(z(t)|x'(t)) - stopgrad(log q)].

    The stop-gradient term is evaluated at the fixed point p0."""
    ell = _ell(p["w"], p["a"], zs, batch)
    lq = _log_q(p["wbar"], p["abar"], xs, zs, c)
    lq0 = _log_q(p0["wbar"], p0["abar"], xs, zs, c)
    return np.mean(_lse(ell + (lq - lq0)[None, :], axis=1))


def _tiny_system(seed, hidden, D=5, L=3, T=4, N=3):
    rng = np.random.default_rng(seed)
    params = {
        "w": rng.normal(size=(D, L)),
        "a": rng.normal(size=D) * 0.5,
        "wbar": rng.normal(size=(L, D)),
        "abar": rng.normal(size=L) * 0.5,
    }
    xs = (rng.random((T, D)) < 0.5).astype(np.float64)
    if hidden == "onehot":
        zs = np.eye(L)[rng.integers(0, L, size=T)]
    else:
        zs = (rng.random((T, L)) < 0.5).astype(np.float64)
    batch = (rng.random((N, D)) < 0.5).astype(np.float64)
    c = rng.random(D)
    return params, xs, zs, batch, c


def _fd_grad(f, p, key, eps=1e-6):
    g = np.zeros_like(p[key])
    for idx in np.ndindex(p[key].shape):
        plus = {k: v.copy() for k, v in p.items()}
        minus = {k: v.copy() for k, v in p.items()}
        plus[key][idx] += eps
        minus[key][idx] -= eps
        g[idx] = (f(plus) - f(minus)) / (2 * eps)
    return g


# ----------------------------------------------------------------------------
# (a) closed-form gradient == finite differences of the surrogate
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("hidden", ["onehot", "binary"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_matches_finite_differences_of_surrogate(hidden, seed):
    params, xs, zs, batch, c = _tiny_system(seed, hidden)
    grads, loglik = ref.two_step_gradient(params, xs, zs, batch, c, hidden)
    for k in params:
        assert grads[k].dtype == np.float64 and grads[k].shape == params[k].shape

    S = lambda p: _surrogate(p, params, xs, zs, batch, c)  # noqa: E731
    for key in ("w", "a", "wbar", "abar"):
        fd = _fd_grad(S, params, key)
        if key == "a" and hidden == "onehot":
            # a is fixed at 0 for one-hot hidden units: its gradient is zeroed
            np.testing.assert_array_equal(grads["a"], 0.0)
            assert np.abs(fd).max() > 1e-3  # (the surrogate itself does depend on a)
            continue
        np.testing.assert_allclose(grads[key], fd, rtol=1e-6, atol=1e-8, err_msg=key)

    # on-the-fly log-likelihood (App. A3)
    ell = _ell(params["w"], params["a"], zs, batch)
    assert loglik == pytest.approx(np.mean(_lse(ell, 1) - np.log(zs.shape[0])), rel=1e-12)


@pytest.mark.parametrize("hidden", ["onehot", "binary"])
def test_recognition_gradient_is_responsibility_weighted_dlogq(hidden):
    """d S / d(wbar, abar) = mean_n sum_t r[n,t] d log q(z(t)|x'(t)), with
    d log q obtained by finite differences of log q for each t separately."""
    params, xs, zs, batch, c = _tiny_system(7, hidden)
    grads, _ = ref.two_step_gradient(params, xs, zs, batch, c, hidden)
    ell = _ell(params["w"], params["a"], zs, batch)
    r = np.exp(ell - _lse(ell, 1)[:, None])
    weight = r.mean(axis=0)  # (T,): mean_n r[n, t]
    T = zs.shape[0]
    for key in ("wbar", "abar"):
        expected = np.zeros_like(params[key])
        for t in range(T):
            f = lambda p, t=t: _log_q(p["wbar"], p["abar"], xs[t:t + 1], zs[t:t + 1], c)[0]  # noqa: E731
            expected += weight[t] * _fd_grad(f, params, key)
        np.testing.assert_allclose(grads[key], expected, rtol=1e-6, atol=1e-9, err_msg=key)


def test_gradient_float32_close_to_float64():
    params, xs, zs, batch, c = _tiny_system(3, "onehot", D=20, L=4, T=8, N=6)
    g64, ll64 = ref.two_step_gradient(params, xs, zs, batch, c)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    g32, ll32 = ref.two_step_gradient(p32, xs, zs, batch, c.astype(np.float32))
    for k in params:
        assert g32[k].dtype == np.float32
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-5)
    assert ll32 == pytest.approx(ll64, rel=1e-5)


# ----------------------------------------------------------------------------
# (b) chain samples follow the kernels
# ----------------------------------------------------------------------------
def _chain_system(hidden, D=8, L=4, seed=11):
    rng = np.random.default_rng(seed)
    params = {
        "w": rng.normal(size=(D, L)).astype(np.float32) * 2,
        "a": rng.normal(size=D).astype(np.float32) * 0.5,
        "wbar": rng.normal(size=(L, D)).astype(np.float32),
        "abar": rng.normal(size=L).astype(np.float32),
    }
    x0 = (rng.random(D) < 0.5).astype(np.float32)
    c = rng.random(D).astype(np.float32)
    return params, x0, c


def _within_5_sigma(freq, p, M):
    band = 5 * np.sqrt(p * (1 - p) / M) + 1e-12
    assert np.all(np.abs(freq - p) <= band), (freq, p, band)


@pytest.mark.parametrize("hidden", ["onehot", "binary"])
def test_chain_first_step_frequencies(hidden):
    params, x0, c = _chain_system(hidden)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    g = p64["wbar"] @ (x0 - c) + p64["abar"]
    s = 1 / (1 + np.exp(-g))
    M = 12000
    rng = np.random.default_rng(123)
    zsum = np.zeros(len(g))
    x1sum = np.zeros(len(x0))
    for _ in range(M):
        xs, zs, x1 = ref.run_chain(rng, params, x0, 1, c, hidden)
        assert np.array_equal(xs[0], x0)
        zsum += zs[0]
        x1sum += x1
    if hidden == "onehot":
        p = s / s.sum()  # eq. (19)
        # x'(1) ~ sum_alpha p(alpha|x) Bernoulli(sigmoid(w[:, alpha] + a))
        px1 = (1 / (1 + np.exp(-(p64["w"] + p64["a"][:, None])))) @ p
    else:
        p = s
        px1 = None
    assert abs(p.max() - p.min()) > 0.05  # a non-trivial distribution
    _within_5_sigma(zsum / M, p, M)
    if px1 is not None:
        _within_5_sigma(x1sum / M, px1, M)


def test_chain_shapes_and_onehot_rows():
    params, x0, c = _chain_system("onehot")
    xs, zs, xn = ref.run_chain(np.random.default_rng(0), params, x0, 10, c)
    assert xs.shape == (10, 8) and zs.shape == (10, 4) and xn.shape == (8,)
    assert np.all(zs.sum(axis=1) == 1) and set(np.unique(zs)) <= {0.0, 1.0}
    assert set(np.unique(xs)) <= {0.0, 1.0}


# ----------------------------------------------------------------------------
# (c) minibatch schedule
# ----------------------------------------------------------------------------
def test_minibatch_schedule():
    E = 120
    sizes = [ref.minibatch_size(e, E) for e in range(E)]
    assert sizes[0] == 16 and sizes[-1] == 160
    assert all(b >= a for a, b in zip(sizes, sizes[1:]))
    assert all(isinstance(s, int) for s in sizes)
    assert ref.minibatch_size(0, 1) == 16
    assert ref.minibatch_size(1, 3) == 88


# ----------------------------------------------------------------------------
# (d) RMSprop == optax.rmsprop (ascent: optax descends on -g)
# ----------------------------------------------------------------------------
def test_rmsprop_matches_optax():
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(5)
    shapes = {"w": (7, 3), "a": (7,), "wbar": (3, 7), "abar": (3,)}
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    opt = optax.rmsprop(0.1)
    jparams = {k: jnp.asarray(v) for k, v in params.items()}
    jstate = opt.init(jparams)
    state = ref.rmsprop_init(params)
    for step in range(6):
        grads = {k: (rng.normal(size=s) * 10.0 ** rng.integers(-5, 2)).astype(np.float32)
                 for k, s in shapes.items()}
        if step == 2:
            grads["a"][:] = 0.0  # zero gradients must leave parameters untouched
        updates, jstate = opt.update({k: -jnp.asarray(v) for k, v in grads.items()}, jstate,
                                     jparams)
        jparams = optax.apply_updates(jparams, updates)
        params, state = ref.rmsprop_update(params, grads, state, lr=0.1)
        for k in shapes:
            np.testing.assert_allclose(params[k], np.asarray(jparams[k]), rtol=2e-6, atol=1e-6)
            np.testing.assert_allclose(state[k], np.asarray(jstate[0].nu[k]), rtol=2e-6, atol=1e-30)


# ----------------------------------------------------------------------------
# initialisation and an end-to-end smoke run
# ----------------------------------------------------------------------------
def test_init_params():
    rng = np.random.default_rng(0)
    data = (rng.random((200, 30)) < 0.3).astype(np.float32)
    p = ref.init_params(np.random.default_rng(1), data, 5)
    assert p["w"].shape == (30, 5) and p["w"].dtype == np.float32
    assert np.all(p["a"] == 0) and np.all(p["wbar"] == 0) and np.all(p["abar"] == 0)
    m = 1 / (1 + np.exp(-p["w"].astype(np.float64)))
    n = 20
    k = m * (n + 1) - 0.5  # on-pixel counts in each unit's 10% subset
    np.testing.assert_allclose(k, np.round(k), atol=1e-3)
    assert k.min() >= -1e-3 and k.max() <= n + 1e-3
    assert not np.allclose(p["w"][:, 0], p["w"][:, 1])  # different subsets


@pytest.mark.parametrize("hidden", ["onehot", "binary"])
def test_train_smoke(hidden):
    rng = np.random.default_rng(0)
    data = (rng.random((100, 16)) < 0.3).astype(np.float32)
    params, hist = ref.train(0, data, L=3, T=8, epochs=3, steps_per_epoch=4, hidden=hidden)
    assert hist.shape == (3,) and np.all(np.isfinite(hist))
    assert all(v.dtype == np.float32 for v in params.values())
    if hidden == "onehot":
        assert np.all(params["a"] == 0)
    else:
        assert np.any(params["a"] != 0)
    # same seed, same result
    params2, hist2 = ref.train(0, data, L=3, T=8, epochs=3, steps_per_epoch=4, hidden=hidden)
    np.testing.assert_array_equal(hist, hist2)
