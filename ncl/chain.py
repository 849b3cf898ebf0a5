"""The alternating persistent chain x'(t) → z(t) → x'(t+1) (paper Fig. 1, eq. 18).

Layer: above :mod:`ncl.model` and :mod:`ncl.markov`; everything that runs a chain
(gradient estimators, monitor, trajectory, training, diagnostics, workflows) runs it
through this module. Sizes as in :mod:`ncl.model` (``T`` double steps, ``C`` chains).

BlackJAX-style pure functions: :func:`init` builds a :class:`ChainState`,
:func:`step` performs one double step, :func:`sample_chain` runs ``T`` double steps
with ``lax.scan`` and returns the (x'(t), z(t)) pairs the two-step gradient needs;
:func:`run_segments` runs consecutive segments (one key each) and keeps only what a
``record(traj)`` function extracts from each (the one segment runner of the package);
:func:`kernel` returns the ``(init, step)`` pair of one double step for users who write
their own loop. Keys are explicit and never stored.

Speed without approximation:

* Every Bernoulli draw compares 32 uniform random bits with an integer threshold
  (:func:`ncl.model.bernoulli_thresholds`), which is exact to ``2**-32``; the one-hot
  hidden draw is an inverse-CDF draw (:func:`ncl.model.categorical_from_uniform`)
  resolved to ``2**-24``.
* The random bits are Threefry-2x32 (20 rounds, the generator behind JAX's default
  PRNG) in counter mode, written out unrolled so that XLA fuses it with its consumer:
  the segment key is expanded into one 64-bit Threefry key (with ``jax.random.bits``,
  so any JAX PRNG implementation can drive it) and the block for counter
  ``(hi, lo) = (2t + stream, index)`` gives double step ``t`` its bits. One block is 64
  bits, so one block draws a *pair* of visible units (both output words are used:
  unit ``h`` compares the first word, unit ``h + ceil(D/2)`` the second). The bits are
  made inside the scanned step, in the same XLA loop as the comparison, and never
  stored.
* The visible state travels through the scan as those pairs, two bits per byte, and
  is expanded to float32 where needed (the hidden matrix-vector product, the returned
  trajectory).
* For one-hot hidden units the ``L`` possible visible distributions ``A(α, ·)`` are
  tabulated once per segment as thresholds, so a step is a matrix-vector product, an
  inverse-CDF categorical draw, and a compare of the fresh bits with row ``α`` of the
  table.

The bits of double step ``t`` depend only on the key, ``t``, the chain and the unit
index, so a segment is deterministic given its key, whatever the batching (vmap over
members, sharding over devices).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

from ncl.model import (ModelConfig, Params, _onehot_sampling_logits, bernoulli_thresholds,
                       categorical_from_uniform, check_params, uniform_from_bits,
                       visible_logits)

Array = jax.Array

_U32 = jnp.uint32
_STREAM_VISIBLE, _STREAM_HIDDEN = 0, 1


class ChainState(NamedTuple):
    """Persistent fantasy particles. ``x (C, D)`` float32 in {0,1}: ``x'(0)`` of the next
    segment."""

    x: Array


class Trajectory(NamedTuple):
    """One chain segment of ``T`` double steps for ``C`` parallel chains.

    Attributes:
      x: ``(T, C, D)`` visible states ``x'(t)``, t = 0..T−1 (eq. 18).
      z: ``(T, C, L)`` hidden states ``z(t) ~ Ā(x'(t), ·)`` as float32 rows (one-hot or bits).
    """

    x: Array
    z: Array


def init(x0: Array) -> ChainState:
    """Chain state from initial visible configurations ``x0 (C, D)`` (or ``(D,)`` for C = 1)."""
    x0 = jnp.asarray(x0, jnp.float32)
    if x0.ndim == 1:
        x0 = x0[None]
    chex.assert_rank(x0, 2)
    return ChainState(x=x0)


# ----------------------------------------------------------------------------- random bits

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotl(x: Array, r: int) -> Array:
    return (x << _U32(r)) | (x >> _U32(32 - r))


def threefry2x32(k0: Array, k1: Array, c0: Array, c1: Array) -> tuple[Array, Array]:
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011), bit-identical to JAX's.

    ``k0, k1``: uint32 scalars, the key; ``c0, c1``: uint32 arrays (broadcast), the
    64-bit counter. Returns the two uint32 output words. Unrolled in plain ``jnp`` so
    that XLA fuses it into the consumer (JAX's own CPU lowering is a rolled loop).
    """
    ks = (k0, k1, k0 ^ k1 ^ _U32(0x1BD11BDA))
    x0, x1 = c0 + ks[0], c1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + _U32(i + 1)
    return x0, x1


def _segment_key(key: Array) -> Array:
    """The segment's 64-bit Threefry key as two uint32 words."""
    return jax.random.bits(key, (2,), _U32)


def _block(kw: Array, t: Array, stream: int, shape: tuple[int, ...]) -> tuple[Array, Array]:
    """The Threefry block of every index of ``shape`` (row-major) at step ``t``."""
    lo = jax.lax.broadcasted_iota(_U32, shape, len(shape) - 1)
    stride = shape[-1]
    for axis in range(len(shape) - 2, -1, -1):
        lo = lo + jax.lax.broadcasted_iota(_U32, shape, axis) * _U32(stride)
        stride *= shape[axis]
    hi = jnp.broadcast_to(_U32(2) * t.astype(_U32) + _U32(stream), shape)
    return threefry2x32(kw[0], kw[1], lo, hi)


def _words(kw: Array, t: Array, stream: int, shape: tuple[int, ...]) -> Array:
    """One uint32 word per index of ``shape`` (the two outputs of its block, xored)."""
    a, b = _block(kw, t, stream, shape)
    return a ^ b


# ----------------------------------------------------------------------------- pairs
#
# Unit h of the first half and unit h + H of the second half (H = ceil(D/2)) form a
# pair: they share one Threefry block (first and second output word) and one byte of
# the packed state (bits 0 and 1).

def _pad_even(a: Array) -> Array:
    if a.shape[-1] % 2:
        a = jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, 1)])
    return a


