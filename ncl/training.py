"""Training: the paper's protocol as one pure, jit-compiled function; ensembles via vmap.

* :class:`TrainConfig` — frozen dataclass; defaults are the paper's protocol
  (Sect. IV A): L = 6 one-hot, T = 48, RMSprop lr 0.1, 120 epochs of 30 steps,
  minibatch 16 → 160 (by a mask, static shapes), centering on, a = 0.
* :func:`train` — ``(key, data, config) -> (TrainState, History)``: ``lax.scan`` over
  epochs of ``lax.scan`` over steps.
* :func:`train_ensemble` — the same for a batch of seeds, vmapped: one XLA program.
  Member ``i`` has the key, step keys and random numbers of ``train(seeds[i], ...)`` and
  computes the same arithmetic up to float32 round-off (vmap changes the batch shape of
  the matrix products, and XLA does not promise the same bits at another shape): its
  trajectory is equal until a Bernoulli draw whose probability lies within round-off of
  its uniform flips, and statistically equivalent after.

Randomness: the key of step ``s`` is ``fold_in(state.key, s)``, so a run's random
stream depends only on its seed and the step number (resuming is exact).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ncl import _validate as _v
from ncl.data import check_data  # noqa: F401  (re-exported: ncl.training.check_data)
from ncl import chain as chain_lib
from ncl import exact as exact_lib
from ncl import monitor as monitor_lib
from ncl.gradient import autodiff_gradient, two_step_gradient
from ncl import rbm as rbm_lib
from ncl.model import ModelConfig, Params, check_params, data_center, init_params

Array = jax.Array

GRADIENT_FORMS = ("closed-form", "autodiff", "exact", "two-step-expected")
FAMILIES = ("ncl", "rbm")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training protocol (plain, hashable data). Defaults: the paper's Sect. IV A.

    Attributes:
      model: :class:`ncl.model.ModelConfig` (L, hidden representation, recognition, centering).
      chain_length: T, double steps of the persistent chain per training step.
      n_chains: parallel persistent chains per model (samples pooled; paper: 1).
      learning_rate: RMSprop learning rate η.
      epochs: E, number of epochs.
      steps_per_epoch: gradient steps per epoch (paper: 30).
      batch_min, batch_max: the minibatch grows linearly over epochs from
        ``batch_min`` to ``batch_max`` (``N_e = round(min + (max − min)·e/(E − 1))``).
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
        if self.family == "rbm":
            rbm_lib.check_model_config(self.model)
            rbm_lib.gradient_function(self.gradient)

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


class TrainState(NamedTuple):
    """Everything a run needs to continue (a pytree; an ensemble has a leading seed axis).

    Attributes:
      params: :class:`ncl.model.Params`.
      opt_state: optax RMSprop state.
      chain: :class:`ncl.chain.ChainState`, persistent fantasy particles ``x (C, D)``.
      center: ``(D,)`` the centering vector ``c`` (data mean, eq. 17).
      key: the run's PRNG key (typed key array); step keys are ``fold_in(key, step)``.
      step: int32 scalar, number of gradient steps taken.
    """

    params: Params
    opt_state: Any
    chain: chain_lib.ChainState
    center: Array
    key: Array
    step: Array


class History(NamedTuple):
    """Per-epoch training record, each field with a leading ``(E,)`` epoch axis.

    Attributes:
      loglik: on-the-fly log-likelihood (App. A3), averaged over the epoch's steps.
      loglik_precise: log-likelihood of the whole data set given the epoch's hidden
        occupancy (eqs. 5, 7), at the end of the epoch (NaN if monitoring is off).
      sigma_rb: entropy production rate σ (eq. 21) from the Rao–Blackwellised M of the
        epoch's training-chain samples (NaN if monitoring is off).
      sigma_counts: σ from transition counts, the paper's estimator (biased low).
      batch_size: minibatch size ``N_e`` used in the epoch.
      hidden_occupancy: ``(E, L)`` mean of ``z`` over the epoch's training-chain samples.
      finite: whether all parameters were finite at the end of the epoch.
    """

    loglik: Array
    loglik_precise: Array
    sigma_rb: Array
    sigma_counts: Array
    batch_size: Array
    hidden_occupancy: Array
    finite: Array


def minibatch_size(epoch, config: TrainConfig):
    """``N_e = round(batch_min + (batch_max − batch_min)·e/(E − 1))`` (docs/model.md, training step 2).

    Works on Python ints and traced arrays. ``E = 1`` gives ``batch_min``.
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


