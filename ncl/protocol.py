"""The training protocol as plain data: :class:`TrainConfig` and its schedules.

Layer: above :mod:`ncl.estimators` (a config is validated against the registry) and
below :mod:`ncl.training`, which runs the protocol. Nothing here runs JAX programs
except :func:`minibatch_size` on traced epochs. Sizes as in :mod:`ncl.model`.

* :class:`TrainConfig` — frozen dataclass; defaults are the paper's protocol
  (Sect. IV A): L = 6 one-hot, T = 48, RMSprop lr 0.1, 120 epochs of 30 steps,
  minibatch 16 → 160 (by a mask, static shapes), centering on, a = 0;
* :func:`minibatch_size` (docs/model.md, training step 2), :func:`make_optimizer`;
* :func:`epoch_segments` (batch buckets) and :func:`checkpoint_pieces` (where a run is
  cut), both functions of the config and the epoch only, so resuming is exact.
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import optax

from ncl import _validate as _v
from ncl import estimators
from ncl.estimators import FAMILIES, GRADIENT_FORMS
from ncl.model import ModelConfig

@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training protocol (plain, hashable data). Defaults: the paper's Sect. IV A.

    Attributes:
      model: :class:`ncl.model.ModelConfig` (L, hidden representation, recognition, centering).
      chain_length: T, double steps of the persistent chain per training step.
      n_chains: parallel persistent chains per model (samples pooled; paper: 1).
      learning_rate: RMSprop learning rate η.
      epochs: number of epochs (``n_epochs``).
      steps_per_epoch: gradient steps per epoch (paper: 30).
      batch_min, batch_max: the minibatch grows linearly over epochs from
        ``batch_min`` to ``batch_max``
        (``N_e = round(min + (max − min)·e/(n_epochs − 1))``).
      rmsprop_decay, rmsprop_eps: optax ``rmsprop`` settings (its defaults).
      init_subset_fraction: fraction of the data averaged per hidden unit at init (App. A1).
      gradient: ``"closed-form"`` (eqs. 16–17) or ``"autodiff"`` (grad of the surrogate);
        ``"exact"`` (true gradient of the exact log-likelihood, :mod:`ncl.exact`, small D
        only) or ``"two-step-expected"`` (the two-step rule with exact stationary
        averages, :func:`ncl.exact.expected_two_step_gradient`). For ``family="rbm"``:
        PCD in closed form / by autodiff, or ``"exact"`` (:mod:`ncl.rbm`).
      family: ``"ncl"`` (the two-kernel model) or ``"rbm"`` (the equilibrium baseline,
        :mod:`ncl.rbm`: ``wbar`` tied to ``wᵀ``, one-hot hidden units need
        ``recognition="softmax"``; build it with :func:`ncl.rbm.rbm_train_config`).
      batch_buckets: the epochs are cut into this many contiguous segments, each compiled
        with its own static padded minibatch (the largest ``N_e`` it needs), so early
        epochs do not pay for 160 rows. Speed only: minibatch indices are drawn
        prefix-stably, so results do not depend on it. 1 = one mask of ``batch_max`` rows.
      monitor: record σ and the precise log-likelihood at every epoch from the training
        chain's samples (:mod:`ncl.monitor`; models with at most 64 hidden states).
      scan_unroll: unroll factor of the chain's ``lax.scan`` (speed only).
      member_chunk: an ensemble larger than this runs each epoch over chunks of at most
        this many members in turn (``lax.scan`` over chunks of the vmapped epoch, members
        interleaved so that every chunk is spread evenly over the devices), which caps
        the memory of the per-step intermediates (minibatch, trajectory, gradient terms,
        about 5 MB per member at the paper's sizes) whatever the ensemble size. Memory
        and speed only: members are independent, so each member computes what it would
        unchunked, up to float32 round-off (its batch shape changes): same keys and random
        numbers, trajectories equal until a draw flips, statistically equivalent after.
        The chunk count is the smallest divisor of the member
        count per device that respects the cap.
    """

    model: ModelConfig = ModelConfig()
    chain_length: int = 48
    n_chains: int = 1
    learning_rate: float = 0.1
    epochs: int = 120
    steps_per_epoch: int = 30
    batch_min: int = 16
    batch_max: int = 160
    rmsprop_decay: float = 0.9
    rmsprop_eps: float = 1e-8
    init_subset_fraction: float = 0.1
    gradient: str = "closed-form"
    family: str = "ncl"
    batch_buckets: int = 4
    monitor: bool = True
    scan_unroll: int = 1
    member_chunk: int = 256

    def __post_init__(self):
        if isinstance(self.model, dict):  # convenience: TrainConfig(model={...})
            object.__setattr__(self, "model", _model_config_from_dict(self.model))
        _v.check_fields(self, _TRAIN_RULES)
        if self.batch_min > self.batch_max:
            raise ValueError(f"batch_min ({self.batch_min}) must not exceed batch_max "
                             f"({self.batch_max})")
        if self.epochs * self.steps_per_epoch > _v.INT32_MAX:
            raise ValueError(f"epochs * steps_per_epoch ({self.epochs} * {self.steps_per_epoch}"
                             f") must be at most {_v.INT32_MAX} (the step counter is int32); "
                             "lower epochs or steps_per_epoch")
        if self.model.hidden == "binary" and self.model.n_hidden > 30:
            raise ValueError(f"binary hidden layer with L={self.model.n_hidden} units is not "
                             "supported (hidden states are indexed by int32); use L <= 30")
        estimators.check_estimator(self.family, self.gradient, self.model)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise TypeError(f"a TrainConfig must be read from a dict (a JSON object or TOML "
                            f"table of option names), got {type(d).__name__}")
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig option(s): {sorted(unknown, key=str)}; "
                             f"valid options: {sorted(known)}")
        if isinstance(d.get("model"), dict):
            d["model"] = _model_config_from_dict(d["model"])
        return cls(**d)


