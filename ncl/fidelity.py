"""Class fidelity of a model, eq. (22) (docs/model.md "Class fidelity").

Numerical-core layer just above :mod:`ncl.model` (it needs the model's parameters and the
classifier leaf). Each one-hot hidden unit gets the class of its mean image; a model's
class distribution ``P_e`` is the stationary occupancy summed by class; eq. (22) compares
it with the data's class frequencies ``P_D``. Sizes: ``L`` hidden units, ``Q`` classes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ncl import classifier as clf
from ncl.model import Params

Array = jax.Array


def unit_classes(params: Params, classifier: clf.ClassifierParams) -> Array:
    """Class index (0..Q−1) of each one-hot hidden unit: the classifier's prediction for
    its mean image ``sigmoid(w[:, α] + a)`` → ``(L,)`` int32 (one-hot hidden only)."""
    mean_images = jax.nn.sigmoid(params.w.T + params.a)   # (L, D)
    return clf.predict(classifier, mean_images)


def class_distribution(p_bar: Array, unit_class: Array, n_classes: int) -> Array:
    """``P_e(k) = Σ_α p̄(α) [class(α) = k]`` (eq. 22). ``(L,)``, ``(L,)`` → ``(Q,)``."""
    return jnp.zeros((n_classes,), p_bar.dtype).at[unit_class].add(p_bar)


def class_fidelity_kl(p_e: Array, p_data: Array, p_floor: float = 1e-3) -> Array:
    """``KL(P_D || P_e) = Σ_k P_D(k) ln(P_D(k) / P_e(k))``, eq. (22).

    ``P_e`` is floored at ``p_floor`` and renormalised first, so a class the model never
    generates costs ``ln(P_D / p_floor)`` instead of infinity. ``(..., Q)`` → ``(...)``.
    """
    pe = jnp.maximum(p_e, p_floor)
    pe = pe / jnp.sum(pe, axis=-1, keepdims=True)
    pd = jnp.asarray(p_data, pe.dtype)
    t = jnp.where(pd > 0, pd * (jnp.log(jnp.where(pd > 0, pd, 1.0)) - jnp.log(pe)), 0.0)
    return jnp.sum(t, axis=-1)
