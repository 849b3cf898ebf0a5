"""Helpers shared by the test modules (fixtures are in ``conftest.py``): the repository
root, exact-enumeration references in NumPy float64 (independent of ncl's JAX code),
random model parameters and small configurations, chi-square sampling checks, and what
two trainings of the same seeds may be asked to agree on.

Test modules import from here, never from one another."""
import itertools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ncl import model as M

#: The repository root (``tests/..``).
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- #
# Exact-enumeration references (NumPy float64)
# --------------------------------------------------------------------------- #


def log_sigmoid(u):
    """``log σ(u)``, elementwise, without overflow."""
    return -np.logaddexp(0.0, -u)


def hidden_states(L: int, hidden: str) -> np.ndarray:
    """All hidden states as rows: ``(L, L)`` one-hot, or ``(2^L, L)`` bit vectors (state
    ``s`` has bit ``b`` = ``(s >> b) & 1``)."""
    if hidden == "onehot":
        return np.eye(L)
    return np.array([[(s >> b) & 1 for b in range(L)] for s in range(2 ** L)], np.float64)


# --------------------------------------------------------------------------- #
# Random parameters, small configurations, chi-square checks
# --------------------------------------------------------------------------- #

# Chi-square tests: each uses a fixed key, so it is deterministic; the threshold is the
# (1 - ALPHA) quantile, i.e. a false-alarm rate of ALPHA per test had the key been random.
ALPHA = 1e-4


def chi2_quantile(dof: int, alpha: float = ALPHA) -> float:
    """Upper quantile of chi-square(dof) by the Wilson–Hilferty approximation."""
    # z for the upper tail via an inverse-erfc bisection (no scipy dependency)
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2)) > alpha:
            lo = mid
        else:
            hi = mid
    z = lo
    k = dof
    return k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3


def chi2_stat(counts, probs):
    """``(statistic, degrees of freedom)`` of observed ``counts`` against ``probs``."""
    counts = np.asarray(counts, np.float64)
    expected = counts.sum() * np.asarray(probs, np.float64)
    keep = expected > 0
    assert counts[~keep].sum() == 0, "sampled a zero-probability outcome"
    return float((((counts - expected) ** 2)[keep] / expected[keep]).sum()), int(keep.sum()) - 1


