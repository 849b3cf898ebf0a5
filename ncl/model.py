"""The model: parameters, the two transition kernels A and Ā, exact sampling, App. A1 init.

Layer: the lowest numerical module (imports only the leaves ``_validate`` and ``data``);
every other numerical module builds on it. It also owns the per-state tables every
estimator needs (``log A`` and ``log Ā`` over all hidden states), the one fast softplus,
and the eq. (5) log-likelihood of the data given a hidden occupancy ``p̄``.

Notation follows Baiesi & Rosso (arXiv:2512.11415) and ``docs/model.md``:

* visible ``x ∈ {0,1}^D``; hidden ``z`` is either one of ``L`` one-hot vectors
  (``hidden="onehot"``, the paper's experiments) or ``z ∈ {0,1}^L`` (``"binary"``,
  factorised, eq. 11);
* generative kernel A (z → x), eqs. (8)/(10): ``h = w z + a``,
  ``log A(z, x) = Σ_i [x_i h_i − softplus(h_i)]``;
* recognition kernel Ā (x → z), eqs. (9)/(11)/(19), with the centering trick of
  eq. (17): ``g = wbar (x − c) + abar``, ``c`` the data mean (or 0 without centering).

Sizes: one letter per size, used in the docstrings of all numerical modules
(``model``, ``markov``, ``chain``, ``gradient``, ``exact``, ``rbm``, ``estimators``,
``monitor``, ``trajectory``, ``sharding``, ``training``, ``diagnostics``):

* ``D`` visible units; ``L`` hidden units; ``S`` hidden states (``ModelConfig.n_states``:
  ``L`` one-hot, ``2**L`` binary);
* ``N`` data rows of a minibatch (``N_D`` of the whole data set); ``T`` double steps of
  a chain segment;
  ``C`` parallel chains; ``E`` ensemble members (seeds);
* ``K`` Rao–Blackwell samples ``x_k ~ A(z, ·)``; ``G`` jackknife groups; ``Q`` classes
  of a classifier; ``P`` a batch of occupancy vectors.

Epoch counts are written ``n_epochs`` (no letter). Every function works on one model;
ensembles are obtained with ``jax.vmap``. Leading batch dimensions written ``...`` are
supported where stated.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ncl import _validate as _v
from ncl.data import check_data

Array = jax.Array

HIDDEN_KINDS = ("onehot", "binary")
RECOGNITION_KINDS = ("paper", "softmax", "eq19-exact")
MAX_ENUMERABLE_BINARY_UNITS = 20
MAX_BINARY_UNITS = 12
"""Largest ``L`` for binary hidden units in the enumeration-based diagnostics and the
eq. (5) likelihood (:func:`check_enumerable`; ``S = 4096``)."""

CHUNK_ELEMENTS = 1 << 23
"""Chunk sizes are capped so that one chunk's largest intermediate has about this many
float32 elements (32 MiB per model); matters only for binary hidden units with large S."""


class Params(NamedTuple):
    """Parameters of one model (a pytree).

    Attributes:
      w: ``(D, L)`` generative weights, kernel A (z → x), eq. (8).
      a: ``(D,)`` visible biases (fixed at 0 for one-hot hidden units, eq. 20).
      wbar: ``(L, D)`` recognition weights, kernel Ā (x → z), eq. (9); independent of ``w``.
      abar: ``(L,)`` hidden biases.
    """

    w: Array
    a: Array
    wbar: Array
    abar: Array


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Static description of the model architecture (plain, hashable data).

    Attributes:
      n_hidden: ``L``, the number of hidden units (one-hot states or bits).
      hidden: ``"onehot"`` (default, the paper's experiments) or ``"binary"`` (eq. 11).
      recognition: for one-hot hidden units, how Ā is normalised and differentiated:
        ``"paper"`` (default; sample with eq. 19, gradient with ν = sigmoid(g) as in
        eqs. 15–17), ``"softmax"`` (α ~ softmax(g), ν = softmax(g)) or
        ``"eq19-exact"`` (eq. 19 sampling with the gradient of its own log-probability).
        Ignored (must stay ``"paper"``) for binary hidden units.
      centering: subtract the data mean in the exponent of Ā (eq. 17). Default on.
      learn_visible_bias: whether ``a`` is trained. ``None`` means the paper's choice:
        fixed at 0 for one-hot hidden units (eq. 20), learned for binary ones.
    """

    n_hidden: int = 6
    hidden: str = "onehot"
    recognition: str = "paper"
    centering: bool = True
    learn_visible_bias: bool | None = None

    def __post_init__(self):
        _v.check_fields(self, _MODEL_RULES)
        if self.hidden == "binary" and self.recognition != "paper":
            raise ValueError(
                "recognition options 'softmax' and 'eq19-exact' apply to one-hot hidden units "
                "only; binary hidden units always use the factorised kernel of eq. (11)")

    @property
    def trains_visible_bias(self) -> bool:
        if self.learn_visible_bias is None:
            return self.hidden == "binary"
        return bool(self.learn_visible_bias)

    @property
    def n_states(self) -> int:
        """Number of hidden states: ``L`` (one-hot) or ``2**L`` (binary)."""
        return self.n_hidden if self.hidden == "onehot" else 2 ** self.n_hidden