def _halves(a: Array) -> tuple[Array, Array]:
    """``(..., D)`` → the first and second halves ``(..., H)`` (zero-padded if D is odd)."""
    a = _pad_even(a)
    H = a.shape[-1] // 2
    return a[..., :H], a[..., H:]


def _pack_pairs(x: Array) -> Array:
    """``(..., D)`` 0/1 → ``(..., H)`` uint8: bit 0 = unit h, bit 1 = unit h + H."""
    first, second = _halves(x)
    return first.astype(jnp.uint8) | (second.astype(jnp.uint8) << 1)


def _unpack_pairs(p: Array, D: int) -> Array:
    """Inverse of :func:`_pack_pairs`, as float32 ``(..., D)``."""
    # (shifts by constants: XLA vectorises these, not a shift by a broadcast array)
    x2 = jnp.stack([(p & 1).astype(jnp.float32), (p >> 1).astype(jnp.float32)], axis=-2)
    return x2.reshape(p.shape[:-1] + (-1,))[..., :D]                   # (..., 2H) → (..., D)


def _draw_pairs(kw: Array, t: Array, t1: Array, t2: Array, f1: Array, f2: Array) -> Array:
    """Packed Bernoulli draws of the visible pairs at step ``t``.

    ``t1, f1`` / ``t2, f2``: thresholds and flips (:func:`ncl.model.bernoulli_thresholds`)
    of the first / second half of the units, ``(C, H)`` each.
    """
    a, b = _block(kw, t, _STREAM_VISIBLE, t1.shape)
    first = jnp.logical_xor(a < t1, f1).astype(jnp.uint8)
    second = jnp.logical_xor(b < t2, f2).astype(jnp.uint8)
    return first | (second << 1)


# ----------------------------------------------------------------------------- steps