def random_params(key, D, L, scale=1.0, a_zero=False):
    """Random :class:`ncl.model.Params` for ``D`` visible and ``L`` hidden units (``a = 0``
    with ``a_zero``)."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return M.Params(w=scale * jax.random.normal(k1, (D, L)),
                    a=jnp.zeros(D) if a_zero else 0.5 * jax.random.normal(k2, (D,)),
                    wbar=scale * jax.random.normal(k3, (L, D)),
                    abar=0.5 * jax.random.normal(k4, (L,)))


def all_binary(n):
    """All ``2**n`` binary vectors, ``(2**n, n)`` float32, the first coordinate most
    significant."""
    return np.array(list(itertools.product([0, 1], repeat=n)), np.float32)


CONFIGS = [M.ModelConfig(n_hidden=3, hidden="onehot", recognition=r)
           for r in M.RECOGNITION_KINDS] + [M.ModelConfig(n_hidden=3, hidden="binary")]


# --------------------------------------------------------------------------- #
# Agreement of two trainings of the same seeds
# --------------------------------------------------------------------------- #

# What two trainings of the same seeds may be asked to agree on when their XLA programs
# differ: an ensemble member against the single run (vmap changes the batch shape), the
# seed axis sharded over devices or processes, member chunking, another gradient form.
#
# Guaranteed, whatever the CPU:
#
# * Everything integer is bit-identical: the PRNG keys (``state.key``), the step counters,
#   shapes, minibatch sizes; the sampled chain and minibatch *random numbers* too (Threefry
#   of the member's key and step).
# * Float arithmetic is only equal up to round-off: XLA does not promise the same bits for
#   a matrix product at another batch shape (blocking, vector width and summation order
#   depend on the shape and on the CPU's caches). A Bernoulli draw ``u < p`` whose ``p`` lies
#   within round-off of ``u`` can therefore flip, and from there the chaotic chain (and,
#   through RMSprop's division by ``sqrt(nu)``, the parameters) goes elsewhere: on a
#   2-core AMD EPYC the 20-step sharded run's weights differed from the single-device run
#   by 0.79. Equal until the first flipped draw, statistically equivalent after it.
#
# So the checks here are: integers exactly; the *first* training step to float32 round-off
# for nearly every parameter (one flipped draw at step 1 changes under 0.1% of the entries,
# measured; a 10-ulp perturbation of every parameter changes under 0.2%), with each member
# much closer to the same seed's reference than to any other seed's (a permutation,
# duplication or dropped member breaks this: seeds differ in ~70% of the entries after one
# step); the first step's log-likelihood for all members but one (a flip moves one member,
# a permutation two); and the final log-likelihoods in distribution only.


def flat_params(params) -> np.ndarray:
    """``(S, P)``: every parameter of each member, flattened (``params``, a pytree such as
    :class:`ncl.model.Params` or a dict, has a leading member axis)."""
    leaves = [np.asarray(a) for a in jax.tree_util.tree_leaves(params)]
    return np.concatenate([a.reshape(a.shape[0], -1) for a in leaves], axis=1)


def assert_first_step_matches(params, reference, rtol=1e-4, atol=1e-4, min_fraction=0.99,
                              ratio=0.1, identity=True):
    """Member ``i`` of ``params`` is member ``i`` of ``reference`` after a short run (one
    training step): in every parameter array of at least 100 entries per member, and in
    all of them together, at least ``min_fraction`` of the entries agree to round-off;
    and (``identity``, two or more members) the member's mean absolute distance to
    reference member ``i`` is under ``ratio`` times its distance to any other one."""
    pairs = list(zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(reference)))
    pairs = [(np.asarray(a), np.asarray(b)) for a, b in pairs]
    for a, b in pairs + [(flat_params(params), flat_params(reference))]:
        assert a.shape == b.shape, (a.shape, b.shape)
        a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        if a.shape[1] < 100:
            continue
        frac = (np.abs(a - b) <= atol + rtol * np.abs(b)).mean(axis=1)
        assert np.all(frac >= min_fraction), (
            f"fraction of parameters equal to round-off, per member: {frac}")
    A, B = flat_params(params), flat_params(reference)
    if identity and A.shape[0] > 1:
        D = np.abs(A[:, None, :] - B[None, :, :]).mean(axis=2)  # (S, S)
        own = np.diag(D)
        other = np.where(np.eye(len(D), dtype=bool), np.inf, D).min(axis=1)
        assert np.all(own < ratio * other), (
            f"members are not closest to their own seed: own {own}, nearest other {other}")


def key_data(state) -> np.ndarray:
    key = state.key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key)


def assert_integers_equal(state, reference, history=None, reference_history=None):
    """Keys, step counters (and minibatch sizes, finiteness flags) bit for bit."""
    np.testing.assert_array_equal(key_data(state), key_data(reference))
    np.testing.assert_array_equal(np.asarray(state.step), np.asarray(reference.step))
    assert flat_params(state.params).shape == flat_params(reference.params).shape
    if history is not None:
        np.testing.assert_array_equal(np.asarray(history.batch_size),
                                      np.asarray(reference_history.batch_size))
        assert np.all(np.asarray(history.finite)) and np.all(
            np.asarray(reference_history.finite))


def assert_members_close(values, reference, rtol=1e-4, allowed=1):
    """All but at most ``allowed`` members agree to relative round-off (``values``:
    ``(S,)``): a flipped draw moves one member; a permutation moves two or more."""
    v, r = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    rel = np.abs(v - r) / np.maximum(np.abs(r), 1e-30)
    assert np.sum(rel > rtol) <= allowed, f"relative differences per member: {rel}"


def assert_logliks_agree_in_distribution(loglik, reference, tol_nats=10.0):
    """``(S, E)`` log-likelihood histories of two ensembles of the same seeds: the
    members' mean final value agrees within ``tol_nats``, and each ensemble's mean gain
    over training is at least half the reference's (both learned)."""
    ll, ref = np.asarray(loglik, np.float64), np.asarray(reference, np.float64)
    assert ll.shape == ref.shape and np.all(np.isfinite(ll)), ll
    assert abs(ll[:, -1].mean() - ref[:, -1].mean()) <= tol_nats, (ll[:, -1], ref[:, -1])
    gain, ref_gain = (ll[:, -1] - ll[:, 0]).mean(), (ref[:, -1] - ref[:, 0]).mean()
    if ref_gain > 0:
        assert gain >= 0.5 * ref_gain, (gain, ref_gain)
