"""The chain's joint distribution against enumeration; the closed-form two-step gradient
against autodiff of the surrogate, finite differences, and the NumPy reference."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncl import chain as C
from ncl._compat import enable_x64
from ncl import gradient as G
from ncl import model as M
from benchmarks import numpy_reference
from tests.helpers import CONFIGS, all_binary, chi2_quantile, chi2_stat, random_params


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.hidden}-{c.recognition}")
def test_chain_double_step_joint_distribution(config):
    """(z(0), x'(1)) from x'(0) must follow Ā(x'(0), z) A(z, x'(1)) exactly."""
    D = 3
    p = random_params(jax.random.key(10), D, config.n_hidden, scale=1.5)
    center = jnp.full((D,), 0.4)
    x0 = jnp.array([1.0, 0.0, 1.0])
    n = 120_000
    keys = jax.random.split(jax.random.key(11), n)
    run = jax.jit(jax.vmap(lambda k: C.sample_chain(k, C.init(x0), p, center, config, 2)))
    state, traj = run(keys)
    np.testing.assert_array_equal(np.asarray(traj.x[:, 0, 0]), np.broadcast_to(x0, (n, D)))
    z_idx = np.asarray(M.hidden_state_index(traj.z[:, 0, 0], config))
    x1 = np.asarray(traj.x[:, 1, 0] @ jnp.array([4.0, 2.0, 1.0])).astype(int)
    counts = np.bincount(z_idx * 8 + x1, minlength=config.n_states * 8)
    states = M.enumerate_hidden_states(config)
    pz = np.asarray(M.hidden_state_probs(p, x0, center, config))
    px_given_z = np.exp(np.asarray(jax.vmap(lambda z: M.log_A(p, z, jnp.asarray(
        all_binary(D))))(states)))
    probs = (pz[:, None] * px_given_z).ravel()
    stat, dof = chi2_stat(counts, probs)
    assert stat < chi2_quantile(dof), (stat, dof)


def test_threefry_is_jax_threefry_and_random123_known_answer():
    """The chain's in-loop Threefry-2x32 is bit-identical to JAX's kernel and to the
    Random123 known-answer vector (key 0x13198a2e 0x03707344, counter 0x243f6a88 0x85a308d3)."""
    from jax.extend.random import threefry_2x32
    key = jnp.array([0x13198A2E, 0x03707344], jnp.uint32)
    c0 = jnp.arange(4096, dtype=jnp.uint32) * jnp.uint32(2654435761)
    c1 = jnp.arange(4096, dtype=jnp.uint32)[::-1]
    a, b = C.threefry2x32(key[0], key[1], c0, c1)
    ref = np.asarray(threefry_2x32(key, jnp.concatenate([c0, c1])))
    np.testing.assert_array_equal(np.concatenate([a, b]), ref)
    kat = C.threefry2x32(key[0], key[1], jnp.uint32(0x243F6A88), jnp.uint32(0x85A308D3))
    assert [int(v) for v in kat] == [0xC4923A9C, 0x483DF7A0]


@pytest.mark.parametrize("D", [8, 9])
def test_visible_marginals_every_unit_even_and_odd_D(D):
    """Each visible unit (both members of a packed pair, and the unpaired last unit for
    odd D) has P(x'_j(1) = 1) = Σ_z Ā(x'(0), z) σ(h_j(z)): binomial test, 5 SE per unit
    (false-alarm rate about 1e-5 over the units)."""
    config = M.ModelConfig(n_hidden=3)
    p = random_params(jax.random.key(4), D, 3, scale=1.5)
    center = jnp.full((D,), 0.3)
    x0 = (jnp.arange(D) % 3 == 0).astype(jnp.float32)
    n = 60_000
    keys = jax.random.split(jax.random.key(12), n)
    run = jax.jit(jax.vmap(lambda k: C.sample_chain(k, C.init(x0), p, center, config, 2)))
    _, traj = run(keys)
    freq = np.asarray(traj.x[:, 1, 0]).mean(0)
    pz = np.asarray(M.hidden_state_probs(p, x0, center, config), np.float64)
    mu = np.asarray(jax.nn.sigmoid(M.visible_logits(p, M.enumerate_hidden_states(config))),
                    np.float64)
    expect = pz @ mu
    se = np.sqrt(expect * (1 - expect) / n)
    assert np.all(np.abs(freq - expect) < 5 * se + 1e-9), (freq, expect)


@pytest.mark.parametrize("recognition", ["paper", "softmax"])
def test_onehot_draw_is_right_for_extreme_hidden_logits(recognition):
    """With every hidden logit near -1000 (sigmoid underflows to 0 in float32) the one-hot
    draw still follows p(α) ∝ σ(g_α) (≈ e^{g_α}) or softmax(g), not a fixed state."""
    config = M.ModelConfig(n_hidden=3, recognition=recognition)
    g = jnp.array([[-1000.0, -1001.0, -1500.0]])
    u = (jnp.arange(100_000, dtype=jnp.float32) + 0.5) / 100_000
    alpha = jax.vmap(lambda ui: M.categorical_from_uniform(
        ui[None], M._onehot_sampling_logits(g, config))[0])(u)
    freq = np.bincount(np.asarray(alpha), minlength=3) / u.size
    expect = np.asarray(jax.nn.softmax(jnp.array([0.0, -1.0, -500.0])))
    np.testing.assert_allclose(freq, expect, atol=2e-5)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.hidden}-{c.recognition}")
def test_chain_hidden_logits_and_their_reuse_in_the_gradient(config):
    """sample_chain_with_logits returns g = wbar (x' − c) + abar of the visited states (same
    samples as sample_chain), and the gradient given them equals the gradient without."""
    D = 9
    p = random_params(jax.random.key(5), D, config.n_hidden)
    center = jnp.full((D,), 0.4)
    state = C.init((jax.random.uniform(jax.random.key(6), (2, D)) < 0.5).astype(jnp.float32))
    s1, traj, g = C.sample_chain_with_logits(jax.random.key(7), state, p, center, config, 6)
    s2, traj2 = C.sample_chain(jax.random.key(7), state, p, center, config, 6)
    np.testing.assert_array_equal(traj.x, traj2.x)
    np.testing.assert_array_equal(traj.z, traj2.z)
    np.testing.assert_array_equal(s1.x, s2.x)
    np.testing.assert_allclose(g, M.hidden_logits(p, traj.x, center), rtol=1e-5, atol=1e-5)
    batch = (jax.random.uniform(jax.random.key(8), (5, D)) < 0.5).astype(jnp.float32)
    g1, ll1 = G.two_step_gradient(p, traj, batch, center, config, hidden_logits=g)
    g0, ll0 = G.two_step_gradient(p, traj, batch, center, config)
    chex.assert_trees_all_close(g1, g0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ll1, ll0, rtol=1e-6)
    with pytest.raises(ValueError, match="hidden_logits"):
        G.two_step_gradient(p, traj, batch, center, config, hidden_logits=g[:, :, :1])


def test_chain_state_is_persistent_and_shapes():
    config = M.ModelConfig(n_hidden=4)
    p = random_params(jax.random.key(0), 7, 4)
    state = C.init(jnp.zeros((2, 7)))
    new, traj = C.sample_chain(jax.random.key(1), state, p, jnp.zeros(7), config, 5)
    chex.assert_shape(traj.x, (5, 2, 7))
    chex.assert_shape(traj.z, (5, 2, 4))
    chex.assert_shape(new.x, (2, 7))
    np.testing.assert_array_equal(traj.z.sum(-1), 1.0)
    # step() is the same transition kernel: one step from the same state, valid shapes
    s1, t1 = C.step(jax.random.key(2), state, p, jnp.zeros(7), config)
    chex.assert_shape(t1.x, (1, 2, 7))
    np.testing.assert_array_equal(t1.x[0], state.x)


def _random_problem(key, config, D=9, T=5, Cn=2, N=7):
    k = jax.random.split(key, 6)
    p = random_params(k[0], D, config.n_hidden)
    if not config.trains_visible_bias:
        p = p._replace(a=jnp.zeros(D))
    xs = (jax.random.uniform(k[1], (T, Cn, D)) < 0.4).astype(jnp.float32)
    if config.hidden == "onehot":
        zs = jax.nn.one_hot(jax.random.randint(k[2], (T, Cn), 0, config.n_hidden),
                            config.n_hidden)
    else:
        zs = (jax.random.uniform(k[2], (T, Cn, config.n_hidden)) < 0.5).astype(jnp.float32)
    batch = (jax.random.uniform(k[3], (N, D)) < 0.5).astype(jnp.float32)
    mask = jnp.array([1, 1, 0, 1, 1, 0, 1], jnp.float32)[:N]
    center = jax.random.uniform(k[4], (D,))
    return p, C.Trajectory(xs, zs), batch, center, mask


ALL_CONFIGS = CONFIGS + [M.ModelConfig(n_hidden=3, hidden="onehot", learn_visible_bias=True)]


@pytest.mark.parametrize("use_jit", [True, False], ids=["jit", "nojit"])
@pytest.mark.parametrize("config", ALL_CONFIGS,
                         ids=lambda c: f"{c.hidden}-{c.recognition}-a{c.trains_visible_bias}")
def test_closed_form_equals_autodiff_surrogate(config, use_jit):
    """Both gradient forms agree to float32 round-off, under jit and without it."""
    wrap = (lambda f: jax.jit(f, static_argnums=4)) if use_jit else (lambda f: f)
    closed_fn, auto_fn = wrap(G.two_step_gradient), wrap(G.autodiff_gradient)
    for seed in range(3):
        p, traj, batch, center, mask = _random_problem(jax.random.key(seed), config)
        closed = closed_fn(p, traj, batch, center, config, mask)
        auto = auto_fn(p, traj, batch, center, config, mask)
        for name in M.Params._fields:
            np.testing.assert_allclose(getattr(closed[0], name), getattr(auto[0], name),
                                       rtol=2e-5, atol=2e-6, err_msg=name)
        np.testing.assert_allclose(closed[1], auto[1], rtol=1e-6)


def test_closed_form_gradient_matches_finite_differences_float64():
    """Closed form vs central finite differences of the surrogate (float64, all params)."""
    with enable_x64(True):
        for config in ALL_CONFIGS:
            p, traj, batch, center, mask = _random_problem(jax.random.key(5), config, D=5, T=3,
                                                           Cn=1, N=4)
            cast = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), t)
            p, traj, batch, center = cast(p), cast(traj), cast(batch), cast(center)
            mask = jnp.asarray(mask[:4], jnp.float64)
            grads, _ = G.two_step_gradient(p, traj, batch, center, config, mask)
            # S with the stop-gradient term frozen at p0: log q(p) - log q(p0)
            log_q0 = M.recognition_log_q(p, traj.x.reshape(-1, 5), traj.z.reshape(
                -1, config.n_hidden), center, config)

            def S(q, traj=traj, config=config, center=center, batch=batch, log_q0=log_q0,
                  mask=mask):
                xs, zs = traj.x.reshape(-1, 5), traj.z.reshape(-1, config.n_hidden)
                lq = M.recognition_log_q(q, xs, zs, center, config)
                la = jax.vmap(lambda x: M.log_A(q, zs, x))(batch)
                val = jax.nn.logsumexp(la + (lq - log_q0)[None], axis=1)
                return float(jnp.sum(mask * val) / jnp.sum(mask))

            eps = 1e-6
            for name in M.Params._fields:
                if name == "a" and not config.trains_visible_bias:
                    assert not np.any(np.asarray(grads.a))
                    continue
                base = getattr(p, name)
                flat = np.asarray(base).ravel()
                for i in range(0, flat.size, max(1, flat.size // 6)):
                    d = np.zeros_like(flat)
                    d[i] = eps
                    plus = p._replace(**{name: base + d.reshape(base.shape)})
                    minus = p._replace(**{name: base - d.reshape(base.shape)})
                    fd = (S(plus) - S(minus)) / (2 * eps)
                    got = float(np.asarray(getattr(grads, name)).ravel()[i])
                    assert abs(fd - got) < 1e-6 + 1e-5 * abs(fd), (config, name, i, fd, got)


@pytest.mark.parametrize("hidden", ["onehot", "binary"])
def test_closed_form_matches_numpy_reference(hidden):
    """An independent NumPy implementation (benchmarks/numpy_reference.py) agrees."""
    ref = numpy_reference
    config = M.ModelConfig(n_hidden=4, hidden=hidden)
    p, traj, batch, center, mask = _random_problem(jax.random.key(7), config, D=12, T=6,
                                                   Cn=1, N=7)
    grads, ll = G.two_step_gradient(p, traj, batch, center, config, mask)
    keep = np.asarray(mask) > 0
    np_params = {k: np.asarray(v, np.float64) for k, v in p._asdict().items()}
    ref_grads, ref_ll = ref.two_step_gradient(
        np_params, np.asarray(traj.x[:, 0], np.float64), np.asarray(traj.z[:, 0], np.float64),
        np.asarray(batch, np.float64)[keep], np.asarray(center, np.float64), hidden=hidden)
    for name in M.Params._fields:
        np.testing.assert_allclose(np.asarray(getattr(grads, name)), ref_grads[name],
                                   rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(float(ll), ref_ll, rtol=1e-5)


def test_mask_equals_truncated_batch():
    config = M.ModelConfig(n_hidden=3)
    p, traj, batch, center, mask = _random_problem(jax.random.key(8), config)
    g_mask, ll_mask = G.two_step_gradient(p, traj, batch, center, config, mask)
    keep = np.asarray(mask) > 0
    g_cut, ll_cut = G.two_step_gradient(p, traj, batch[keep], center, config)
    for name in M.Params._fields:
        np.testing.assert_allclose(getattr(g_mask, name), getattr(g_cut, name), rtol=1e-5,
                                   atol=1e-6)
    np.testing.assert_allclose(ll_mask, ll_cut, rtol=1e-6)