def init_state(key: Array, data: Array, config: TrainConfig) -> TrainState:
    """Initial :class:`TrainState`: App. A1 parameters, chain from random data points.

    ``key`` is a typed PRNG key; ``data (N_D, D)`` float32 in {0, 1}.
    """
    k_init, k_x0, k_run = jax.random.split(key, 3)
    params = tie_parameters(init_params(k_init, data, config.model,
                                        config.init_subset_fraction), config)
    x0 = data[jax.random.randint(k_x0, (config.n_chains,), 0, data.shape[0])]
    return TrainState(params=params, opt_state=make_optimizer(config).init(params),
                      chain=chain_lib.init(x0), center=data_center(data, config.model),
                      key=k_run, step=jnp.zeros((), jnp.int32))


def gradient_function(config: TrainConfig) -> Callable:
    """The estimator ``(params, traj, batch, center, model, mask) -> (grads, loglik)`` that
    ``config.family`` and ``config.gradient`` select."""
    if config.family == "rbm":
        return rbm_lib.gradient_function(config.gradient)
    if config.gradient in exact_lib.GRADIENTS:
        return exact_lib.GRADIENTS[config.gradient]
    return two_step_gradient if config.gradient == "closed-form" else autodiff_gradient


def tie_parameters(params: Params, config: TrainConfig) -> Params:
    """RBM family: ``wbar ← wᵀ`` (after init and every update); the identity otherwise."""
    return rbm_lib.tie(params) if config.family == "rbm" else params


class StepInfo(NamedTuple):
    loglik: Array
    hidden_mean: Array
    trajectory: chain_lib.Trajectory
    hidden_logits: Array


def train_step(state: TrainState, data: Array, batch_size: Array, config: TrainConfig,
               n_pad: int | None = None) -> tuple[TrainState, StepInfo]:
    """One gradient-ascent step (docs/model.md, training steps 1–6) for one model.

    ``data (N_D, D)``; ``batch_size`` the number of counted minibatch rows, at most
    ``n_pad`` (static; default ``config.batch_max``). Indices are drawn uniformly with
    replacement; the first ``batch_size`` of them do not depend on ``n_pad``.
    """
    n_pad = config.batch_max if n_pad is None else n_pad
    k_chain, k_batch = jax.random.split(jax.random.fold_in(state.key, state.step))
    idx = jax.random.randint(k_batch, (n_pad,), 0, data.shape[0])
    batch = data[idx]
    mask = (jnp.arange(n_pad) < batch_size).astype(data.dtype)
    chain_state, traj, g = chain_lib.sample_chain_with_logits(
        k_chain, state.chain, state.params, state.center, config.model, config.chain_length,
        unroll=config.scan_unroll)
    grad_fn = gradient_function(config)
    if grad_fn is two_step_gradient:  # reuse the chain's hidden logits g(x'(t))
        grads, loglik = grad_fn(state.params, traj, batch, state.center, config.model, mask,
                                hidden_logits=g)
    else:
        grads, loglik = grad_fn(state.params, traj, batch, state.center, config.model, mask)
    ascent = jax.tree_util.tree_map(jnp.negative, grads)
    updates, opt_state = make_optimizer(config).update(ascent, state.opt_state, state.params)
    params = tie_parameters(optax.apply_updates(state.params, updates), config)
    new_state = state._replace(params=params, opt_state=opt_state, chain=chain_state,
                               step=state.step + 1)
    return new_state, StepInfo(loglik, jnp.mean(traj.z, axis=(0, 1)), traj, g)


def run_epoch(state: TrainState, data: Array, epoch: Array, config: TrainConfig,
              n_pad: int | None = None) -> tuple[TrainState, History]:
    """``steps_per_epoch`` steps with the epoch's minibatch size; returns one History row."""
    batch_size = minibatch_size(epoch, config)
    monitoring = config.monitor and monitor_lib.monitor_supported(config.model)

    def body(carry, _):
        s, acc = carry
        params = s.params
        s, info = train_step(s, data, batch_size, config, n_pad)
        if monitoring:
            acc = monitor_lib.accumulate(acc, params, info.trajectory, s.center, config.model,
                                         hidden_logits=info.hidden_logits)
        return (s, acc), (info.loglik, info.hidden_mean)

    acc0 = monitor_lib.empty_accumulator(config.model) if monitoring else None
    (state, acc), (loglik, hidden_mean) = jax.lax.scan(body, (state, acc0), None,
                                                       length=config.steps_per_epoch)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p))
                                for p in jax.tree_util.tree_leaves(state.params)]))
    if monitoring:
        mon = monitor_lib.summarize(acc, state.params, data, config.model)
        ll_precise, sigma_rb, sigma_counts = mon.loglik_precise, mon.sigma_rb, mon.sigma_counts
    else:
        ll_precise = sigma_rb = sigma_counts = jnp.float32(jnp.nan)
    return state, History(loglik=jnp.mean(loglik), loglik_precise=ll_precise,
                          sigma_rb=sigma_rb, sigma_counts=sigma_counts,
                          batch_size=batch_size, hidden_occupancy=jnp.mean(hidden_mean, axis=0),
                          finite=finite)


