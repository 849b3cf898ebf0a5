"""Gradient estimators by name: the one registry ``TrainConfig(family, gradient)`` reads.

Layer: above the estimator modules :mod:`ncl.gradient`, :mod:`ncl.exact` and
:mod:`ncl.rbm` (the only module that imports all of them), below :mod:`ncl.training`,
which never imports ``exact`` or ``rbm`` itself.

Every estimator has one signature (:data:`GradientFn`)::

    gradient(params, traj, batch, center, model, mask=None, *, hidden_logits=None)
        -> (grads, loglik)

``traj`` the chain segment (``x (T, C, D)``, ``z (T, C, L)``), ``batch (N, D)``,
``center (D,)``, ``mask (N,)`` 0/1, ``hidden_logits (T, C, L)`` the logits ``g(x'(t))``
the chain computed (used by the closed-form two-step gradient; the others ignore it);
``grads`` a :class:`ncl.model.Params` of ascent directions, ``loglik`` the minibatch
log-likelihood (App. A3 on the fly, or exact for the exact estimators).

An :class:`Estimator` bundles the gradient with ``tie`` (applied to the parameters
after init and after every update: ``wbar ← wᵀ`` for the RBM family, the identity
otherwise) and ``check_model`` (``ValueError`` for a :class:`ncl.model.ModelConfig` the
family cannot train). :func:`get_estimator` looks one up; :data:`ESTIMATORS` lists the
names per family.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from ncl import exact, rbm
from ncl.gradient import autodiff_gradient, two_step_gradient
from ncl.model import ModelConfig, Params

GradientFn = Callable[..., tuple[Params, object]]
"""``(params, traj, batch, center, model, mask=None, *, hidden_logits=None) -> (grads, loglik)``."""


class Estimator(NamedTuple):
    """One registered training estimator.

    Attributes:
      gradient: the :data:`GradientFn`.
      tie: ``Params -> Params``, applied after init and every update.
      check_model: ``ModelConfig -> None``, raises ``ValueError`` for a model the
        estimator's family cannot train.
    """

    gradient: GradientFn
    tie: Callable[[Params], Params]
    check_model: Callable[[ModelConfig], None]


def _identity(params: Params) -> Params:
    return params


def _any_model(config: ModelConfig) -> None:
    return None


_REGISTRY: dict[str, dict[str, Estimator]] = {
    "ncl": {
        "closed-form": Estimator(two_step_gradient, _identity, _any_model),
        "autodiff": Estimator(autodiff_gradient, _identity, _any_model),
        "exact": Estimator(exact.exact_gradient, _identity, _any_model),
        "two-step-expected": Estimator(exact.expected_two_step_gradient, _identity,
                                       _any_model),
    },
    "rbm": {
        "closed-form": Estimator(rbm.pcd_gradient, rbm.tie, rbm.check_model_config),
        "autodiff": Estimator(rbm.pcd_autodiff_gradient, rbm.tie, rbm.check_model_config),
        "exact": Estimator(rbm.exact_gradient, rbm.tie, rbm.check_model_config),
    },
}

FAMILIES = tuple(_REGISTRY)
"""Model families: ``"ncl"`` (the two-kernel model) and ``"rbm"`` (:mod:`ncl.rbm`)."""

ESTIMATORS = {family: tuple(names) for family, names in _REGISTRY.items()}
"""``family -> names of its gradient estimators`` (``TrainConfig.gradient`` values)."""

GRADIENT_FORMS = tuple(dict.fromkeys(n for names in ESTIMATORS.values() for n in names))
"""Every ``TrainConfig.gradient`` value of some family."""


def get_estimator(family: str, gradient: str) -> Estimator:
    """The :class:`Estimator` of ``family`` (``"ncl"`` / ``"rbm"``) and ``gradient``;
    ``ValueError`` naming the valid choices otherwise."""
    if family not in _REGISTRY:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    try:
        return _REGISTRY[family][gradient]
    except KeyError:
        raise ValueError(f"the {family.upper()} family "
                         f"supports gradient in {ESTIMATORS[family]}, got {gradient!r}"
                         ) from None


def check_estimator(family: str, gradient: str, model: ModelConfig) -> Estimator:
    """Validate a ``(family, gradient, model)`` choice (the model first, then the gradient
    name, as :class:`ncl.training.TrainConfig` reports them) and return its
    :class:`Estimator`."""
    if family not in _REGISTRY:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    next(iter(_REGISTRY[family].values())).check_model(model)
    return get_estimator(family, gradient)
