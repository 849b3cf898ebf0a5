"""The RBM baseline (ncl.rbm): exact log-likelihood against brute-force enumeration,
detailed balance, PCD gradient (closed form = autodiff, unbiased with a long chain), and
training through ncl.training with tied parameters.

Autodiff and closed-form training are different float32 programs: they agree to round-off
until a Bernoulli draw flips, so they are compared after one training step (parameters to
round-off, keys bit for bit; tests/helpers.py says why), not after a full run."""
import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncl import chain as chain_lib
from ncl import diagnostics as dg
from ncl import markov
from ncl import model as ncl_model
from ncl import exact
from ncl import rbm
from ncl import training as T
from ncl.model import ModelConfig, Params, enumerate_hidden_states
from tests import helpers as A

CONFIGS = [rbm.rbm_model_config(3), rbm.rbm_model_config(3, "binary"),
           rbm.rbm_model_config(3, centering=False),
           rbm.rbm_model_config(3, "binary", learn_visible_bias=False)]
IDS = ["onehot", "binary", "onehot-uncentered", "binary-a-fixed"]


def random_rbm(key, D, config, scale=1.0):
    L = config.n_hidden
    k = jax.random.split(key, 4)
    p = Params(w=scale * jax.random.normal(k[0], (D, L)),
               a=0.5 * scale * jax.random.normal(k[1], (D,)),
               wbar=jnp.zeros((L, D)), abar=0.5 * scale * jax.random.normal(k[2], (L,)))
    center = (jax.random.uniform(k[3], (D,), minval=0.2, maxval=0.8) if config.centering
              else jnp.zeros(D))
    return rbm.tie(p), center


def brute_force(params, center, config):
    """Enumerate every (x, z): exp(-E), E = -(x - c)^T W z - a^T x - abar^T z (float64).
    Returns (log p(x) over all 2^D states, p(z), p(x|z), p(z|x))."""
    W = np.asarray(params.w, np.float64)
    a = np.asarray(params.a, np.float64)
    b = np.asarray(params.abar, np.float64)
    c = np.asarray(center, np.float64)
    D = W.shape[0]
    X = np.array(list(itertools.product([0, 1], repeat=D)), np.float64)[:, ::-1]
    Z = np.asarray(enumerate_hidden_states(config), np.float64)
    negE = (X - c) @ W @ Z.T + (X @ a)[:, None] + (Z @ b)[None, :]     # (2^D, S)
    logZ = np.log(np.exp(negE).sum())
    joint = np.exp(negE - logZ)
    px = joint.sum(1)
    pz = joint.sum(0)
    return np.log(px), pz, (joint / pz[None, :]).T, joint / px[:, None]


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_exact_loglik_matches_brute_force_enumeration(config):
    D = 6
    params, center = random_rbm(jax.random.key(0), D, config)
    logpx, pz, p_x_given_z, p_z_given_x = brute_force(params, center, config)
    X = exact.enumerate_visible(D)
    np.testing.assert_allclose(np.asarray(rbm.log_prob(params, X, center, config)), logpx,
                               atol=2e-5)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 2 ** D, 50)
    data = X[idx]
    ll = float(rbm.log_likelihood(params, data, center, config))
    assert ll == pytest.approx(float(np.mean(logpx[idx])), abs=2e-5)
    # the exact hidden marginal, and eq. (5): p(x) = sum_z pbar(z) A(z, x)
    np.testing.assert_allclose(np.exp(np.asarray(rbm.log_hidden_marginal(params, center, config))),
                               pz, atol=1e-6)
    eq5 = float(ncl_model.log_likelihood_given_occupancy(
        params, data, rbm.log_hidden_marginal(params, center, config), config))
    assert eq5 == pytest.approx(ll, abs=2e-5)
    # the kernels of the chain are the RBM's conditionals: A = p(x|z), Abar = p(z|x)
    from ncl.model import log_A_matrix
    A = np.exp(np.asarray(log_A_matrix(params, X, enumerate_hidden_states(config)))).T
    np.testing.assert_allclose(A, p_x_given_z, atol=1e-6)
    Abar = np.exp(np.asarray(ncl_model.log_abar_all_states(params, X, center, config)))
    np.testing.assert_allclose(Abar, p_z_given_x, atol=1e-6)
    # and the general exact reference (stationary vector of the chain) agrees
    assert float(exact.log_likelihood(params, data, center, config)) == pytest.approx(ll, abs=1e-4)