ProgressFn = Callable[[int, History], None]


def epoch_segments(config: TrainConfig, start_epoch: int = 0,
                   stop_epoch: int | None = None) -> list[tuple[int, int, int]]:
    """``[(first_epoch, stop_epoch, n_pad), ...]``: contiguous epoch ranges, each run with
    a static padded minibatch of ``n_pad`` rows (see ``TrainConfig.batch_buckets``).

    The padding of an epoch depends only on the epoch and the config, never on where a
    run was interrupted, so a resumed run computes exactly what an uninterrupted one does.
    """
    E, K = config.epochs, min(config.batch_buckets, config.epochs)
    stop_epoch = E if stop_epoch is None else stop_epoch
    bounds = sorted({(k * E) // K for k in range(K)} | {E})
    segments = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        n_pad = minibatch_size(hi - 1, config)
        lo, hi = max(lo, start_epoch), min(hi, stop_epoch)
        if lo < hi:
            segments.append((lo, hi, n_pad))
    return segments


def member_chunks(n_members: int, member_chunk: int, n_devices: int = 1) -> int:
    """Number of member chunks an epoch of ``n_members`` runs in (see
    ``TrainConfig.member_chunk``): the smallest divisor ``n`` of ``n_members / n_devices``
    with ``n_members / n <= member_chunk`` (1 when the ensemble fits in one chunk)."""
    if n_members <= member_chunk:
        return 1
    per_device = n_members // n_devices if n_members % n_devices == 0 else n_members
    for n in range(1, per_device + 1):
        if per_device % n == 0 and n_members // n <= member_chunk:
            return n
    return per_device


def _member_chunked(vmapped_epoch, member_chunk: int, n_devices: int):
    """Run ``vmapped_epoch(state, data, epoch)`` (members on axis 0) chunk by chunk.

    Member ``m`` goes to chunk ``m % n`` (an interleaved split): with the member axis
    sharded in contiguous blocks over devices, every chunk is spread evenly over all
    devices and the scan over chunks runs along an unsharded axis.
    """
    def run(state, data, epoch):
        M = jax.tree_util.tree_leaves(state)[0].shape[0]
        n = member_chunks(M, member_chunk, n_devices)
        if n == 1:
            return vmapped_epoch(state, data, epoch)

        def split(a):  # (M, ...) -> (n, M/n, ...), chunk c = members c, c+n, c+2n, ...
            return jnp.swapaxes(a.reshape((M // n, n) + a.shape[1:]), 0, 1)

        def merge(a):  # inverse of split
            return jnp.swapaxes(a, 0, 1).reshape((M,) + a.shape[2:])

        def body(_, chunk_state):
            return None, vmapped_epoch(chunk_state, data, epoch)

        _, out = jax.lax.scan(body, None, jax.tree_util.tree_map(split, state))
        return jax.tree_util.tree_map(merge, out)
    return run


def _run_epochs(state, data, config, first_epoch, segments, member_axis, host,
                mesh=None, n_members=None):
    """Epochs ``first_epoch + [lo, hi)`` for each ``(lo, hi, n_pad)`` of ``segments`` (one
    ``lax.scan`` per batch bucket, offsets static, ``first_epoch`` a traced int32 so one
    compilation serves every piece of the same shape). ``host`` (:class:`_HostCalls`, or
    None) receives the per-epoch progress callback."""
    from jax.sharding import NamedSharding, PartitionSpec

    def to_host_view(tree):
        if mesh is None:
            return tree
        # gather once (replicated), drop the padding members
        tree = jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec()))
        return jax.tree_util.tree_map(lambda a: a[:n_members], tree)

    rows = []
    for lo, hi, n_pad in segments:
        epoch_fn = functools.partial(run_epoch, config=config, n_pad=n_pad)
        if member_axis:
            epoch_fn = _member_chunked(jax.vmap(epoch_fn, in_axes=(0, None, None)),
                                       config.member_chunk,
                                       1 if mesh is None else mesh.devices.size)

        def body(s, epoch, epoch_fn=epoch_fn):
            s, row = epoch_fn(s, data, epoch)
            if host is not None:
                jax.debug.callback(host.on_epoch, epoch, to_host_view(row))
            return s, row

        state, seg_rows = jax.lax.scan(body, state,
                                       first_epoch + jnp.arange(lo, hi, dtype=jnp.int32))
        rows.append(seg_rows)
    return state, jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *rows)


CheckpointFn = Callable[[int, History, TrainState], None]


class HostCallbackError(RuntimeError):
    """A host callback (``progress``, or a checkpoint's ``save``) raised during training.

    Training stopped cleanly: a ``progress`` error inside the compiled program is
    recorded instead of reaching XLA (where it would abort the process), the program
    runs to the end of its piece with the callback turned off, and no later piece runs;
    a ``save`` error stops training before the next piece. The first error is this
    exception's ``__cause__``. Checkpoints written before it are untouched."""


class _HostCalls:
    """The host side of one compiled training program's progress callback.

    The compiled program calls the bound method :meth:`on_epoch`, never a user's function
    directly, so one compilation serves every call whatever callback it is given (armed
    per call by :meth:`run`), and an exception in the callback is recorded instead of
    reaching XLA: later callbacks of that call are skipped and :meth:`run` raises
    :class:`HostCallbackError` once the program has finished. The callback receives
    NumPy arrays and must not call JAX (in a program sharded over several devices that
    would wait for the devices the callback is holding).
    """

    def __init__(self):
        import threading
        self._lock = threading.Lock()      # one call of this program at a time
        self._progress = None
        self._errors: list[BaseException] = []

    def on_epoch(self, epoch, row) -> None:
        if self._progress is None or self._errors:
            return
        try:
            self._progress(int(epoch), jax.tree_util.tree_map(np.asarray, row))
        except BaseException as e:  # noqa: BLE001 - must not reach XLA
            self._errors.append(e)

    def run(self, fn, args, progress):
        with self._lock:
            self._progress, self._errors = progress, []
            try:
                out = fn(*args)
                jax.block_until_ready(out)
                jax.effects_barrier()  # every callback has returned
            finally:
                errors, self._errors = self._errors, []
                self._progress = None
        if errors:
            e = errors[0]
            raise HostCallbackError(f"the progress callback failed during training: "
                                    f"{type(e).__name__}: {e}") from e
        return out


@functools.lru_cache(maxsize=32)
def _compiled(config: TrainConfig, ensemble: bool, segments: tuple, fresh: bool,
              has_progress: bool = False, mesh=None, n_members=None):
    """``(jitted run(keys_or_state, data, first_epoch), host)``: the training program for
    one piece shape (``segments`` relative to ``first_epoch``, see :func:`_run_epochs`),
    cached on plain data only, never on callbacks (see :class:`_HostCalls`)."""
    host = _HostCalls() if has_progress else None

    def run(keys_or_state, data, first_epoch):
        if fresh:
            init = functools.partial(init_state, config=config)
            state = (jax.vmap(init, in_axes=(0, None)) if ensemble else init)(keys_or_state, data)
        else:
            state = keys_or_state
        state, hist = _run_epochs(state, data, config, first_epoch, segments, ensemble,
                                  host, mesh, n_members)
        if ensemble:  # History rows were stacked epoch-major; make it (seeds, E, ...)
            hist = jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), hist)
        return state, hist
    return jax.jit(run), host


