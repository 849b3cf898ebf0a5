"""Training: the paper's protocol as one pure, jit-compiled function; ensembles via vmap.

* :class:`TrainConfig` (defined in :mod:`ncl.protocol`, with its schedules) — frozen
  dataclass; defaults are the paper's protocol (Sect. IV A).
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

Layer: near the top of the numerical core: above :mod:`ncl.protocol` (the config),
:mod:`ncl.sharding` (devices, member chunks, memory), :mod:`ncl.estimators` (the gradient
chosen by ``family`` and ``gradient``), :mod:`ncl.monitor` and :mod:`ncl.chain`; below
:mod:`ncl.diagnostics` and
the workflows. Sizes as in :mod:`ncl.model` (``E`` members, ``T`` chain length,
``N`` minibatch rows).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ncl import _compat
from ncl import chain as chain_lib
from ncl import estimators
from ncl import monitor as monitor_lib
from ncl import sharding
from ncl.data import check_data  # noqa: F401  (re-exported: ncl.training.check_data)
from ncl.estimators import FAMILIES, GRADIENT_FORMS  # noqa: F401  (public names)
from ncl.keys import as_key, ensemble_keys, member_keys  # noqa: F401  (ensemble_keys: public)
from ncl.model import Params, check_params, data_center, init_params
from ncl.protocol import (TrainConfig, checkpoint_pieces, epoch_segments,  # noqa: F401
                          progress_interval,
                          make_optimizer, minibatch_size)
from ncl.sharding import check_fits_in_memory, estimate_memory_bytes  # noqa: F401

Array = jax.Array


class TrainState(NamedTuple):
    """Everything a run needs to continue (a pytree; an ensemble has a leading ``(E,)``
    member axis).

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
    """Per-epoch training record, each field with a leading ``(n_epochs,)`` epoch axis
    (``(E, n_epochs, ...)`` for an ensemble).

    Attributes:
      loglik: on-the-fly log-likelihood (App. A3), averaged over the epoch's steps.
      loglik_precise: log-likelihood of the whole data set given the epoch's hidden
        occupancy (eqs. 5, 7), at the end of the epoch (NaN if monitoring is off).
      sigma_rb: entropy production rate σ (eq. 21) from the Rao–Blackwellised M of the
        epoch's training-chain samples (NaN if monitoring is off).
      sigma_counts: σ from transition counts, the paper's estimator (biased low).
      batch_size: minibatch size ``N_e`` used in the epoch.
      hidden_occupancy: ``(n_epochs, L)`` mean of ``z`` over the epoch's training-chain
        samples.
      finite: whether all parameters were finite at the end of the epoch.
    """

    loglik: Array
    loglik_precise: Array
    sigma_rb: Array
    sigma_counts: Array
    batch_size: Array
    hidden_occupancy: Array
    finite: Array


def init_state(key: Array, data: Array, config: TrainConfig) -> TrainState:
    """Initial :class:`TrainState`: App. A1 parameters, chain from random data points.

    ``key`` is a typed PRNG key; ``data (N_D, D)`` float32 in {0, 1}.
    """
    k_init, k_x0, k_run = jax.random.split(key, 3)
    params = estimator(config).tie(init_params(k_init, data, config.model,
                                               config.init_subset_fraction))
    x0 = data[jax.random.randint(k_x0, (config.n_chains,), 0, data.shape[0])]
    return TrainState(params=params, opt_state=make_optimizer(config).init(params),
                      chain=chain_lib.init(x0), center=data_center(data, config.model),
                      key=k_run, step=jnp.zeros((), jnp.int32))


def estimator(config: TrainConfig) -> estimators.Estimator:
    """The :class:`ncl.estimators.Estimator` (gradient, tie, model check) that
    ``config.family`` and ``config.gradient`` select."""
    return estimators.get_estimator(config.family, config.gradient)


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
    est = estimator(config)
    grads, loglik = est.gradient(state.params, traj, batch, state.center, config.model, mask,
                                 hidden_logits=g)   # the chain's g(x'(t)), where it is used
    ascent = jax.tree_util.tree_map(jnp.negative, grads)
    updates, opt_state = make_optimizer(config).update(ascent, state.opt_state, state.params)
    params = est.tie(optax.apply_updates(state.params, updates))
    new_state = state._replace(params=params, opt_state=opt_state, chain=chain_state,
                               step=state.step + 1)
    return new_state, StepInfo(loglik, jnp.mean(traj.z, axis=(0, 1)), traj, g)