def test_binary_partition_function_is_chunked_exactly():
    cfg = rbm.rbm_model_config(9, "binary")  # 512 states in chunks of 64
    params, center = random_rbm(jax.random.key(3), 5, cfg, 0.5)
    full = float(rbm.log_partition(params, center, cfg))
    chunked = float(jax.nn.logsumexp(rbm.log_hidden_weights(params, center, cfg, chunk=64)))
    assert chunked == pytest.approx(full, abs=1e-5)
    _, pz, _, _ = brute_force(params, center, cfg)
    np.testing.assert_allclose(np.exp(np.asarray(rbm.log_hidden_marginal(params, center, cfg))),
                               pz, atol=1e-6)
    with pytest.raises(ValueError, match="2\\*\\*L"):
        big = rbm.rbm_model_config(21, "binary")
        rbm.log_partition(*random_rbm(jax.random.key(0), 3, big), big)


@pytest.mark.parametrize("config", CONFIGS[:2], ids=IDS[:2])
def test_rbm_transition_matrix_satisfies_detailed_balance(config):
    params, center = random_rbm(jax.random.key(1), 7, config, scale=1.5)
    M = np.asarray(rbm.exact_hidden_transition_matrix(params, center, config), np.float64)
    p = np.exp(np.asarray(rbm.log_hidden_marginal(params, center, config), np.float64))
    F = p[:, None] * M
    np.testing.assert_allclose(F, F.T, atol=1e-7)
    np.testing.assert_allclose(p @ M, p, atol=1e-6)         # p̄ is stationary
    assert float(rbm.detailed_balance_violation(params, center, config)) < 1e-6
    # sigma is 0: eq. (21) from the exact M
    sigma = float(markov.entropy_production_from_log(jnp.log(jnp.asarray(p, jnp.float32)),
                                                 jnp.log(jnp.asarray(M, jnp.float32))))
    assert abs(sigma) < 1e-5
    # ... while the untied model with the same w is not reversible
    untied = params._replace(wbar=params.wbar + 0.8 * jax.random.normal(jax.random.key(9),
                                                                        params.wbar.shape))
    lM = exact.log_hidden_transition_matrix(untied, center, config)
    lp = exact.log_stationary_hidden(untied, center, config)
    assert float(markov.entropy_production_from_log(lp, lM)) > 1e-3


def test_diagnostics_find_sigma_zero_for_an_rbm():
    """The Rao-Blackwellised sigma of the diagnostics is 0 within its error for an RBM
    (a sanity check of the estimator that the comparison relies on)."""
    cfg = rbm.rbm_model_config(4)
    params, center = random_rbm(jax.random.key(2), 12, cfg, scale=0.6)
    data = (jax.random.uniform(jax.random.key(0), (64, 12)) < 0.5).astype(jnp.float32)
    dcfg = dg.DiagnosticsConfig(burn_in=50, n_steps=4000, n_chains=16, rb_samples=2000)
    d = dg.diagnose(jax.random.key(5), params, center, cfg, data, dcfg)
    # the bias-corrected estimate is the one to test against 0 (the plug-in is >= 0);
    # over 40 keys bc/SE had mean -0.4, sd 1.0, max |.| 3.0 with 16 groups: 5 SE is safe
    assert abs(float(d.sigma_rb_bc)) <= 5 * float(d.sigma_rb_err) + 1e-6, (
        d.sigma_rb_bc, d.sigma_rb_err)
    assert 0 <= float(d.sigma_rb)
    p_exact = np.exp(np.asarray(rbm.log_hidden_marginal(params, center, cfg)))
    np.testing.assert_allclose(d.p_bar_rb, p_exact, atol=0.02)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_pcd_closed_form_equals_autodiff(config):
    D = 10
    params, center = random_rbm(jax.random.key(4), D, config)
    x0 = (jax.random.uniform(jax.random.key(1), (3, D)) < 0.5).astype(jnp.float32)
    _, traj = chain_lib.sample_chain(jax.random.key(2), chain_lib.init(x0), params, center,
                                     config, 16)
    batch = (jax.random.uniform(jax.random.key(3), (20, D)) < 0.4).astype(jnp.float32)
    mask = (jnp.arange(20) < 13).astype(jnp.float32)
    g1, ll1 = rbm.pcd_gradient(params, traj, batch, center, config, mask)
    g2, ll2 = rbm.pcd_autodiff_gradient(params, traj, batch, center, config, mask)
    for name in ("w", "a", "abar"):
        np.testing.assert_allclose(getattr(g1, name), getattr(g2, name), rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(g1.wbar) == 0)
    if not config.trains_visible_bias:
        assert np.all(np.asarray(g1.a) == 0)
    assert float(ll1) == pytest.approx(float(ll2))