def _program(config: TrainConfig, ensemble: bool, start_epoch: int, stop_epoch: int,
             fresh: bool, progress=None):
    """``make(mesh, n_members) -> run(keys_or_state, data)`` for :func:`_run_sharded`:
    epochs ``[start_epoch, stop_epoch)`` by the cached compiled program of their shape,
    with this call's progress callback armed."""
    segments = epoch_segments(config, start_epoch, stop_epoch)
    if not segments:
        raise ValueError(f"nothing to run: epochs [{start_epoch}, {stop_epoch}) is empty")
    relative = tuple((lo - start_epoch, hi - start_epoch, n) for lo, hi, n in segments)

    def make(mesh=None, n_members=None):
        fn, host = _compiled(config, ensemble, relative, fresh, progress is not None,
                             mesh, n_members)
        first = np.int32(start_epoch)
        if mesh is not None:  # a replicated scalar on the (possibly multi-process) mesh
            from jax.sharding import NamedSharding, PartitionSpec
            first = jax.device_put(first, NamedSharding(mesh, PartitionSpec()))
        if host is None:
            return lambda state, data: fn(state, data, first)
        return lambda state, data: host.run(fn, (state, data, first), progress)
    return make


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


def join_histories(parts, axis: int = 1) -> History:
    """Consecutive :class:`History` pieces joined along the epoch ``axis`` (1 for an
    ensemble's ``(S, E, ...)``, 0 for one model), as NumPy arrays."""
    return History(*(np.concatenate([np.asarray(getattr(p, f)) for p in parts], axis)
                     for f in History._fields))