def _epoch_steps(state: TrainState, data: Array, epoch: Array, config: TrainConfig,
                 n_pad: int):
    """The ``steps_per_epoch`` steps of one epoch with a static padded minibatch of
    ``n_pad`` rows: ``(state, monitor accumulator or None, loglik (K,), hidden_mean (K, L))``
    with ``K = steps_per_epoch``."""
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
    return state, acc, loglik, hidden_mean


def _epoch_row(state: TrainState, acc, loglik: Array, hidden_mean: Array, data: Array,
               epoch: Array, config: TrainConfig) -> History:
    """The History row of an epoch from :func:`_epoch_steps`' outputs (the monitor's
    end-of-epoch summary: precise log-likelihood and σ)."""
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p))
                                for p in jax.tree_util.tree_leaves(state.params)]))
    if acc is not None:
        mon = monitor_lib.summarize(acc, state.params, data, config.model)
        ll_precise, sigma_rb, sigma_counts = mon.loglik_precise, mon.sigma_rb, mon.sigma_counts
    else:
        ll_precise = sigma_rb = sigma_counts = jnp.float32(jnp.nan)
    return History(loglik=jnp.mean(loglik), loglik_precise=ll_precise,
                   sigma_rb=sigma_rb, sigma_counts=sigma_counts,
                   batch_size=minibatch_size(epoch, config),
                   hidden_occupancy=jnp.mean(hidden_mean, axis=0), finite=finite)


def run_epoch(state: TrainState, data: Array, epoch: Array, config: TrainConfig,
              n_pad: int | None = None) -> tuple[TrainState, History]:
    """``steps_per_epoch`` steps with the epoch's minibatch size; returns one History row."""
    n_pad = config.batch_max if n_pad is None else n_pad
    state, acc, loglik, hidden_mean = _epoch_steps(state, data, epoch, config, n_pad)
    return state, _epoch_row(state, acc, loglik, hidden_mean, data, epoch, config)


def bucketed_epoch(config: TrainConfig):
    """``epoch_fn(state, data, epoch) -> (state, History row)`` for any epoch of the run:
    the steps padded to the epoch's batch bucket (:func:`epoch_segments`), chosen by
    ``lax.switch`` on the traced ``epoch``, then the monitor's summary once.

    One program therefore serves every epoch and every piece of the same length, and
    the monitor's summary (the costliest part to compile) is compiled once, not once
    per bucket; each epoch runs exactly the operations of :func:`run_epoch` with its
    bucket's ``n_pad``."""
    segments = epoch_segments(config)
    if len(segments) == 1:
        return functools.partial(run_epoch, config=config, n_pad=segments[0][2])
    starts = np.asarray([lo for lo, _, _ in segments[1:]], np.int32)
    branches = [functools.partial(_epoch_steps, config=config, n_pad=n_pad)
                for _, _, n_pad in segments]

    def epoch_fn(state, data, epoch):
        bucket = jnp.sum(epoch >= starts).astype(jnp.int32)
        state, acc, loglik, hidden_mean = jax.lax.switch(bucket, branches, state, data, epoch)
        return state, _epoch_row(state, acc, loglik, hidden_mean, data, epoch, config)
    return epoch_fn


ProgressFn = Callable[[int, History], None]