_MODEL_RULES = {
    "n_hidden": (_v.integer, dict(min=2, label="n_hidden (L)")),
    "hidden": (_v.choice, dict(choices=HIDDEN_KINDS)),
    "recognition": (_v.choice, dict(choices=RECOGNITION_KINDS)),
    "centering": (_v.boolean, {}),
    "learn_visible_bias": (_v.boolean, dict(optional=True)),
}
"""One type-and-range rule per :class:`ModelConfig` field (:mod:`ncl._validate`)."""


# ----------------------------------------------------------------------------- validation

def check_params(params, config: ModelConfig, n_visible: int | None = None,
                 n_members: int | None = None, name: str = "params",
                 what: str = "the data") -> int:
    """Check the shapes of ``params`` against ``config`` (and the data width ``n_visible``)
    before anything reaches JAX, so a mismatch is one clear ``ValueError``.

    ``n_members``: ``None`` for one model (``w (D, L)``), or the expected size of a
    leading member axis (``-1``: any size), e.g. ``w (E, D, L)`` for an ensemble.
    ``what`` names the array whose width is ``n_visible`` in the message.
    Works on concrete arrays and on tracers (only shapes are read). Returns ``D``.
    """
    if not isinstance(params, Params):
        raise TypeError(f"{name} must be ncl.model.Params (w, a, wbar, abar), got "
                        f"{type(params).__name__}")
    lead = () if n_members is None else (None,)
    shapes = {f: tuple(getattr(params, f).shape) for f in Params._fields}
    w = shapes["w"]
    if len(w) != 2 + len(lead):
        wanted = "one model, w of shape (D, L)" if n_members is None else \
            "an ensemble, w of shape (members, D, L)"
        raise ValueError(f"{name}.w has shape {w}, but {wanted} is expected"
                         + ("; pick one member with ncl.training.member(state, i)"
                            if n_members is None and len(w) == 3 else "")
                         + ("; use the params of an ensemble (train_ensemble)"
                            if n_members is not None and len(w) == 2 else ""))
    D, L = w[-2:]
    E = w[0] if lead else None
    if n_members not in (None, -1) and E != n_members:
        raise ValueError(f"{name} hold {E} members, expected {n_members}")
    if L != config.n_hidden:
        raise ValueError(f"{name}.w has {L} hidden units (shape {w}) but the model config "
                         f"says n_hidden (L) = {config.n_hidden}; use the config the "
                         "parameters were trained with")
    m = () if E is None else (E,)
    expected = {"w": m + (D, L), "a": m + (D,), "wbar": m + (L, D), "abar": m + (L,)}
    for f, shp in expected.items():
        if shapes[f] != shp:
            raise ValueError(f"{name}.{f} has shape {shapes[f]}, expected {shp} "
                             f"(D = {D} visible units, L = {L} hidden units)")
    if n_visible is not None and D != n_visible:
        raise ValueError(f"{what} has {n_visible} columns but {name} were built for "
                         f"D = {D} visible units; pass data of the width the model was "
                         "trained on")
    return D


# ----------------------------------------------------------------------------- kernels

def visible_logits(params: Params, z: Array) -> Array:
    """``h = w z + a`` (eq. 10). ``z (..., L)`` → ``h (..., D)``."""
    return z @ params.w.T + params.a


