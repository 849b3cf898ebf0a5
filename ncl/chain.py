"""The alternating persistent chain x'(t) → z(t) → x'(t+1) (paper Fig. 1, eq. 18).

BlackJAX-style pure functions: :func:`init` builds a :class:`ChainState`,
:func:`step` performs one double step, :func:`sample_chain` runs ``T`` double steps
with ``lax.scan`` and returns the (x'(t), z(t)) pairs the two-step gradient needs.
Keys are explicit and never stored.

Speed without approximation: all random bits of a chain segment are drawn in one
call, and every Bernoulli draw compares 32 raw bits with an integer threshold
(:func:`ncl.model.bernoulli_thresholds`), which is exact to ``2**-32``; the one-hot
hidden draw is an inverse-CDF draw resolved to ``2**-24``. For one-hot
hidden units the ``L`` possible visible probability vectors are tabulated once per
segment, so the scanned body is a gather, a compare and a ``(L, D)`` matrix-vector
product.
"""
from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from ncl.model import (ModelConfig, Params, _onehot_sampling_logits, bernoulli_from_bits,
                       bernoulli_thresholds, categorical_from_uniform, check_params,
                       hidden_logits, uniform_from_bits, visible_logits)

Array = jax.Array


class ChainState(NamedTuple):
    """Persistent fantasy particles. ``x (C, D)`` float32 in {0,1}: ``x'(0)`` of the next segment."""

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


def _draw_bits(key: Array, T: int, C: int, D: int, config: ModelConfig):
    k_x, k_z = jax.random.split(key)
    bits_x = jax.random.bits(k_x, (T, C, D), jnp.uint32)
    z_shape = (T, C) if config.hidden == "onehot" else (T, C, config.n_hidden)
    bits_z = jax.random.bits(k_z, z_shape, jnp.uint32)
    return bits_x, bits_z


def _make_body(params: Params, center: Array, config: ModelConfig):
    """Scan body ``(x, (bits_x, bits_z)) -> (x_next, (x, z_or_alpha))`` for one double step."""
    if config.hidden == "onehot":
        # The L possible visible distributions A(α, ·), tabulated once per segment.
        thr_table, flip_table = bernoulli_thresholds(visible_logits(params, jnp.eye(
            config.n_hidden, dtype=params.w.dtype)))

        def body(x, bits):
            bits_x, bits_z = bits
            g = hidden_logits(params, x, center)                      # (C, L)
            alpha = categorical_from_uniform(uniform_from_bits(bits_z),
                                             _onehot_sampling_logits(g, config))
            x_next = bernoulli_from_bits(bits_x, thr_table[alpha], flip_table[alpha])
            return x_next, (x, alpha)
    else:
        def body(x, bits):
            bits_x, bits_z = bits
            thr_z, flip_z = bernoulli_thresholds(hidden_logits(params, x, center))
            z = bernoulli_from_bits(bits_z, thr_z, flip_z)            # (C, L)
            thr_x, flip_x = bernoulli_thresholds(visible_logits(params, z))
            x_next = bernoulli_from_bits(bits_x, thr_x, flip_x)
            return x_next, (x, z)
    return body


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


def step(key: Array, state: ChainState, params: Params, center: Array,
         config: ModelConfig) -> tuple[ChainState, Trajectory]:
    """One double step: ``z ~ Ā(x', ·)``, then ``x'_next ~ A(z, ·)``.

    Returns the new state and a :class:`Trajectory` with ``T = 1``.
    """
    _check_chain_inputs(state, params, center, config)
    C, D = state.x.shape
    bits_x, bits_z = _draw_bits(key, 1, C, D, config)
    x_next, (x, z) = _make_body(params, center, config)(state.x, (bits_x[0], bits_z[0]))
    return ChainState(x_next), Trajectory(x[None], _as_rows(z, config)[None])


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
    _check_chain_inputs(state, params, center, config)
    if isinstance(n_steps, bool) or not hasattr(n_steps, "__index__") or n_steps < 1:
        raise ValueError(f"n_steps (T) must be a positive int, got {n_steps!r}")
    C, D = state.x.shape
    bits = _draw_bits(key, n_steps, C, D, config)
    x_last, (xs, zs) = jax.lax.scan(_make_body(params, center, config), state.x, bits,
                                    unroll=unroll)
    return ChainState(x_last), Trajectory(xs, _as_rows(zs, config))