def _step_function(kw: Array, params: Params, center: Array, config: ModelConfig, C: int):
    """``step_fn(packed, t) -> (packed', (z or α, g))``: double step ``t`` of the segment
    whose Threefry key is ``kw``, on packed visible pairs ``(C, H)``."""
    L = config.n_hidden
    bias = params.abar - params.wbar @ center                          # g = wbar x + bias
    wbar = _pad_even(params.wbar)                                      # (L, 2H)

    def hidden_logits_of(packed):                                      # (C, L), eq. (17)
        x = _unpack_pairs(packed, wbar.shape[-1])                      # (C, 2H)
        return jnp.einsum("cd,ld->cl", x, wbar) + bias

    if config.hidden == "onehot":
        # The L possible visible distributions A(α, ·), tabulated once per segment.
        thr_table, flip_table = bernoulli_thresholds(params.w.T + params.a)  # (L, D): h(e_α)
        tables = _halves(thr_table) + _halves(flip_table)              # 4 x (L, H)

        def step_fn(packed, t):
            g = hidden_logits_of(packed)
            u = uniform_from_bits(_words(kw, t, _STREAM_HIDDEN, (C,)))
            alpha = categorical_from_uniform(u, _onehot_sampling_logits(g, config))
            return _draw_pairs(kw, t, *(tab[alpha] for tab in tables)), (alpha, g)
    else:
        def step_fn(packed, t):
            g = hidden_logits_of(packed)
            thr_z, flip_z = bernoulli_thresholds(g)
            bits_z = _words(kw, t, _STREAM_HIDDEN, (C, L))
            z = jnp.logical_xor(bits_z < thr_z, flip_z).astype(jnp.float32)   # (C, L)
            thr_x, flip_x = bernoulli_thresholds(visible_logits(params, z))
            return _draw_pairs(kw, t, *_halves(thr_x), *_halves(flip_x)), (z, g)
    return step_fn


def _scan(key: Array, x0: Array, params: Params, center: Array, config: ModelConfig,
          n_steps: int, unroll: int):
    """Run the chain; returns packed ``x'(T)``, packed ``x'(t)`` ``(C, T, H)``, ``z(t)`` (or
    ``α(t)``) ``(T, C, ...)`` and the hidden logits ``g(x'(t))`` ``(T, C, L)``."""
    C, D = x0.shape
    step_fn = _step_function(_segment_key(key), params, center, config, C)

    # The visited states are written into a (C, T, H) buffer carried through the loop
    # rather than stacked as scan outputs: under vmap, stacked outputs come out
    # step-major, (T, members, ...), and every consumer would pay for a transpose.
    def body(carry, t):
        packed, history = carry
        history = jax.lax.dynamic_update_slice_in_dim(history, packed[:, None], t, axis=1)
        new, outputs = step_fn(packed, t)
        return (new, history), outputs

    packed0 = _pack_pairs(x0)
    history0 = jnp.zeros((C, n_steps, packed0.shape[-1]), jnp.uint8)
    (last, history), (zs, gs) = jax.lax.scan(body, (packed0, history0),
                                             jnp.arange(n_steps, dtype=jnp.int32),
                                             unroll=unroll)
    return last, history, zs, gs


def _check_chain_inputs(state: ChainState, params: Params, center: Array,
                        config: ModelConfig) -> None:
    """Shape checks (trace time) so a mismatch is a clear ``ValueError``, not a JAX error."""
    if not isinstance(state, ChainState) or getattr(state.x, "ndim", None) != 2:
        raise ValueError("state must be a ChainState with x of shape (C, D); build it with "
                         f"ncl.chain.init(x0), got {type(state).__name__}"
                         + (f" with x of shape {tuple(state.x.shape)}"
                            if hasattr(getattr(state, "x", None), "shape") else ""))
    D = state.x.shape[1]
    check_params(params, config, D, what="the chain state x")
    if tuple(jnp.shape(center)) != (D,):
        raise ValueError(f"center must have shape ({D},) (the data mean, or zeros without "
                         f"centering), got {tuple(jnp.shape(center))}")