def hidden_logits(params: Params, x: Array, center: Array) -> Array:
    """``g = wbar (x − c) + abar`` (eqs. 11, 17). ``x (..., D)``, ``center (D,)`` → ``(..., L)``."""
    return (x - center) @ params.wbar.T + params.abar


def log_A(params: Params, z: Array, x: Array) -> Array:
    """``log A(z, x) = Σ_i [x_i h_i − softplus(h_i)]`` (eq. 10), exact in log space.

    ``z (..., L)``, ``x (..., D)`` (broadcasting leading dims) → ``(...)``.
    """
    h = visible_logits(params, z)
    return jnp.sum(x * h - jax.nn.softplus(h), axis=-1)


def softplus(h: Array) -> Array:
    """``log(1 + e^h)`` as ``max(h, 0) + log1p(e^-|h|)``: the function ``jax.nn.softplus``
    computes, in a form XLA's CPU backend evaluates ~3x faster."""
    return jnp.maximum(h, 0) + jnp.log1p(jnp.exp(-jnp.abs(h)))


def log_A_matrix(params: Params, x: Array, zs: Array) -> Array:
    """``ℓ[n, s] = log A(z_s, x_n)`` (eq. 10) for data ``x (N, D)`` and given hidden
    states ``zs (S', L)`` (e.g. the ``T·C`` chain samples, or all ``S`` states) →
    ``(N, S')``. Uses ``x·(w z + a) = (x w)·z + x·a``: an ``(N, L) @ (L, S')`` product,
    never an ``(N, S', D)`` tensor; :func:`softplus` for the normaliser."""
    h = visible_logits(params, zs)                                   # (S', D)
    softplus_sum = jnp.sum(softplus(h), axis=-1)                     # (S',)
    return (x @ params.w) @ zs.T + (x @ params.a)[:, None] - softplus_sum[None, :]


def log_A_all_states(params: Params, x: Array, config: ModelConfig) -> Array:
    """``log A(z, x_n)`` for all ``S`` hidden states (eq. 10): ``x (N, D)`` → ``(N, S)``,
    states ordered as :func:`enumerate_hidden_states`.

    The route of the eq. (5) likelihood and the monitor, ``x @ h(z)ᵀ − Σ softplus(h(z))``
    with ``jax.nn.softplus`` (the same values as :func:`log_A_matrix` of all states up
    to float32 round-off; each keeps its own arithmetic so results stay bit-stable).
    """
    states = enumerate_hidden_states(config)
    h = visible_logits(params, states)                       # (S, D)
    return x @ h.T - jnp.sum(jax.nn.softplus(h), axis=-1)


def _onehot_sampling_logits(g: Array, config: ModelConfig) -> Array:
    """Unnormalised log-probabilities of the one-hot state α given g."""
    if config.recognition == "softmax":
        return g
    return jax.nn.log_sigmoid(g)  # eq. (19): p(α|x) ∝ sigmoid(g_α)


def log_Abar(params: Params, x: Array, z: Array, center: Array, config: ModelConfig) -> Array:
    """``log Ā(x, z)``: log-probability with which the sampler draws ``z`` from ``x``.

    Binary: eq. (11). One-hot: eq. (19) (``paper``, ``eq19-exact``) or softmax.
    ``x (..., D)``, ``z (..., L)`` → ``(...)``.
    """
    g = hidden_logits(params, x, center)
    if config.hidden == "binary":
        return jnp.sum(z * jax.nn.log_sigmoid(g) + (1 - z) * jax.nn.log_sigmoid(-g), axis=-1)
    logits = _onehot_sampling_logits(g, config)
    return jnp.sum(z * logits, axis=-1) - jax.nn.logsumexp(logits, axis=-1)


def recognition_log_q(params: Params, x: Array, z: Array, center: Array,
                      config: ModelConfig) -> Array:
    """The log-probability ``log q(z|x)`` whose gradient the two-step rule uses (docs/model.md,
    training step 4).

    For binary units and for the paper-literal one-hot default it is the factorised
    eq. (11) form ``Σ_β [z_β log σ(g_β) + (1 − z_β) log σ(−g_β)]``; for ``softmax``
    and ``eq19-exact`` it is the sampling kernel's own ``log Ā``.
    ``x (..., D)``, ``z (..., L)`` → ``(...)``.
    """
    if config.hidden == "binary" or config.recognition == "paper":
        g = hidden_logits(params, x, center)
        return jnp.sum(z * jax.nn.log_sigmoid(g) + (1 - z) * jax.nn.log_sigmoid(-g), axis=-1)
    return log_Abar(params, x, z, center, config)