@pytest.mark.parametrize("config", CONFIGS[:2], ids=IDS[:2])
def test_pcd_gradient_with_a_long_mixed_chain_is_the_exact_gradient(config):
    D = 8
    params, center = random_rbm(jax.random.key(6), D, config, scale=0.7)
    batch = (jax.random.uniform(jax.random.key(3), (40, D)) < 0.4).astype(jnp.float32)
    x0 = (jax.random.uniform(jax.random.key(1), (256, D)) < 0.5).astype(jnp.float32)
    st, _ = chain_lib.sample_chain(jax.random.key(2), chain_lib.init(x0), params, center,
                                   config, 100)
    _, traj = chain_lib.sample_chain(jax.random.key(7), st, params, center, config, 400)
    g_pcd, _ = rbm.pcd_gradient(params, traj, batch, center, config)
    g_ex, ll = rbm.exact_gradient(params, None, batch, center, config)
    assert float(ll) == pytest.approx(float(rbm.log_likelihood(params, batch, center, config)))
    v1 = exact.trainable_vector(g_pcd, config)
    v2 = exact.trainable_vector(g_ex, config)
    # wbar is tied (its gradient is folded into w), so compare w, a, abar
    assert float(jnp.linalg.norm(v1 - v2) / jnp.linalg.norm(v2)) < 0.03


def test_rbm_family_trains_through_ncl_training(paper_data):
    x, _ = paper_data
    base = T.TrainConfig(epochs=3, steps_per_epoch=5, chain_length=12, batch_min=8,
                         batch_max=32, batch_buckets=1, learning_rate=0.001, monitor=False)
    cfg = rbm.rbm_train_config(base)
    assert cfg.family == "rbm" and cfg.model.recognition == "softmax"
    s0 = T.init_ensemble_state([0, 1], x, cfg)
    assert rbm.is_tied(s0.params)
    # same App. A1 init as the main model (w, a, abar; wbar tied instead of 0)
    s0_ncl = T.init_ensemble_state([0, 1], x, base)
    np.testing.assert_array_equal(s0.params.w, s0_ncl.params.w)
    np.testing.assert_array_equal(s0.chain.x, s0_ncl.chain.x)
    state, hist = T.train_ensemble([0, 1], x, cfg)
    assert rbm.is_tied(state.params)
    assert np.all(np.asarray(hist.finite))
    # the exact log-likelihood improves
    xj = jnp.asarray(x)
    ll = jax.vmap(lambda p, c: rbm.log_likelihood(p, xj, c, cfg.model))
    assert np.all(np.asarray(ll(state.params, state.center)) >
                  np.asarray(ll(s0.params, s0.center)))
    # autodiff PCD is the closed form in other float32 arithmetic: equal to round-off for
    # the first step (later, one flipped Bernoulli draw would send the chains apart;
    # tests/helpers.py), keys bit for bit; exact-gradient training runs
    first = dataclasses.replace(cfg, epochs=1, steps_per_epoch=1)
    s_auto, _ = T.train_ensemble([0, 1], x, dataclasses.replace(first, gradient="autodiff"))
    s_closed, _ = T.train_ensemble([0, 1], x, first)
    A.assert_integers_equal(s_auto, s_closed)
    A.assert_first_step_matches(s_auto.params, s_closed.params)
    s_ex, h_ex = T.train_ensemble([0, 1], x, dataclasses.replace(cfg, gradient="exact"))
    assert rbm.is_tied(s_ex.params) and np.all(np.isfinite(np.asarray(h_ex.loglik)))


def test_rbm_config_validation():
    with pytest.raises(ValueError, match="softmax"):
        T.TrainConfig(family="rbm")  # one-hot with eq. (19) recognition is not an RBM
    with pytest.raises(ValueError, match="RBM family supports"):
        T.TrainConfig(family="rbm", model=rbm.rbm_model_config(), gradient="two-step-expected")
    with pytest.raises(ValueError, match="family"):
        T.TrainConfig(family="boltzmann")
    cfg = rbm.rbm_train_config(T.TrainConfig(model=ModelConfig(hidden="binary", n_hidden=4)))
    assert cfg.model.hidden == "binary" and cfg.model.recognition == "paper"
    assert T.TrainConfig.from_dict(cfg.to_dict()) == cfg