def _as_rows(z_or_alpha: Array, config: ModelConfig) -> Array:
    if config.hidden == "onehot":
        return jax.nn.one_hot(z_or_alpha, config.n_hidden, dtype=jnp.float32)
    return z_or_alpha


def sample_chain(key: Array, state: ChainState, params: Params, center: Array,
                 config: ModelConfig, n_steps: int, unroll: int = 1
                 ) -> tuple[ChainState, Trajectory]:
    """Run ``n_steps`` (= T) double steps of the persistent chain with ``lax.scan``.

    Args:
      key: PRNG key for this segment.
      state: :class:`ChainState` with ``x (C, D)``, the fantasy particles ``x'(0)``.
      params: model parameters.
      center: ``(D,)`` centering vector ``c`` of eq. (17).
      config: model configuration.
      n_steps: T, the number of double steps.
      unroll: ``lax.scan`` unroll factor (speed only).
    Returns:
      ``(ChainState(x'(T)), Trajectory(x (T, C, D), z (T, C, L)))``.
    """
    state, traj, _ = sample_chain_with_logits(key, state, params, center, config, n_steps,
                                              unroll)
    return state, traj


def sample_chain_with_logits(key: Array, state: ChainState, params: Params, center: Array,
                             config: ModelConfig, n_steps: int, unroll: int = 1
                             ) -> tuple[ChainState, Trajectory, Array]:
    """:func:`sample_chain`, also returning the hidden logits the sampler computed.

    The third output is ``g (T, C, L)``, ``g(t) = wbar (x'(t) − c) + abar`` (eq. 17) for
    the visited states ``traj.x``: the same values (up to float32 round-off) as
    :func:`ncl.model.hidden_logits` of ``traj.x``, already paid for by the chain. Pass them
    to :func:`ncl.gradient.two_step_gradient` (``hidden_logits=``) so it need not
    recompute them. Same samples as :func:`sample_chain` for the same key.
    """
    _check_chain_inputs(state, params, center, config)
    if isinstance(n_steps, bool) or not hasattr(n_steps, "__index__") or n_steps < 1:
        raise ValueError(f"n_steps (T) must be a positive int, got {n_steps!r}")
    C, D = state.x.shape
    last, history, zs, gs = _scan(key, state.x, params, center, config, n_steps, unroll)
    xs = jnp.swapaxes(_unpack_pairs(history, D), 0, 1)                # (T, C, D)
    return ChainState(_unpack_pairs(last, D)), Trajectory(xs, _as_rows(zs, config)), gs


def step(key: Array, state: ChainState, params: Params, center: Array,
         config: ModelConfig) -> tuple[ChainState, Trajectory]:
    """One double step: ``z ~ Ā(x', ·)``, then ``x'_next ~ A(z, ·)``.

    Returns the new state and a :class:`Trajectory` with ``T = 1``.
    """
    return sample_chain(key, state, params, center, config, 1)


# ----------------------------------------------------------------------------- segments

def _is_single_key(key) -> bool:
    """One key (typed ``()`` or raw ``uint32 (2,)``) rather than a stack of keys."""
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    return key.ndim == (0 if typed else 1)