def recognition_score_factor(g: Array, z: Array, config: ModelConfig) -> Array:
    """``∂ log q(z|x) / ∂g`` for the configured recognition option.

    ``(z − ν)`` with ``ν = sigmoid(g)`` (eq. 15; binary and paper default),
    ``ν = softmax(g)`` (softmax), or ``(z − ν) ⊙ (1 − σ(g))`` with ``ν = p(·|x)`` of
    eq. (19) (eq19-exact). ``g, z (..., L)`` → ``(..., L)``.
    """
    if config.hidden == "binary" or config.recognition == "paper":
        return z - jax.nn.sigmoid(g)
    if config.recognition == "softmax":
        return z - jax.nn.softmax(g, axis=-1)
    nu = jax.nn.softmax(jax.nn.log_sigmoid(g), axis=-1)
    return (z - nu) * jax.nn.sigmoid(-g)


def hidden_state_probs(params: Params, x: Array, center: Array, config: ModelConfig) -> Array:
    """Ā(x, ·) over all hidden states. ``x (..., D)`` → ``(..., S)`` with S = L or 2**L.

    Binary states are ordered as in :func:`enumerate_hidden_states`.
    """
    g = hidden_logits(params, x, center)
    if config.hidden == "onehot":
        return jax.nn.softmax(_onehot_sampling_logits(g, config), axis=-1)
    states = enumerate_hidden_states(config)
    return jnp.exp(jax.nn.log_sigmoid(g) @ states.T + jax.nn.log_sigmoid(-g) @ (1 - states).T)


def log_abar_from_logits(g: Array, z: Array, config: ModelConfig) -> Array:
    """``ln Ā(x, z)`` (eq. 11 binary; eq. 19 / softmax one-hot) given ``g = g(x)`` (eq. 17).

    ``g (..., L)``, ``z (..., L)`` float rows (bits or one-hot; broadcast) → ``(...)``.
    Same value as :func:`log_Abar`, without recomputing ``g``.
    """
    if config.hidden == "binary":
        return jnp.sum(z * jax.nn.log_sigmoid(g) + (1.0 - z) * jax.nn.log_sigmoid(-g), -1)
    return jnp.sum(z * jax.nn.log_softmax(_onehot_sampling_logits(g, config), -1), -1)


def log_abar_all_states(params: Params, x: Array, center: Array, config: ModelConfig) -> Array:
    """``log Ā(x, z)`` for every hidden state z (the sampling kernel, eq. 11 or 19).

    ``x (..., D)`` → ``(..., S)``, states ordered as :func:`enumerate_hidden_states`.
    Uses matrix products (no ``(..., S, L)`` intermediate for binary units).
    """
    return log_abar_all_states_from_logits(hidden_logits(params, x, center), config)


def log_abar_all_states_from_logits(g: Array, config: ModelConfig) -> Array:
    """:func:`log_abar_all_states` given the hidden logits ``g (..., L)`` of ``x`` (e.g. the
    ones the training chain computed) → ``(..., S)``."""
    if config.hidden == "onehot":
        return jax.nn.log_softmax(_onehot_sampling_logits(g, config), axis=-1)
    states = enumerate_hidden_states(config)
    return jax.nn.log_sigmoid(g) @ states.T + jax.nn.log_sigmoid(-g) @ (1.0 - states).T


def enumerate_hidden_states(config: ModelConfig) -> Array:
    """All hidden states as float32 rows ``(S, L)``: the identity for one-hot, all
    ``2**L`` bit patterns for binary (state ``s`` has bit ``β`` = ``(s >> β) & 1``)."""
    L = config.n_hidden
    if config.hidden == "onehot":
        return jnp.eye(L, dtype=jnp.float32)
    if L > MAX_ENUMERABLE_BINARY_UNITS:
        raise ValueError(
            f"cannot enumerate 2**{L} binary hidden states (limit L <= "
            f"{MAX_ENUMERABLE_BINARY_UNITS}); use fewer hidden units")
    s = jnp.arange(2 ** L, dtype=jnp.uint32)[:, None]
    return ((s >> jnp.arange(L, dtype=jnp.uint32)) & 1).astype(jnp.float32)