def _train_in_pieces(config, ensemble, start_epoch, stop_epoch, members, fresh, data,
                     devices, progress, checkpoint):
    """Run ``[start_epoch, stop_epoch)`` piece by piece (:func:`checkpoint_pieces`),
    calling ``checkpoint``'s ``save`` on the host between pieces with host arrays."""
    every, save = checkpoint if checkpoint is not None else (None, None)
    if fresh and every is not None and every < stop_epoch - start_epoch:
        # initialise apart, so the first piece shares its program with the others (one
        # compilation fewer); App. A1's init is exact integer sums and elementwise maps,
        # the same bits fused or not (tests/test_resume.py checks this)
        members, fresh = _init_ensemble_fn(config)(members, data), False
    state, rows = members, []
    axis = 1 if ensemble else 0
    for i, (lo, hi) in enumerate(checkpoint_pieces(start_epoch, stop_epoch, every)):
        make = _program(config, ensemble, lo, hi, fresh and i == 0, progress)
        state, hist = _run_sharded(make, state, data, devices) if ensemble else make()(
            state, data)
        rows.append(hist)
        if save is None or jax.process_index() != 0:
            continue
        history = join_histories(rows, axis)
        host_state = jax.tree_util.tree_map(np.asarray, _split_keys(state)[0])
        try:
            save(hi - 1, history, host_state)
        except Exception as e:  # noqa: BLE001 - reported as one clear error
            raise HostCallbackError(f"checkpoint save after epoch {hi} failed: "
                                    f"{type(e).__name__}: {e}") from e
    if len(rows) == 1:
        return state, rows[0]
    return state, jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis), *rows)


def _check_config_against_data(data: np.ndarray, config: TrainConfig):
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if config.batch_max > data.shape[0]:
        raise ValueError(f"batch_max ({config.batch_max}) is larger than the data set "
                         f"({data.shape[0]} samples); lower batch_max")


def _as_key(seed_or_key) -> Array:
    if isinstance(seed_or_key, (int, np.integer)) and not isinstance(seed_or_key, bool):
        return jax.random.key(int(seed_or_key))
    key = seed_or_key
    if hasattr(key, "dtype") and hasattr(key, "shape"):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return key
        if key.dtype == np.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(jnp.asarray(key))
    raise TypeError(f"seed_or_key must be an int seed or one PRNG key (jax.random.key), got "
                    f"{seed_or_key!r}; for several seeds use train_ensemble")


def train(seed_or_key, data, config: TrainConfig = TrainConfig(),
          progress: ProgressFn | None = None) -> tuple[TrainState, History]:
    """Train one model from scratch.

    Args:
      seed_or_key: an int seed (``jax.random.key(seed)``) or a PRNG key.
      data: ``(N_D, D)`` binary data (numpy or jax; bool, int or float 0/1).
      config: :class:`TrainConfig`.
      progress: optional host callback ``progress(epoch, history_row)`` called once per
        epoch from inside the compiled program (``jax.debug.callback``).
    Returns:
      ``(TrainState, History)``; history fields have a leading ``(E,)`` axis.
    """
    data = check_data(data)
    _check_config_against_data(data, config)
    run = _program(config, False, 0, config.epochs, True, progress)()
    return run(_as_key(seed_or_key), jnp.asarray(data))


def ensemble_keys(seeds: Sequence[int] | Array) -> Array:
    """Typed keys ``(S,)`` for a sequence of int seeds (``jax.random.key(seed)`` each).

    ``ValueError`` naming the offending seeds unless they are distinct integers in
    ``[0, 2**32)`` (:func:`ncl._validate.seeds`): larger or negative ones would wrap
    modulo 2**32 and a repeated one would train the same member twice.
    """
    seeds = _v.seeds("seeds", seeds)
    return jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))


def _resolve_devices(devices) -> list:
    """``None``: every device of the run: all local devices, or, in a multi-process run
    (``jax.distributed.initialize`` called, ``jax.process_count() > 1``), all devices of
    all processes. An int: that many local devices. Else the given device list."""
    if devices is None:
        return list(jax.devices() if jax.process_count() > 1 else jax.local_devices())
    if isinstance(devices, (int, np.integer)):
        available = jax.local_devices()
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices={devices}, but {len(available)} local device(s) exist: "
                             f"{available}")
        return list(available[:devices])
    devices = list(devices)
    if not devices:
        raise ValueError("devices must not be empty")
    return devices