def _run_epochs(state, data, config, first_epoch, n_epochs, member_axis, host,
                mesh=None, n_members=None):
    """Epochs ``first_epoch + [0, n_epochs)`` as one ``lax.scan`` of
    :func:`bucketed_epoch` (``first_epoch`` a traced int32, so one compilation serves
    every piece of the same length). ``host`` (:class:`_HostCalls`, or None) receives the
    per-epoch progress callback."""
    from jax.sharding import NamedSharding, PartitionSpec

    def to_host_view(tree):
        if mesh is None:
            return tree
        # gather once (replicated), drop the padding members
        tree = jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec()))
        return jax.tree_util.tree_map(lambda a: a[:n_members], tree)

    epoch_fn = bucketed_epoch(config)
    if member_axis:
        epoch_fn = sharding.member_chunked(jax.vmap(epoch_fn, in_axes=(0, None, None)),
                                           config.member_chunk,
                                           1 if mesh is None else mesh.devices.size)

    def body(s, epoch):
        s, row = epoch_fn(s, data, epoch)
        if host is not None:
            jax.debug.callback(host.on_epoch, epoch, to_host_view(row))
        return s, row

    return jax.lax.scan(body, state, first_epoch + jnp.arange(n_epochs, dtype=jnp.int32))


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
def _compiled(config: TrainConfig, ensemble: bool, n_epochs: int, fresh: bool,
              has_progress: bool = False, mesh=None, n_members=None):
    """``(jitted run(keys_or_state, data, first_epoch), host)``: the training program for
    a piece of ``n_epochs`` epochs starting at any ``first_epoch`` (see
    :func:`_run_epochs`), cached on plain data only, never on callbacks (see
    :class:`_HostCalls`)."""
    host = _HostCalls() if has_progress else None

    def run(keys_or_state, data, first_epoch):
        if fresh:
            init = functools.partial(init_state, config=config)
            state = (jax.vmap(init, in_axes=(0, None)) if ensemble else init)(keys_or_state, data)
        else:
            state = keys_or_state
        state, hist = _run_epochs(state, data, config, first_epoch, n_epochs, ensemble,
                                  host, mesh, n_members)
        if ensemble:  # History rows were stacked epoch-major; make it (E, n_epochs, ...)
            hist = jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), hist)
        return state, hist
    return _compat.jit(run), host


def _program(config: TrainConfig, ensemble: bool, start_epoch: int, stop_epoch: int,
             fresh: bool, progress=None):
    """``make(mesh, n_members) -> run(keys_or_state, data)`` for :func:`ncl.sharding.run_sharded`:
    epochs ``[start_epoch, stop_epoch)`` by the cached compiled program of their shape,
    with this call's progress callback armed."""
    if not start_epoch < stop_epoch:
        raise ValueError(f"nothing to run: epochs [{start_epoch}, {stop_epoch}) is empty")

    def make(mesh=None, n_members=None):
        fn, host = _compiled(config, ensemble, stop_epoch - start_epoch, fresh,
                             progress is not None, mesh, n_members)
        first = np.int32(start_epoch)
        if mesh is not None:  # a replicated scalar on the (possibly multi-process) mesh
            from jax.sharding import NamedSharding, PartitionSpec
            first = jax.device_put(first, NamedSharding(mesh, PartitionSpec()))
        if host is None:
            return lambda state, data: fn(state, data, first)
        return lambda state, data: host.run(fn, (state, data, first), progress)
    return make


def join_histories(parts, axis: int = 1) -> History:
    """Consecutive :class:`History` pieces joined along the epoch ``axis`` (1 for an
    ensemble's ``(E, n_epochs, ...)``, 0 for one model), as NumPy arrays."""
    return History(*(np.concatenate([np.asarray(getattr(p, f)) for p in parts], axis)
                     for f in History._fields))


def host_side(progress) -> bool:
    """Whether ``progress`` is reported on the host between compiled pieces
    (``progress.host_side`` true, as for :class:`ncl.progress.EpochProgress` and
    :class:`ncl.metrics.MetricsCallback`) instead of by a callback inside the program.
    Programs without a host callback can be kept in JAX's persistent compilation cache."""
    return bool(getattr(progress, "host_side", False))


def _report_piece(progress, lo: int, hist, ensemble: bool) -> None:
    rows = jax.tree_util.tree_map(np.asarray, hist)
    n = np.shape(rows.loglik)[1 if ensemble else 0]
    for j in range(n):
        row = jax.tree_util.tree_map(lambda a, j=j: a[:, j] if ensemble else a[j], rows)
        try:
            progress(lo + j, row)
        except Exception as e:  # noqa: BLE001 - reported as one clear error
            raise HostCallbackError(f"the progress callback failed during training: "
                                    f"{type(e).__name__}: {e}") from e