def hidden_state_index(z: Array, config: ModelConfig) -> Array:
    """Index of hidden state ``z (..., L)`` in :func:`enumerate_hidden_states` → ``(...)`` int32."""
    if config.hidden == "onehot":
        return jnp.argmax(z, axis=-1).astype(jnp.int32)
    weights = (2 ** jnp.arange(config.n_hidden)).astype(jnp.int32)
    return jnp.sum(z.astype(jnp.int32) * weights, axis=-1)


# ----------------------------------------------------------------------------- sampling

_TWO_POW_32 = 4294967296.0
_TWO_POW_24 = 16777216.0


def bernoulli_thresholds(logits: Array) -> tuple[Array, Array]:
    """Integer thresholds for exact Bernoulli(sigmoid(logits)) draws from uint32 bits.

    Returns ``(threshold uint32, flip bool)``, both shaped like ``logits``. With ``u``
    uniform on ``{0, …, 2**32 − 1}``, ``(u < threshold) XOR flip`` is 1 with probability
    ``sigmoid(logits)`` up to ``2**-32`` absolute (the smaller of p and 1 − p is encoded, so
    both tails are resolved to 32 bits; ``jax.random.bernoulli`` resolves 23 bits).
    """
    q = jax.nn.sigmoid(-jnp.abs(logits))  # = min(p, 1 - p) <= 1/2, accurate in both tails
    threshold = (q * _TWO_POW_32).astype(jnp.uint32)  # floor; q <= 0.5 so no overflow
    return threshold, logits >= 0


def bernoulli_from_bits(bits: Array, threshold: Array, flip: Array) -> Array:
    """Bernoulli draws (float32 0/1) from uint32 ``bits`` and :func:`bernoulli_thresholds`."""
    return jnp.logical_xor(bits < threshold, flip).astype(jnp.float32)


def uniform_from_bits(bits: Array) -> Array:
    """Uniform float32 on ``[0, 1)`` from uint32 bits (top 24 bits, exactly representable)."""
    return (bits >> 8).astype(jnp.float32) * (1.0 / _TWO_POW_24)


_UNROLLED_CDF_MAX = 32  # categorical draws over at most this many states add in unrolled form


def categorical_from_uniform(u: Array, log_weights: Array) -> Array:
    """Inverse-CDF draw of an index from unnormalised ``log_weights (..., S)``; ``u (...)``.

    The weights are ``exp(log_weights − max)`` (the largest is 1, so nothing underflows
    to an all-zero CDF however extreme the logits), and index ``k`` is the number of
    partial sums ``W_0 + … + W_j`` (``j < S − 1``) that are ``<= u · W_total``. With ``u``
    from :func:`uniform_from_bits` (24 bits) and float32 sums each state's probability is
    resolved to about ``2**-24`` (6e-8) absolute: a state with a smaller probability may
    never be drawn. (Visible bits, drawn by :func:`bernoulli_from_bits`, are resolved to
    ``2**-32``.) For ``S <= 32`` the partial sums are written out, which XLA's CPU backend
    fuses (``cumsum`` is a slower windowed reduction there).
    """
    w = jnp.exp(log_weights - jnp.max(log_weights, axis=-1, keepdims=True))
    S = w.shape[-1]
    if S <= _UNROLLED_CDF_MAX:
        parts = [w[..., 0]]
        for k in range(1, S):
            parts.append(parts[-1] + w[..., k])
        cdf = jnp.stack(parts, axis=-1)
    else:
        cdf = jnp.cumsum(w, axis=-1)
    below = cdf[..., :-1] <= (u * cdf[..., -1])[..., None]
    return jnp.sum(below.astype(jnp.int32), axis=-1)


def sample_visible(key: Array, params: Params, z: Array) -> Array:
    """Draw ``x ~ A(z, ·)`` (eq. 10). ``z (..., L)`` → ``x (..., D)`` float32 in {0, 1}."""
    h = visible_logits(params, z)
    thr, flip = bernoulli_thresholds(h)
    return bernoulli_from_bits(jax.random.bits(key, h.shape, jnp.uint32), thr, flip)


