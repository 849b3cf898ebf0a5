"""Where an ensemble runs: members sharded over devices, chunked in time, and whether
they fit in memory.

Layer: above :mod:`ncl.trajectory` (it needs only :mod:`ncl.monitor`, for the size of
the monitor's tables), below :mod:`ncl.training`, which hands it compiled programs to
place. Sizes as in :mod:`ncl.model` (``E`` members).

* devices: :func:`resolve_devices`, :func:`run_sharded` (the member axis on a one-axis
  mesh ``"seeds"``, across processes too), :func:`split_keys` / :func:`join_keys`
  (typed PRNG keys to raw ``uint32`` data and back, for placing and gathering);
* chunks: :func:`member_chunks`, :func:`member_chunked` (an epoch over chunks of
  members in turn, ``TrainConfig.member_chunk``);
* memory: :func:`estimate_memory_bytes`, :func:`available_memory_bytes`,
  :func:`check_fits_in_memory` (refuse sizes that cannot fit before compiling).

The ``config`` arguments are :class:`ncl.training.TrainConfig` objects (read by
attribute; this module does not import :mod:`ncl.training`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ncl import monitor as monitor_lib


# ----------------------------------------------------------------------------- chunks

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


def member_chunked(vmapped_epoch, member_chunk: int, n_devices: int):
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


# ----------------------------------------------------------------------------- devices

def resolve_devices(devices) -> list:
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


def split_keys(tree):
    """Typed PRNG-key leaves -> their uint32 key data (arrays any process can place on a
    global sharding or gather); returns ``(tree, impls)``, ``impls[i]`` None for non-keys."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    impls = [jax.random.key_impl(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else None
             for a in leaves]
    raw = [jax.random.key_data(a) if impl is not None else a for a, impl in zip(leaves, impls)]
    return jax.tree_util.tree_unflatten(treedef, raw), impls


def join_keys(tree, impls):
    """Inverse of :func:`split_keys`."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves = [jax.random.wrap_key_data(a, impl=impl) if impl is not None else a
              for a, impl in zip(leaves, impls)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def run_sharded(make_fn, members, data, devices):
    """Run ``make_fn(mesh, n_members)(members, data)`` with the leading member axis of
    ``members`` sharded over ``devices`` (a one-axis mesh ``"seeds"``; data replicated).
    The member axis is padded to a multiple of the device count by repeating the last
    member; the padding is dropped from the results."""
    devices = resolve_devices(devices)
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
    raw, impls = split_keys(members)
    raw = jax.tree_util.tree_map(np.asarray, raw)
    members = join_keys(jax.device_put(raw, NamedSharding(mesh, PartitionSpec("seeds"))),
                         impls)
    data = jax.device_put(np.asarray(data), NamedSharding(mesh, PartitionSpec()))
    raw, impls = split_keys(make_fn(mesh, n)(members, data))
    gathered = multihost_utils.process_allgather(raw, tiled=True)
    return join_keys(jax.tree_util.tree_map(lambda g: jnp.asarray(g[:n]), gathered), impls)


# ----------------------------------------------------------------------------- memory

def estimate_memory_bytes(config, n_members: int, n_samples: int,
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


def check_fits_in_memory(config, n_members: int, n_samples: int,
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