def run_segments(keys: Array, state: ChainState, params: Params, center: Array,
                 config: ModelConfig, n_steps: int,
                 record: Callable[[Trajectory], Any] | None = None, unroll: int = 1
                 ) -> tuple[ChainState, Any]:
    """Run consecutive chain segments of ``n_steps`` (= T) double steps each, keeping only
    ``record(traj)`` of every segment: the segment runner of the package (training-free
    chains of :mod:`ncl.diagnostics`, :mod:`ncl.trajectory`, and the workflows).

    Segment ``i`` is :func:`sample_chain` ``(keys[i], state_i, ..., n_steps)``: a chain run
    this way draws exactly the random numbers its caller's keys define, whatever it
    records, and its memory is that of one segment (``O(T · C · D)``) plus the records.

    Args:
      keys: ``(n_seg,)`` PRNG keys (typed, or raw ``(n_seg, 2)`` uint32), one per segment,
        run with one ``lax.scan`` (one compiled instance of the chain); or ONE key: one
        segment, run directly (no loop), its record not stacked.
      state: :class:`ChainState` with ``x (C, D)``.
      params, center, config: the model (``center (D,)``).
      n_steps: T, double steps per segment.
      record: ``record(traj) -> pytree`` of a segment's :class:`Trajectory`
        (``x (T, C, D)``, ``z (T, C, L)``); ``None`` records nothing (burn-in).
      unroll: ``lax.scan`` unroll factor of the chain (speed only).
    Returns:
      ``(state after the last segment, records)``: records stacked on a leading
      ``(n_seg,)`` axis (not stacked for one key; ``None`` without ``record``).
    """
    def body(st, k):
        st, traj = sample_chain(k, st, params, center, config, n_steps, unroll)
        return st, (None if record is None else record(traj))

    if _is_single_key(keys):
        return body(state, keys)
    return jax.lax.scan(body, state, keys)


# ----------------------------------------------------------------------------- kernel

class StepInfo(NamedTuple):
    """What one double step visited (stack ``T`` of them to get a :class:`Trajectory`).

    Attributes:
      x: ``(C, D)`` the visible state ``x'(t)`` the step started from.
      z: ``(C, L)`` the hidden state ``z(t) ~ Ā(x'(t), ·)`` (float32 rows).
      hidden_logits: ``(C, L)`` ``g(x'(t))`` (eq. 17), as the sampler computed it.
    """

    x: Array
    z: Array
    hidden_logits: Array


class Kernel(NamedTuple):
    """``(init, step)`` of :func:`kernel`."""

    init: Callable[[Array], ChainState]
    step: Callable[..., tuple[ChainState, StepInfo]]


def kernel(config: ModelConfig) -> Kernel:
    """BlackJAX-style kernel of one double step of the chain: ``init, step = kernel(config)``.

    * ``init(x0) -> ChainState``: ``x0 (C, D)`` (or ``(D,)`` for C = 1) visible states.
    * ``step(key, state, params, center, t=0) -> (ChainState, StepInfo)``: double step
      ``z ~ Ā(x', ·)``, ``x'_next ~ A(z, ·)``; ``params`` one model's :class:`Params`,
      ``center (D,)``. ``StepInfo`` has ``x (C, D)`` (the state stepped from), ``z (C, L)``
      and ``hidden_logits (C, L)``.

    Pure and jit-able (``config`` is static). Randomness: a segment key is expanded
    once into a Threefry key and double step ``t`` of that segment uses the counter
    block ``t`` (see the module docstring), so ``step(key, ·, t)`` draws exactly the bits
    of step ``t`` of :func:`sample_chain` ``(key, ...)``: a ``lax.scan`` of ``step`` over
    ``t = 0..T−1`` with one ``key`` visits the same states as ``sample_chain(key, state,
    ..., T)`` (the arithmetic is the same; XLA may round the hidden logits differently
    in another program, which could flip a draw whose probability lies within float32
    round-off of its uniform). With a fresh key per step (``t = 0`` each time) it is
    :func:`run_segments` with ``n_steps = 1``.
    """
    def init_fn(x0: Array) -> ChainState:
        return init(x0)

    def step_fn(key: Array, state: ChainState, params: Params, center: Array,
                t: Array | int = 0) -> tuple[ChainState, StepInfo]:
        _check_chain_inputs(state, params, center, config)
        C, D = state.x.shape
        fn = _step_function(_segment_key(key), params, center, config, C)
        packed, (z, g) = fn(_pack_pairs(state.x), jnp.asarray(t, jnp.int32))
        return ChainState(_unpack_pairs(packed, D)), StepInfo(state.x, _as_rows(z, config), g)

    return Kernel(init_fn, step_fn)