def sample_hidden(key: Array, params: Params, x: Array, center: Array,
                  config: ModelConfig) -> Array:
    """Draw ``z ~ Ā(x, ·)`` (eq. 11 or 19). ``x (..., D)`` → ``z (..., L)`` float32."""
    g = hidden_logits(params, x, center)
    if config.hidden == "binary":
        thr, flip = bernoulli_thresholds(g)
        return bernoulli_from_bits(jax.random.bits(key, g.shape, jnp.uint32), thr, flip)
    u = uniform_from_bits(jax.random.bits(key, g.shape[:-1], jnp.uint32))
    alpha = categorical_from_uniform(u, _onehot_sampling_logits(g, config))
    return jax.nn.one_hot(alpha, config.n_hidden, dtype=jnp.float32)


# ----------------------------------------------------------------------------- init

def data_center(data: Array, config: ModelConfig) -> Array:
    """The centering vector ``c`` of eq. (17): the data mean ``(D,)``, or zeros if off."""
    if config.centering:
        return jnp.mean(data, axis=0)
    return jnp.zeros(data.shape[1], data.dtype)


def init_params(key: Array, data: Array, config: ModelConfig,
                subset_fraction: float = 0.1) -> Params:
    """App. A1 initialisation.

    ``wbar = 0``, ``abar = 0``, ``a = 0``; for each hidden unit α a random subset
    D(α) of ``round(subset_fraction · N_D)`` data points (without replacement) gives
    ``w[:, α] = logit((k + 0.5) / (n + 1))``, k the on-pixels among the n images.

    Args:
      key: PRNG key.
      data: ``(N_D, D)`` binary data.
      config: model configuration.
    Returns:
      :class:`Params` with ``w (D, L)``, ``a (D,)``, ``wbar (L, D)``, ``abar (L,)``, float32.
    """
    data = jnp.asarray(data)
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"data must be a non-empty 2-D array (n_samples, n_visible), got "
                         f"shape {tuple(data.shape)}")
    n_data, D = data.shape
    L = config.n_hidden
    n = max(1, int(round(subset_fraction * n_data)))

    def unit_subset(k):  # 0/1 indicator of the subset D(α), (N_D,)
        idx = jax.random.choice(k, n_data, (n,), replace=False)
        return jnp.zeros((n_data,), jnp.float32).at[idx].set(1.0)

    # on-pixel counts k as one (L, N_D) @ (N_D, D) product rather than a gather of
    # (L, n, D) images (5.6 MB per model at the paper's sizes, 560 MB for all of MNIST at
    # L = 30, paid by every member of an ensemble); the counts are exact integers either way
    subsets = jax.vmap(unit_subset)(jax.random.split(key, L))          # (L, N_D)
    on = jnp.matmul(subsets, data.astype(jnp.float32),
                    precision=jax.lax.Precision.HIGHEST)               # (L, D)
    m = (on + 0.5) / (n + 1.0)
    w = (jnp.log(m) - jnp.log1p(-m)).T
    return Params(w=w.astype(jnp.float32), a=jnp.zeros((D,), jnp.float32),
                  wbar=jnp.zeros((L, D), jnp.float32), abar=jnp.zeros((L,), jnp.float32))


# ----------------------------------------------------------------------------- likelihood given p̄