def _split_keys(tree):
    """Typed PRNG-key leaves -> their uint32 key data (arrays any process can place on a
    global sharding or gather); returns ``(tree, impls)``, ``impls[i]`` None for non-keys."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    impls = [jax.random.key_impl(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else None
             for a in leaves]
    raw = [jax.random.key_data(a) if impl is not None else a for a, impl in zip(leaves, impls)]
    return jax.tree_util.tree_unflatten(treedef, raw), impls


def _join_keys(tree, impls):
    """Inverse of :func:`_split_keys`."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves = [jax.random.wrap_key_data(a, impl=impl) if impl is not None else a
              for a, impl in zip(leaves, impls)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _run_sharded(make_fn, members, data, devices):
    """Run ``make_fn(mesh, n_members)(members, data)`` with the leading member axis of
    ``members`` sharded over ``devices`` (a one-axis mesh ``"seeds"``; data replicated).
    The member axis is padded to a multiple of the device count by repeating the last
    member; the padding is dropped from the results."""
    devices = _resolve_devices(devices)
    if len(devices) == 1:
        with jax.default_device(devices[0]):
            return make_fn(None, None)(members, data)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    n = jax.tree_util.tree_leaves(members)[0].shape[0]
    pad = -n % len(devices)
    if pad:
        members = jax.tree_util.tree_map(
            lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]), members)
    mesh = Mesh(np.asarray(devices), ("seeds",))
    multi_process = any(d.process_index != jax.process_index() for d in devices)
    if not multi_process:
        members = jax.device_put(members, NamedSharding(mesh, PartitionSpec("seeds")))
        data = jax.device_put(data, NamedSharding(mesh, PartitionSpec()))
        out = make_fn(mesh, n)(members, data)
        return jax.tree_util.tree_map(lambda a: a[:n], out) if pad else out
    # Several processes (jax.distributed): every process holds the same host values and
    # places them onto the global mesh (each keeps its own devices' part); the results
    # are gathered so that every process returns the whole ensemble.
    from jax.experimental import multihost_utils
    raw, impls = _split_keys(members)
    raw = jax.tree_util.tree_map(np.asarray, raw)
    members = _join_keys(jax.device_put(raw, NamedSharding(mesh, PartitionSpec("seeds"))),
                         impls)
    data = jax.device_put(np.asarray(data), NamedSharding(mesh, PartitionSpec()))
    raw, impls = _split_keys(make_fn(mesh, n)(members, data))
    gathered = multihost_utils.process_allgather(raw, tiled=True)
    return _join_keys(jax.tree_util.tree_map(lambda g: jnp.asarray(g[:n]), gathered), impls)


def train_ensemble(seeds, data, config: TrainConfig = TrainConfig(),
                   progress: ProgressFn | None = None, devices=None,
                   checkpoint: tuple[int, CheckpointFn] | None = None
                   ) -> tuple[TrainState, History]:
    """Train an ensemble of independent models, vmapped over seeds, as one XLA program.

    Args:
      seeds: ``S`` int seeds (or an ``(S,)`` array of typed keys).
      data: ``(N_D, D)`` binary data, shared by all members.
      config: :class:`TrainConfig`, shared by all members.
      progress: optional ``progress(epoch, history_row)``; the row's fields carry a
        leading ``(S,)`` member axis.
      devices: where to run: ``None`` (all local devices; in a multi-process run started
        with ``jax.distributed.initialize``, all devices of all processes), a count of
        local devices, or a list of devices. With several devices the seed axis is
        sharded over a one-axis mesh. Every member keeps its seed, key and step counter
        exactly, and its arithmetic equals the single-device run up to float32 round-off:
        chains and parameters agree until the first flipped draw, and in distribution
        after (see ``tests/test_sharding.py``). Across processes every
        process must call this with the same arguments, every process gets the whole
        ensemble back, and ``progress``/``checkpoint`` run in one process only (the one
        holding the mesh's first device); ``tests/test_multihost.py`` runs 2 processes.
      checkpoint: optional ``(every, save)``: the epochs run in pieces cut after every
        ``every``-th epoch (:func:`checkpoint_pieces`), and between pieces, on the host,
        ``save(epoch, history, state)`` is called with the last epoch run (0-based), the
        :class:`History` of all epochs run so far in this call (NumPy, fields
        ``(S, epoch + 1 - start, ...)``) and the ensemble state after it (NumPy; PRNG keys
        as raw ``uint32`` key data, as :mod:`ncl.io` saves them); resume with
        :func:`continue_training` from ``epoch + 1``. An exception in ``save`` stops
        training before the next piece and raises :class:`HostCallbackError`; one in
        ``progress`` too, at the end of the piece (never inside XLA). The compiled
        programs are cached per shape and config, not per callback: a new callback
        reuses them.
    Returns:
      ``(TrainState, History)`` with a leading ``(S,)`` axis on every leaf; history
      fields are ``(S, E, ...)``. Member ``i`` is ``train(seeds[i], data, config)`` up to
      float32 round-off (see the module docstring).
    """
    data = check_data(data)
    _check_config_against_data(data, config)
    if hasattr(seeds, "dtype") and jnp.issubdtype(seeds.dtype, jax.dtypes.prng_key):
        keys = seeds
    else:
        keys = ensemble_keys(seeds)
    check_fits_in_memory(config, int(keys.shape[0]), data.shape[0], data.shape[1])
    return _train_in_pieces(config, True, 0, config.epochs, keys, True, jnp.asarray(data),
                            devices, progress, _check_checkpoint(checkpoint))


