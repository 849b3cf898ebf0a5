"""Kernels against brute-force enumeration; samplers against exact probabilities; App. A1 init."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncl import model as M
from tests.helpers import CONFIGS, all_binary, chi2_quantile, chi2_stat, random_params

jax.config.update("jax_enable_x64", False)


def test_log_A_matches_enumeration_and_normalises():
    D, L = 6, 3
    p = random_params(jax.random.key(0), D, L)
    xs = all_binary(D)
    for z in all_binary(L):
        # brute force in float64 from eq. (8): exp(x·h) / Σ_x' exp(x'·h)
        h = np.asarray(p.w, np.float64) @ z + np.asarray(p.a, np.float64)
        energies = xs @ h
        log_norm = np.log(np.exp(energies).sum())
        expected = energies - log_norm
        got = np.asarray(M.log_A(p, jnp.asarray(z), jnp.asarray(xs)))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        assert abs(np.exp(got.astype(np.float64)).sum() - 1) < 1e-5


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.hidden}-{c.recognition}")
def test_log_Abar_matches_enumeration_and_normalises(config):
    D = 5
    p = random_params(jax.random.key(1), D, config.n_hidden)
    center = jnp.asarray(np.linspace(0.1, 0.9, D), jnp.float32)
    states = np.asarray(M.enumerate_hidden_states(config))
    for x in all_binary(D):
        g = np.asarray(p.wbar, np.float64) @ (x - np.asarray(center)) + np.asarray(p.abar)
        if config.hidden == "binary":  # eq. (9): exp(z·g) / Σ_z' exp(z'·g) over 2^L states
            e = states @ g
            expected = e - np.log(np.exp(e).sum())
        elif config.recognition == "softmax":
            expected = g - np.log(np.exp(g).sum())
        else:  # eq. (19)
            sig = 1 / (1 + np.exp(-g))
            expected = np.log(sig / sig.sum())
        got = np.asarray(M.log_Abar(p, jnp.asarray(x), jnp.asarray(states), center, config))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        probs = np.asarray(M.hidden_state_probs(p, jnp.asarray(x), center, config))
        np.testing.assert_allclose(probs, np.exp(expected), rtol=1e-5, atol=1e-6)
        assert abs(probs.sum() - 1) < 1e-5


def test_bernoulli_thresholds_are_exact_to_2_pow_32():
    logits = jnp.asarray(np.concatenate([np.linspace(-30, 30, 2001), [0.0, -88.0, 88.0]]),
                         jnp.float32)
    thr, flip = M.bernoulli_thresholds(logits)
    p_impl = np.where(np.asarray(flip), 1 - np.asarray(thr, np.float64) / 2 ** 32,
                      np.asarray(thr, np.float64) / 2 ** 32)
    p_true = 1 / (1 + np.exp(-np.asarray(logits, np.float64)))
    # error: floor (2^-32) plus float32 rounding of min(p, 1-p) (relative 2^-23)
    q = np.minimum(p_true, 1 - p_true)
    assert np.all(np.abs(p_impl - p_true) <= 2.0 ** -32 + 2 * q * 2.0 ** -23)


def test_bernoulli_from_bits_is_exact_on_all_small_bit_patterns():
    # With bits = k for k in [0, 2^16) scaled to the top of the 32-bit range, the fraction
    # of ones must equal the threshold fraction exactly.
    bits = (jnp.arange(2 ** 16, dtype=jnp.uint32) << 16)
    for logit in (-3.0, -0.2, 0.0, 0.7, 4.0):
        thr, flip = M.bernoulli_thresholds(jnp.float32(logit))
        x = M.bernoulli_from_bits(bits, thr, flip)
        expected = np.ceil(float(thr) / 2 ** 16) / 2 ** 16
        expected = 1 - expected if bool(flip) else expected
        assert abs(float(x.mean()) - expected) < 1e-12


def test_sample_visible_frequencies_match_A():
    D, L = 3, 2
    p = random_params(jax.random.key(2), D, L)
    z = jnp.array([1.0, 0.0])
    n = 200_000
    xs = M.sample_visible(jax.random.key(3), p, jnp.broadcast_to(z, (n, L)))
    codes = np.asarray(xs @ jnp.array([4.0, 2.0, 1.0])).astype(int)
    counts = np.bincount(codes, minlength=8)
    probs = np.exp(np.asarray(M.log_A(p, z, jnp.asarray(all_binary(D)))))
    stat, dof = chi2_stat(counts, probs)
    assert stat < chi2_quantile(dof), (stat, dof)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.hidden}-{c.recognition}")
def test_sample_hidden_frequencies_match_Abar(config):
    D = 4
    p = random_params(jax.random.key(4), D, config.n_hidden, scale=1.5)
    center = jnp.full((D,), 0.3)
    x = jnp.array([1.0, 0.0, 1.0, 1.0])
    n = 200_000
    z = M.sample_hidden(jax.random.key(5), p, jnp.broadcast_to(x, (n, D)), center, config)
    idx = np.asarray(M.hidden_state_index(z, config))
    counts = np.bincount(idx, minlength=config.n_states)
    probs = np.asarray(M.hidden_state_probs(p, x, center, config))
    stat, dof = chi2_stat(counts, probs)
    assert stat < chi2_quantile(dof), (stat, dof)


def test_sampler_detects_a_wrong_distribution():
    """The chi-square test has power: samples from slightly wrong probabilities fail it."""
    D, L = 3, 2
    p = random_params(jax.random.key(2), D, L)
    z = jnp.array([1.0, 0.0])
    wrong = p._replace(a=p.a + 0.05)
    xs = M.sample_visible(jax.random.key(3), wrong, jnp.broadcast_to(z, (200_000, L)))
    codes = np.asarray(xs @ jnp.array([4.0, 2.0, 1.0])).astype(int)
    probs = np.exp(np.asarray(M.log_A(p, z, jnp.asarray(all_binary(D)))))
    stat, dof = chi2_stat(np.bincount(codes, minlength=8), probs)
    assert stat > chi2_quantile(dof)


def test_init_params_follows_app_A1(paper_data):
    x, _ = paper_data
    config = M.ModelConfig(n_hidden=6)
    p = M.init_params(jax.random.key(0), jnp.asarray(x), config)
    assert p.w.shape == (784, 6) and p.wbar.shape == (6, 784)
    assert not np.any(p.a) and not np.any(p.wbar) and not np.any(p.abar)
    n = round(0.1 * x.shape[0])  # 300 images per unit
    m = 1 / (1 + np.exp(-np.asarray(p.w, np.float64)))
    k = m * (n + 1) - 0.5  # on-pixel counts, must be integers in [0, n]
    np.testing.assert_allclose(k, np.round(k), atol=2e-3 * n)
    assert k.min() > -0.01 and k.max() < n + 0.01
    # a column is the smoothed mean of 10% of the data: close to the data mean, not equal
    data_mean = x.mean(0)
    for a in range(6):
        assert np.abs(m[:, a] - data_mean).max() < 0.15
    assert np.abs(m[:, 0] - m[:, 1]).max() > 1e-3  # different subsets per unit
    # independent recomputation: draw each unit's subset D(α) with the same keys, count
    # its on-pixels by indexing (NumPy, float64) -> the same w bit for bit
    keys = jax.random.split(jax.random.key(0), 6)
    for a in range(6):
        idx = np.asarray(jax.random.choice(keys[a], x.shape[0], (n,), replace=False))
        assert len(set(idx.tolist())) == n                   # without replacement
        on = np.asarray(x, np.float64)[idx].sum(0)
        mm = (on + 0.5) / (n + 1.0)
        want = (np.log(mm) - np.log1p(-mm)).astype(np.float32)
        np.testing.assert_allclose(np.asarray(p.w[:, a]), want, rtol=1e-6, atol=1e-6)


def test_config_validation():
    with pytest.raises(ValueError, match="n_hidden"):
        M.ModelConfig(n_hidden=1)
    with pytest.raises(ValueError, match="hidden must be"):
        M.ModelConfig(hidden="ternary")
    with pytest.raises(ValueError, match="recognition"):
        M.ModelConfig(recognition="nope")
    with pytest.raises(ValueError, match="one-hot"):
        M.ModelConfig(hidden="binary", recognition="softmax")
    assert M.ModelConfig().trains_visible_bias is False
    assert M.ModelConfig(hidden="binary").trains_visible_bias is True