def check_enumerable(config: ModelConfig) -> int:
    """Number of hidden states S; ``ValueError`` for binary hidden units with
    L > :data:`MAX_BINARY_UNITS` (what the enumeration-based code refuses)."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    if config.hidden == "binary" and config.n_hidden > MAX_BINARY_UNITS:
        raise ValueError(
            f"diagnostics enumerate the 2**L hidden states; binary hidden units with "
            f"L = {config.n_hidden} > {MAX_BINARY_UNITS} are not supported "
            f"({2 ** config.n_hidden} states); use n_hidden (L) <= {MAX_BINARY_UNITS} or "
            "one-hot hidden units")
    return config.n_states


def log_likelihood_given_occupancy(params: Params, data: Array, log_p_bar: Array,
                                   config: ModelConfig, chunk: int = 1024) -> Array:
    """Exact log-likelihood given ``p̄``, eqs. (5), (7), App. A3:
    ``mean_n logsumexp_z [log p̄(z) + log A(z, x_n)]`` over the whole data set.

    (Not to be confused with :func:`ncl.exact.log_likelihood` and
    :func:`ncl.rbm.log_likelihood`, ``(params, data, center, config, mask)``, the exact
    eq. (7) with the model's own exact stationary state.)

    The data are processed ``chunk`` rows at a time (``lax.map`` over chunks; the last
    chunk is padded and masked), so memory is ``O(chunk · (D + P · S))``; ``chunk`` is
    lowered if ``chunk · P · S`` exceeds :data:`CHUNK_ELEMENTS`. States with
    ``p̄ = 0`` (``log p̄ = −inf``) contribute nothing.

    Args:
      params: model parameters (only ``w``, ``a`` are used).
      data: ``(N, D)`` binary data.
      log_p_bar: ``(S,)`` or a batch ``(P, S)`` of log occupancies.
      config: model configuration.
      chunk: data rows per chunk.
    Returns:
      scalar (or ``(P,)``), nats per data point.

    Jittable; called with concrete arrays it first checks the data (2-D, non-empty,
    finite, 0/1) and ``log_p_bar`` (log-probabilities, ``<= 0``) on the host. Binary
    hidden units up to :data:`MAX_ENUMERABLE_BINARY_UNITS` (the cost is linear in ``S``,
    unlike the ``S × S`` matrix ``M`` that :func:`check_enumerable` limits).
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    if config.hidden == "binary" and config.n_hidden > MAX_ENUMERABLE_BINARY_UNITS:
        raise ValueError(f"the log-likelihood enumerates the 2**L hidden states; binary "
                         f"L = {config.n_hidden} > {MAX_ENUMERABLE_BINARY_UNITS} is not "
                         f"supported; use fewer hidden units or one-hot hidden units")
    if not isinstance(chunk, (int, np.integer)) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    if not isinstance(data, jax.core.Tracer):
        data = check_data(data)
    elif data.ndim != 2 or 0 in data.shape:
        raise ValueError(f"data must be a non-empty 2-D array (N, D), got shape {data.shape}")
    check_params(params, config, data.shape[1])
    S = config.n_states
    lp = jnp.asarray(log_p_bar, jnp.float32)
    if lp.ndim not in (1, 2) or lp.shape[-1] != S:
        raise ValueError(f"log_p_bar must have shape ({S},) or (P, {S}) (log occupancy of "
                         f"the {S} hidden states), got {tuple(lp.shape)}")
    if not isinstance(lp, jax.core.Tracer):
        v = np.asarray(lp)
        if np.isnan(v).any() or (v > 1e-4).any():
            raise ValueError("log_p_bar must hold log-probabilities (<= 0, -inf allowed, no "
                             "NaN); pass jnp.log(p_bar), not p_bar")
    return _log_likelihood_given_occupancy(params, data, lp, config, int(chunk))


@functools.partial(jax.jit, static_argnames=("config", "chunk"))
def _log_likelihood_given_occupancy(params: Params, data: Array, lp: Array,
                                    config: ModelConfig, chunk: int) -> Array:
    S = config.n_states
    single = lp.ndim == 1
    lp = lp[None] if single else lp
    N, D = data.shape
    c = max(1, min(chunk, N, CHUNK_ELEMENTS // (S * (lp.shape[0] + 1))))
    n_chunks = -(-N // c)
    pad = n_chunks * c - N
    x = jnp.pad(jnp.asarray(data, jnp.float32), ((0, pad), (0, 0))).reshape(n_chunks, c, D)
    mask = (jnp.arange(n_chunks * c) < N).reshape(n_chunks, c)

    def one(args):
        xc, m = args
        la = log_A_all_states(params, xc, config)                    # (c, S)
        ll = jax.nn.logsumexp(lp[:, None, :] + la[None], axis=-1)    # (P, c)
        return jnp.sum(jnp.where(m[None], ll, 0.0), axis=-1)         # (P,)

    total = jnp.sum(jax.lax.map(one, (x, mask)), axis=0) / N
    return total[0] if single else total