def _check_checkpoint(checkpoint):
    if checkpoint is None:
        return None
    every, save = checkpoint
    if not isinstance(every, (int, np.integer)) or every < 1 or not callable(save):
        raise ValueError(f"checkpoint must be (every >= 1, callable), got {checkpoint!r}")
    return int(every), save


def init_ensemble_state(seeds, data, config: TrainConfig = TrainConfig()) -> TrainState:
    """Initial ensemble :class:`TrainState` (leading ``(S,)`` axis), as ``train_ensemble``
    builds it; use with :func:`continue_training` to run epochs in pieces."""
    data = check_data(data)
    _check_config_against_data(data, config)
    keys = seeds if (hasattr(seeds, "dtype") and jnp.issubdtype(seeds.dtype, jax.dtypes.prng_key)
                     ) else ensemble_keys(seeds)
    return _init_ensemble_fn(config)(keys, jnp.asarray(data))


@functools.lru_cache(maxsize=32)
def _init_ensemble_fn(config: TrainConfig):
    """``jit(vmap(init_state))`` for one config: ``(keys (S,), data) -> TrainState``."""
    return jax.jit(jax.vmap(functools.partial(init_state, config=config), in_axes=(0, None)))


def continue_training(state: TrainState, data, config: TrainConfig, start_epoch: int,
                      stop_epoch: int | None = None, ensemble: bool = True,
                      progress: ProgressFn | None = None, devices=None,
                      checkpoint: tuple[int, CheckpointFn] | None = None
                      ) -> tuple[TrainState, History]:
    """Run epochs ``[start_epoch, stop_epoch)`` (default: to ``config.epochs``) from ``state``.

    ``state`` must be the state after ``start_epoch`` epochs (or the initial state for 0).
    Running the epochs in pieces gives, bit for bit, the uninterrupted result on the same
    devices: step keys depend only on ``state.step`` and the padding only on the epoch
    (another device count changes shapes: then it equals the uninterrupted run only as
    :func:`train_ensemble` equals the single-device run). ``devices`` as in
    :func:`train_ensemble`, and ``checkpoint`` too.
    Returns the new state and the History rows of the epochs run.
    """
    data = check_data(data)
    _check_config_against_data(data, config)
    _check_state(state, config, data.shape[1], ensemble)
    for name, value in (("start_epoch", start_epoch), ("stop_epoch", stop_epoch)):
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, (int, np.integer))):
            raise TypeError(f"{name} must be an int, got {value!r}")
    start_epoch = int(start_epoch)
    stop_epoch = config.epochs if stop_epoch is None else int(stop_epoch)
    if not 0 <= start_epoch < stop_epoch <= config.epochs:
        raise ValueError(f"need 0 <= start_epoch < stop_epoch <= epochs ({config.epochs}), "
                         f"got start_epoch={start_epoch}, stop_epoch={stop_epoch}")
    steps = np.asarray(state.step)
    expected = start_epoch * config.steps_per_epoch
    if not np.all(steps == expected):
        raise ValueError(f"state has taken {np.unique(steps).tolist()} steps, but epoch "
                         f"{start_epoch} starts at step {expected}")
    check_fits_in_memory(config, int(np.shape(state.step)[0]) if ensemble else 1,
                         data.shape[0], data.shape[1])
    return _train_in_pieces(config, ensemble, start_epoch, stop_epoch, state, False,
                            jnp.asarray(data), devices, progress,
                            _check_checkpoint(checkpoint))


def _check_state(state, config: TrainConfig, n_visible: int, ensemble: bool) -> None:
    """Shapes of a :class:`TrainState` against the config and the data width (host side),
    so :func:`continue_training` fails with one clear error instead of inside JAX."""
    if not isinstance(state, TrainState):
        raise TypeError(f"state must be a TrainState (from train_ensemble, "
                        f"init_ensemble_state or ncl.io.load_run(...).state), got "
                        f"{type(state).__name__}")
    rank = getattr(getattr(state.params, "w", None), "ndim", None)
    if rank is not None and rank != (3 if ensemble else 2):
        raise ValueError(
            f"state.params.w has shape {tuple(state.params.w.shape)}: "
            + ("ensemble=True needs a leading member axis, (members, D, L); pass "
               "ensemble=False for one model" if ensemble else
               "ensemble=False needs ONE model, (D, L); pass ensemble=True for an ensemble "
               "state"))
    check_params(state.params, config.model, n_visible, -1 if ensemble else None,
                 name="state.params")
    lead = tuple(state.params.w.shape[:1]) if ensemble else ()
    want = lead + (config.n_chains, n_visible)
    if tuple(state.chain.x.shape) != want:
        raise ValueError(f"state.chain.x has shape {tuple(state.chain.x.shape)}, expected "
                         f"{want} (n_chains = {config.n_chains}); use the config the state "
                         "was trained with")
    if tuple(jnp.shape(state.center)) != lead + (n_visible,):
        raise ValueError(f"state.center has shape {tuple(jnp.shape(state.center))}, expected "
                         f"{lead + (n_visible,)}")