def _train_in_pieces(config, ensemble, start_epoch, stop_epoch, members, fresh, data,
                     devices, progress, checkpoint):
    """Run ``[start_epoch, stop_epoch)`` piece by piece (:func:`checkpoint_pieces`),
    calling ``checkpoint``'s ``save`` on the host between pieces with host arrays. A
    host-side ``progress`` (:func:`host_side`) is called there too, once per epoch of the
    piece; without a checkpoint the run is then cut every :func:`progress_interval`
    epochs."""
    every, save = checkpoint if checkpoint is not None else (None, None)
    on_host = progress if host_side(progress) else None
    cut = every if every is not None or on_host is None else progress_interval(config)
    if fresh and cut is not None and cut < stop_epoch - start_epoch:
        # initialise apart, so the first piece shares its program with the others (one
        # compilation fewer); App. A1's init is exact integer sums and elementwise maps,
        # the same bits fused or not (tests/test_resume.py checks this)
        members, fresh = _init_ensemble_fn(config)(members, data), False
    state, rows = members, []
    axis = 1 if ensemble else 0
    for i, (lo, hi) in enumerate(checkpoint_pieces(start_epoch, stop_epoch, cut)):
        make = _program(config, ensemble, lo, hi, fresh and i == 0,
                        None if on_host is not None else progress)
        state, hist = sharding.run_sharded(make, state, data, devices) if ensemble else make()(
            state, data)
        rows.append(hist)
        if jax.process_index() != 0:
            continue
        if on_host is not None:
            _report_piece(on_host, lo, hist, ensemble)
        if save is None:
            continue
        history = join_histories(rows, axis)
        host_state = jax.tree_util.tree_map(np.asarray, sharding.split_keys(state)[0])
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
      ``(TrainState, History)``; history fields have a leading ``(n_epochs,)`` axis.
    """
    data = check_data(data)
    _check_config_against_data(data, config)
    run = _program(config, False, 0, config.epochs, True, progress)()
    return run(as_key(seed_or_key), jnp.asarray(data))


def train_ensemble(seeds, data, config: TrainConfig = TrainConfig(),
                   progress: ProgressFn | None = None, devices=None,
                   checkpoint: tuple[int, CheckpointFn] | None = None
                   ) -> tuple[TrainState, History]:
    """Train an ensemble of independent models, vmapped over seeds, as one XLA program.

    Args:
      seeds: ``E`` int seeds (or an ``(E,)`` array of typed keys).
      data: ``(N_D, D)`` binary data, shared by all members.
      config: :class:`TrainConfig`, shared by all members.
      progress: optional ``progress(epoch, history_row)``; the row's fields carry a
        leading ``(E,)`` member axis.
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
        ``(E, epoch + 1 - start, ...)``) and the ensemble state after it (NumPy; PRNG keys
        as raw ``uint32`` key data, as :mod:`ncl.io` saves them); resume with
        :func:`continue_training` from ``epoch + 1``. An exception in ``save`` stops
        training before the next piece and raises :class:`HostCallbackError`; one in
        ``progress`` too, at the end of the piece (never inside XLA). The compiled
        programs are cached per shape and config, not per callback: a new callback
        reuses them.
    Returns:
      ``(TrainState, History)`` with a leading ``(E,)`` axis on every leaf; history
      fields are ``(E, n_epochs, ...)``. Member ``i`` is ``train(seeds[i], data, config)`` up to
      float32 round-off (see the module docstring).
    """
    data = check_data(data)
    _check_config_against_data(data, config)
    keys = member_keys(seeds)
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
    """Initial ensemble :class:`TrainState` (leading ``(E,)`` axis), as ``train_ensemble``
    builds it; use with :func:`continue_training` to run epochs in pieces."""
    data = check_data(data)
    _check_config_against_data(data, config)
    keys = member_keys(seeds)
    return _init_ensemble_fn(config)(keys, jnp.asarray(data))


@functools.lru_cache(maxsize=32)
def _init_ensemble_fn(config: TrainConfig):
    """``jit(vmap(init_state))`` for one config: ``(keys (E,), data) -> TrainState``."""
    return _compat.jit(jax.vmap(functools.partial(init_state, config=config),
                                in_axes=(0, None)))


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

    ``history``: fields ``(E, n_epochs)`` (an ensemble) or ``(n_epochs,)``. Returns
    ``(E,)`` or ``()``.
    """
    finite = np.asarray(history.finite, bool)
    ll = np.asarray(history.loglik, np.float64)
    threshold = -DIVERGENCE_FACTOR * n_visible * math.log(2.0)
    with np.errstate(invalid="ignore"):
        bad = ~finite | ~np.isfinite(ll) | (ll < threshold)
    first = np.argmax(bad, axis=-1)
    return np.where(bad.any(axis=-1), first, -1)


