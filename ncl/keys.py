"""PRNG keys from seeds: the one place a seed (or a key) becomes a typed JAX key.

Layer: a leaf (imports only :mod:`ncl._validate`), used by :mod:`ncl.training` and any
workflow that accepts "a seed or a key".

* :func:`as_key` — one int seed or one PRNG key (typed, or raw ``uint32 (2,)`` key data)
  → one typed key;
* :func:`member_keys` — ``E`` int seeds (validated: distinct, in ``[0, 2**32)``) or an
  ``(E,)`` array of typed keys → typed keys ``(E,)``, ``jax.random.key(seed)`` each.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ncl import _validate as _v

Array = jax.Array


def is_key_array(x) -> bool:
    """Whether ``x`` is an array of typed PRNG keys (``jax.random.key``)."""
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def as_key(seed_or_key, what: str = "seed_or_key",
           hint: str = "for several seeds use train_ensemble") -> Array:
    """One typed PRNG key from an int seed (``jax.random.key(seed)``), a typed key of
    shape ``()``, or raw ``uint32 (2,)`` key data; ``TypeError`` otherwise."""
    if isinstance(seed_or_key, (int, np.integer)) and not isinstance(seed_or_key, bool):
        return jax.random.key(int(seed_or_key))
    key = seed_or_key
    if hasattr(key, "dtype") and hasattr(key, "shape"):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return key
        if key.dtype == np.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(jnp.asarray(key))
    raise TypeError(f"{what} must be an int seed or one PRNG key (jax.random.key), got "
                    f"{seed_or_key!r}" + (f"; {hint}" if hint else ""))


def ensemble_keys(seeds: Sequence[int] | Array) -> Array:
    """Typed keys ``(E,)`` for a sequence of ``E`` int seeds (``jax.random.key(seed)`` each).

    ``ValueError`` naming the offending seeds unless they are distinct integers in
    ``[0, 2**32)`` (:func:`ncl._validate.seeds`): larger or negative ones would wrap
    modulo 2**32 and a repeated one would train the same member twice.
    """
    seeds = _v.seeds("seeds", seeds)
    return jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))


def member_keys(seeds_or_keys) -> Array:
    """``(E,)`` typed keys: passed through if already typed keys, else
    :func:`ensemble_keys` of the seeds."""
    if is_key_array(seeds_or_keys):
        return seeds_or_keys
    return ensemble_keys(seeds_or_keys)