_TRAIN_RULES = {
    "model": (_v.instance, dict(cls=ModelConfig)),
    "chain_length": (_v.integer, dict(min=1)),
    "n_chains": (_v.integer, dict(min=1)),
    "learning_rate": (_v.real, dict(min=0, min_open=True)),
    "epochs": (_v.integer, dict(min=1)),
    "steps_per_epoch": (_v.integer, dict(min=1)),
    "batch_min": (_v.integer, dict(min=1)),
    "batch_max": (_v.integer, dict(min=1)),
    "rmsprop_decay": (_v.real, dict(min=0, max=1, max_open=True)),
    "rmsprop_eps": (_v.real, dict(min=0, min_open=True)),
    "init_subset_fraction": (_v.real, dict(min=0, max=1, min_open=True)),
    "gradient": (_v.choice, dict(choices=GRADIENT_FORMS)),
    "family": (_v.choice, dict(choices=FAMILIES)),
    "batch_buckets": (_v.integer, dict(min=1)),
    "monitor": (_v.boolean, {}),
    "scan_unroll": (_v.integer, dict(min=1)),
    "member_chunk": (_v.integer, dict(min=1)),
}
"""One type-and-range rule per :class:`TrainConfig` field (:mod:`ncl._validate`)."""


def _model_config_from_dict(d: dict) -> ModelConfig:
    """``TrainConfig.model`` given as a dict of :class:`ModelConfig` options."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown ModelConfig option(s): {sorted(unknown, key=str)}; "
                         f"valid options: {sorted(known)} (TrainConfig.model)")
    return ModelConfig(**d)


def minibatch_size(epoch, config: TrainConfig):
    """``N_e = round(batch_min + (batch_max − batch_min)·e/(n_epochs − 1))`` (docs/model.md,
    training step 2).

    Works on Python ints and traced arrays. ``n_epochs = 1`` gives ``batch_min``.
    """
    span = config.batch_max - config.batch_min
    denom = max(config.epochs - 1, 1)
    if isinstance(epoch, (int, np.integer)):
        return int(math.floor(config.batch_min + span * epoch / denom + 0.5))
    e = jnp.asarray(epoch, jnp.float32)
    return jnp.floor(config.batch_min + span * e / denom + 0.5).astype(jnp.int32)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """optax RMSprop (decay 0.9, eps 1e-8 by default), applied to −grad (ascent).

    The learning rate is an injected hyperparameter (``opt_state.hyperparams
    ["learning_rate"]``), so ensemble members can train with different rates in one
    program (:mod:`ncl.sweep`); the arithmetic is bit-identical to ``optax.rmsprop``.
    """
    return optax.inject_hyperparams(optax.rmsprop, static_args=("decay", "eps"))(
        learning_rate=config.learning_rate, decay=config.rmsprop_decay, eps=config.rmsprop_eps)


def epoch_segments(config: TrainConfig, start_epoch: int = 0,
                   stop_epoch: int | None = None) -> list[tuple[int, int, int]]:
    """``[(first_epoch, stop_epoch, n_pad), ...]``: contiguous epoch ranges, each run with
    a static padded minibatch of ``n_pad`` rows (see ``TrainConfig.batch_buckets``).

    The padding of an epoch depends only on the epoch and the config, never on where a
    run was interrupted, so a resumed run computes exactly what an uninterrupted one does.
    """
    n_epochs, n_buckets = config.epochs, min(config.batch_buckets, config.epochs)
    stop_epoch = n_epochs if stop_epoch is None else stop_epoch
    bounds = sorted({(k * n_epochs) // n_buckets for k in range(n_buckets)} | {n_epochs})
    segments = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        n_pad = minibatch_size(hi - 1, config)
        lo, hi = max(lo, start_epoch), min(hi, stop_epoch)
        if lo < hi:
            segments.append((lo, hi, n_pad))
    return segments


def checkpoint_pieces(start_epoch: int, stop_epoch: int, every: int | None
                      ) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]``: epochs ``[start, stop)`` cut after every epoch count that is a
    multiple of ``every`` (``None``: one piece). A resumed run is cut where the
    uninterrupted one was, so both run the same programs."""
    if every is None:
        return [(start_epoch, stop_epoch)]
    cuts = sorted({e for e in range(start_epoch + 1, stop_epoch) if e % every == 0}
                  | {stop_epoch})
    return list(zip([start_epoch] + cuts[:-1], cuts))


def progress_interval(config: TrainConfig) -> int:
    """Epochs per piece when progress is reported on the host between pieces: about a
    tenth of the run, chosen to divide every batch-bucket boundary
    (:func:`epoch_segments`), so no piece spans two buckets and the pieces of one bucket
    share one compiled program."""
    bounds = [hi for _, hi, _ in epoch_segments(config)][:-1]
    g = math.gcd(*bounds) if bounds else config.epochs
    target = max(1, round(config.epochs / 10))
    return max(d for d in range(1, g + 1) if g % d == 0 and d <= target)
