"""ncl.chain.kernel (BlackJAX-style init/step), ncl.chain.run_segments and the estimator
registry ncl.estimators."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncl import chain, estimators
from ncl.model import ModelConfig, Params


def _params(key, D=7, L=3):
    k1, k2, k3 = jax.random.split(key, 3)
    return Params(w=jax.random.normal(k1, (D, L)), a=0.3 * jax.random.normal(k2, (D,)),
                  wbar=jax.random.normal(k3, (L, D)), abar=jnp.zeros((L,)))


@pytest.mark.parametrize("config", [ModelConfig(n_hidden=3),
                                    ModelConfig(n_hidden=3, recognition="softmax"),
                                    ModelConfig(n_hidden=3, hidden="binary")])
def test_user_scan_over_kernel_step_equals_sample_chain(config):
    """sample_chain(key, ·, T) draws double step t from counter block t of the segment
    key, so scanning step(key, ·, t) over t = 0..T−1 with the SAME key visits the same
    states (x, z exactly; the logits to float32 round-off)."""
    D, T, C = 7, 20, 4
    params = _params(jax.random.key(0), D, config.n_hidden)
    center = jnp.full((D,), 0.4)
    init, step = chain.kernel(config)
    x0 = (jax.random.uniform(jax.random.key(1), (C, D)) < 0.5).astype(jnp.float32)
    key = jax.random.key(2)

    @jax.jit
    def user_loop(state):
        def body(st, t):
            return step(key, st, params, center, t)
        return jax.lax.scan(body, state, jnp.arange(T))

    state0 = init(x0)
    last, info = user_loop(state0)
    ref_state, ref_traj, ref_g = chain.sample_chain_with_logits(key, state0, params, center,
                                                                config, T)
    assert info.x.shape == (T, C, D) and info.z.shape == (T, C, config.n_hidden)
    np.testing.assert_array_equal(np.asarray(info.x), np.asarray(ref_traj.x))
    np.testing.assert_array_equal(np.asarray(info.z), np.asarray(ref_traj.z))
    np.testing.assert_array_equal(np.asarray(last.x), np.asarray(ref_state.x))
    np.testing.assert_allclose(np.asarray(info.hidden_logits), np.asarray(ref_g), atol=1e-5)


def test_kernel_step_with_fresh_keys_equals_run_segments():
    config = ModelConfig(n_hidden=4)
    params = _params(jax.random.key(3), 6, 4)
    center = jnp.zeros((6,))
    init, step = chain.kernel(config)
    keys = jax.random.split(jax.random.key(4), 9)
    state0 = init(jnp.ones((2, 6)))
    last, info = jax.lax.scan(lambda st, k: step(k, st, params, center), state0, keys)
    ref_last, ref_z = chain.run_segments(keys, state0, params, center, config, 1,
                                         record=lambda traj: traj.z[0])
    np.testing.assert_array_equal(np.asarray(info.z), np.asarray(ref_z))
    np.testing.assert_array_equal(np.asarray(last.x), np.asarray(ref_last.x))


def test_run_segments_one_key_is_one_sample_chain():
    config = ModelConfig(n_hidden=3)
    params = _params(jax.random.key(5))
    center = jnp.zeros((7,))
    state0 = chain.init(jnp.zeros((3, 7)))
    key = jax.random.key(6)
    st, traj = chain.run_segments(key, state0, params, center, config, 11,
                                  record=lambda t: t)
    ref_st, ref_traj = chain.sample_chain(key, state0, params, center, config, 11)
    np.testing.assert_array_equal(np.asarray(traj.x), np.asarray(ref_traj.x))
    np.testing.assert_array_equal(np.asarray(st.x), np.asarray(ref_st.x))
    st2, rec = chain.run_segments(jax.random.split(key, 3), state0, params, center, config, 5)
    assert rec is None and st2.x.shape == (3, 7)


def test_estimator_registry():
    assert set(estimators.FAMILIES) == {"ncl", "rbm"}
    assert estimators.ESTIMATORS["rbm"] == ("closed-form", "autodiff", "exact")
    for family, names in estimators.ESTIMATORS.items():
        for name in names:
            est = estimators.get_estimator(family, name)
            assert callable(est.gradient) and callable(est.tie) and callable(est.check_model)
    with pytest.raises(ValueError, match="RBM family supports"):
        estimators.get_estimator("rbm", "two-step-expected")
    with pytest.raises(ValueError, match="family"):
        estimators.get_estimator("boltzmann", "exact")
    p = _params(jax.random.key(7))
    tied = estimators.get_estimator("rbm", "closed-form").tie(p)
    np.testing.assert_array_equal(np.asarray(tied.wbar), np.asarray(p.w.T))
    assert estimators.get_estimator("ncl", "closed-form").tie(p) is p