def member(tree, i: int):
    """Member ``i`` of an ensemble pytree (``TrainState`` or ``History``)."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


DIVERGENCE_FACTOR = 10.0  # a log-likelihood 10x worse than coin flips (-D ln 2) diverged


def divergence_epochs(history, n_visible: int) -> np.ndarray:
    """First diverged epoch of each member (0-based), -1 where none: host side.

    An epoch diverged when a parameter is non-finite after it (``History.finite``) or its
    on-the-fly log-likelihood is non-finite or below ``-DIVERGENCE_FACTOR · D · ln 2``
    nats per sample, ten times worse than the model that flips a coin for every pixel
    (a blown-up model whose weights are finite but huge, e.g. a log-likelihood of -1e31).

    ``history``: fields ``(S, E)`` (an ensemble) or ``(E,)``. Returns ``(S,)`` or ``()``.
    """
    finite = np.asarray(history.finite, bool)
    ll = np.asarray(history.loglik, np.float64)
    threshold = -DIVERGENCE_FACTOR * n_visible * math.log(2.0)
    with np.errstate(invalid="ignore"):
        bad = ~finite | ~np.isfinite(ll) | (ll < threshold)
    first = np.argmax(bad, axis=-1)
    return np.where(bad.any(axis=-1), first, -1)


def estimate_memory_bytes(config: TrainConfig, n_members: int, n_samples: int,
                          n_visible: int) -> int:
    """A coarse estimate (within a factor of about 2) of the memory a training run needs.

    Per member, kept for the whole run: parameters and RMSprop state (about ``4·D·L``
    floats), chain and centering vector. Per member of one chunk
    (``TrainConfig.member_chunk``), during a step: the trajectory (``T·C·(D + L)``, twice
    for the gradient), the padded minibatch (``N·D``), gradient terms (``2·D·L``), the
    App. A1 init product (``L·N_D``) and, with the monitor, the likelihood of the data
    given p̄ over the hidden states (``S·N_D``). Shared: the data (``N_D·D``). All float32,
    times 2 for XLA's temporaries. Used to refuse sizes that cannot fit before
    compiling, not as a measurement (``benchmarks/bench_scale.py`` measures).
    """
    D, L, N_D = int(n_visible), int(config.model.n_hidden), int(n_samples)
    C, Tn = config.n_chains, config.chain_length
    S = config.model.n_states if config.monitor and monitor_lib.monitor_supported(
        config.model) else 0
    per_member = 4 * D * L + 3 * D + 2 * L + C * D
    per_chunk_member = 2 * Tn * C * (D + L) + config.batch_max * D + 2 * D * L + L * N_D + S * N_D
    chunk = min(n_members, config.member_chunk)
    floats = n_members * per_member + chunk * per_chunk_member + N_D * D
    return int(2 * 4 * floats)


def available_memory_bytes() -> int | None:
    """Memory of the first device (``bytes_limit`` of an accelerator), or the host's
    physical memory for CPU devices; None where unknown."""
    import os
    try:
        stats = jax.devices()[0].memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"])
    except Exception:  # noqa: BLE001 - CPU devices have no memory_stats
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(config: TrainConfig, n_members: int, n_samples: int,
                         n_visible: int, n_devices: int = 1) -> None:
    """``ValueError`` before compiling when :func:`estimate_memory_bytes` (spread over
    ``n_devices`` sharing one host for CPU devices) exceeds the available memory."""
    need = estimate_memory_bytes(config, n_members, n_samples, n_visible)
    have = available_memory_bytes()
    on_cpu = jax.devices()[0].platform == "cpu"
    if have is None or need <= have * (1 if on_cpu else max(1, n_devices)):
        return
    gib = 2.0 ** 30
    raise ValueError(
        f"this run needs about {need / gib:.1f} GiB ({n_members} members, L = "
        f"{config.model.n_hidden}, D = {n_visible}, {n_samples} samples, T = "
        f"{config.chain_length}), more than the {have / gib:.1f} GiB available; train fewer "
        f"seeds per call, lower member_chunk ({config.member_chunk}), L or the data size")
