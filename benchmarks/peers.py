"""Benchmark peers: one training step of the paper protocol, batched over E seeds,
written the way a researcher would without ``ncl``.

Two peers of the same step (docs/model.md, "One training step"):

* :func:`numpy_train_step` -- NumPy, every array carrying a leading seed axis E,
  contractions written with ``einsum`` and batched ``@`` (BLAS), ``scipy.special.expit``
  for the sigmoid;
* :func:`torch_train_step` -- PyTorch on CPU, float32, ``torch.no_grad()``, the same
  algebra with ``torch.bmm``/``torch.einsum`` (optional: ``pip install -e '.[bench]'``).

Each step: a minibatch of N rows drawn uniformly with replacement per seed; T double
steps of the persistent chain, z(t) ~ Abar(x'(t), .) (eq. 19 for one-hot units,
factorised bits for binary units), x'(t+1) ~ A(z(t), .); the closed-form two-step
gradient (eqs. 16a-d with the centering of 17, the same estimator as
``numpy_reference.two_step_gradient``: self-normalised weights over the T samples, the
mean over the minibatch rows, the "paper" score factor z - sigmoid(g)); one RMSprop
ascent step with optax's default formula (decay 0.9, eps 1e-8 inside the square root).
``a`` is held at 0 for one-hot hidden units and trained for binary ones.

Neither peer regroups the T samples by hidden state (which ``ncl`` does for one-hot
units): like the per-seed reference they evaluate the (N, T) responsibilities directly.

:func:`check_gradients` compares a peer's gradient with the per-seed reference on fixed
chain samples and raises ``AssertionError`` on a mismatch; the benchmark calls it before
timing a peer (``benchmarks/bench_peers.py``), and ``tests/test_bench_peers.py`` runs it on
a small problem.

The NumPy peer draws its random numbers in the same order as the reference
(minibatch indices, then per double step one uniform for the hidden draw and D float32
uniforms for the visible draw), so with E = 1 and the same generator it reproduces
``numpy_reference.train_step`` sample for sample (a test).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.special import expit

HERE = Path(__file__).resolve().parent
HIDDEN_KINDS = ("onehot", "binary")
PARAM_NAMES = ("w", "a", "wbar", "abar")


def load_reference():
    """:mod:`benchmarks.numpy_reference` (the repository root is put on ``sys.path`` when
    this file is loaded on its own)."""
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))
    from benchmarks import numpy_reference
    return numpy_reference


# ----------------------------------------------------------------------------
# (a) NumPy, batched over seeds
# ----------------------------------------------------------------------------
def _np_sigmoid(h):
    return expit(h)


def _np_softplus(h):
    return np.logaddexp(0, h)


def numpy_init(rng, data, E, L, hidden="onehot"):
    """E models initialised as App. A1 (numpy_reference.init_params, batched);
    returns (params, opt_state, x_chain) with a leading seed axis on every array."""
    data = np.asarray(data, np.float32)
    N_D, D = data.shape
    n = max(1, int(round(0.1 * N_D)))
    w = np.empty((E, D, L), np.float32)
    for e in range(E):
        for alpha in range(L):
            k = data[rng.choice(N_D, size=n, replace=False)].sum(0)
            m = (k + 0.5) / (n + 1.0)
            w[e, :, alpha] = np.log(m) - np.log1p(-m)
    params = {"w": w, "a": np.zeros((E, D), np.float32),
              "wbar": np.zeros((E, L, D), np.float32), "abar": np.zeros((E, L), np.float32)}
    opt = {k: np.zeros_like(v) for k, v in params.items()}
    x_chain = data[rng.integers(N_D, size=E)].copy()
    return params, opt, x_chain


def numpy_chain(rng, params, x0, T, center, hidden="onehot"):
    """T double steps for E chains at once. Returns xs (E, T, D), zs (E, T, L), x'(T)."""
    w, a, wbar, abar = params["w"], params["a"], params["wbar"], params["abar"]
    E, D, L = w.shape
    xs = np.empty((E, T, D), np.float32)
    zs = np.zeros((E, T, L), np.float32)
    x = np.asarray(x0, np.float32)
    rows = np.arange(E)
    for t in range(T):
        xs[:, t] = x
        nu = _np_sigmoid(np.einsum("eld,ed->el", wbar, x - center) + abar)   # (E, L)
        if hidden == "onehot":
            cdf = np.cumsum(nu, axis=1)                                      # eq. (19)
            u = rng.random(E) * cdf[:, -1]
            alpha = np.minimum((cdf <= u[:, None]).sum(1), L - 1)
            zs[rows, t, alpha] = 1.0
            h = w[rows, :, alpha] + a                                        # (E, D)
        else:
            zs[:, t] = rng.random((E, L)) < nu
            h = np.einsum("edl,el->ed", w, zs[:, t]) + a
        x = (rng.random((E, D), dtype=np.float32) < _np_sigmoid(h)).astype(np.float32)
    return xs, zs, x


def numpy_gradient(params, xs, zs, batch, center, hidden="onehot"):
    """Closed-form two-step gradient (16a-d, 17) for E seeds; batch (E, N, D).
    Returns (grads, loglik (E,))."""
    w, a, wbar, abar = params["w"], params["a"], params["wbar"], params["abar"]
    N, T = batch.shape[1], xs.shape[1]
    H = zs @ w.transpose(0, 2, 1) + a[:, None, :]                            # (E, T, D)
    ell = batch @ H.transpose(0, 2, 1) - _np_softplus(H).sum(-1)[:, None, :]  # (E, N, T)
    m = ell.max(-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(ell - m).sum(-1))                        # (E, N)
    r = np.exp(ell - lse[..., None])                                         # (E, N, T)
    loglik = lse.mean(-1) - np.log(T)
    R = r.sum(1)                                                             # (E, T)
    G = (r.transpose(0, 2, 1) @ batch - R[..., None] * _np_sigmoid(H)) / N   # (E, T, D)
    grad_w = G.transpose(0, 2, 1) @ zs                                       # (E, D, L)
    grad_a = G.sum(1) if hidden == "binary" else np.zeros_like(a)
    Xc = xs - center                                                         # (E, T, D)
    nu = _np_sigmoid(Xc @ wbar.transpose(0, 2, 1) + abar[:, None, :])        # (E, T, L)
    F = (R / N)[..., None] * (zs - nu)                                       # (E, T, L)
    grad_wbar = F.transpose(0, 2, 1) @ Xc                                    # (E, L, D)
    grad_abar = F.sum(1)
    return {"w": grad_w, "a": grad_a, "wbar": grad_wbar, "abar": grad_abar}, loglik


def numpy_rmsprop(params, grads, opt, lr=0.1, decay=0.9, eps=1e-8):
    """optax.rmsprop's default formula, as an ascent step, on the stacked arrays."""
    new_p, new_o = {}, {}
    for k in params:
        nu = (1 - decay) * grads[k] ** 2 + decay * opt[k]
        new_o[k] = nu.astype(params[k].dtype)
        new_p[k] = (params[k] + lr * grads[k] / np.sqrt(nu + eps)).astype(params[k].dtype)
    return new_p, new_o


def numpy_train_step(rng, params, opt, x_chain, data, center, T, N, hidden="onehot", lr=0.1):
    """One training step for E seeds. Returns (params, opt, x_chain, loglik (E,))."""
    E = x_chain.shape[0]
    batch = data[rng.integers(0, data.shape[0], size=(E, N))]               # (E, N, D)
    xs, zs, x_chain = numpy_chain(rng, params, x_chain, T, center, hidden)
    grads, loglik = numpy_gradient(params, xs, zs, batch, center, hidden)
    params, opt = numpy_rmsprop(params, grads, opt, lr)
    return params, opt, x_chain, loglik


# ----------------------------------------------------------------------------
# (b) PyTorch on CPU, batched over seeds
# ----------------------------------------------------------------------------
def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def to_torch(tree, dtype=np.float32):
    import torch
    return {k: torch.as_tensor(np.asarray(v, dtype)) for k, v in tree.items()}


def torch_chain(gen, params, x0, T, center, hidden="onehot"):
    """T double steps for E chains (torch tensors). Returns xs (E,T,D), zs (E,T,L), x'(T)."""
    import torch
    w, a, wbar, abar = params["w"], params["a"], params["wbar"], params["abar"]
    E, D, L = w.shape
    with torch.no_grad():
        xs = torch.empty((E, T, D))
        zs = torch.zeros((E, T, L))
        x = x0
        rows = torch.arange(E)
        for t in range(T):
            xs[:, t] = x
            g = torch.bmm(wbar, (x - center).unsqueeze(-1)).squeeze(-1) + abar   # (E, L)
            nu = torch.sigmoid(g)
            if hidden == "onehot":
                cdf = torch.cumsum(nu, dim=1)                                    # eq. (19)
                u = torch.rand(E, generator=gen) * cdf[:, -1]
                alpha = (cdf <= u[:, None]).sum(1).clamp(max=L - 1)
                zs[rows, t, alpha] = 1.0
                h = w[rows, :, alpha] + a
            else:
                zs[:, t] = (torch.rand((E, L), generator=gen) < nu).float()
                h = torch.bmm(w, zs[:, t].unsqueeze(-1)).squeeze(-1) + a
            x = (torch.rand((E, D), generator=gen) < torch.sigmoid(h)).float()
    return xs, zs, x


def torch_gradient(params, xs, zs, batch, center, hidden="onehot"):
    """Closed-form two-step gradient (16a-d, 17) for E seeds, torch float32 tensors.
    Returns (grads, loglik (E,))."""
    import torch
    import torch.nn.functional as Fn
    w, a, wbar, abar = params["w"], params["a"], params["wbar"], params["abar"]
    N, T = batch.shape[1], xs.shape[1]
    with torch.no_grad():
        H = torch.bmm(zs, w.transpose(1, 2)) + a[:, None, :]                    # (E, T, D)
        ell = torch.bmm(batch, H.transpose(1, 2)) - Fn.softplus(H).sum(-1)[:, None, :]
        lse = torch.logsumexp(ell, dim=-1)                                      # (E, N)
        r = torch.exp(ell - lse[..., None])                                     # (E, N, T)
        loglik = lse.mean(-1) - np.log(T)
        R = r.sum(1)                                                            # (E, T)
        G = (torch.bmm(r.transpose(1, 2), batch) - R[..., None] * torch.sigmoid(H)) / N
        grad_w = torch.bmm(G.transpose(1, 2), zs)                               # (E, D, L)
        grad_a = G.sum(1) if hidden == "binary" else torch.zeros_like(a)
        Xc = xs - center
        nu = torch.sigmoid(torch.bmm(Xc, wbar.transpose(1, 2)) + abar[:, None, :])
        F = (R / N)[..., None] * (zs - nu)                                      # (E, T, L)
        grad_wbar = torch.bmm(F.transpose(1, 2), Xc)                            # (E, L, D)
        grad_abar = F.sum(1)
    return {"w": grad_w, "a": grad_a, "wbar": grad_wbar, "abar": grad_abar}, loglik


def torch_rmsprop(params, grads, opt, lr=0.1, decay=0.9, eps=1e-8):
    import torch
    with torch.no_grad():
        new_o = {k: (1 - decay) * grads[k] ** 2 + decay * opt[k] for k in params}
        new_p = {k: params[k] + lr * grads[k] / torch.sqrt(new_o[k] + eps) for k in params}
    return new_p, new_o


def torch_train_step(gen, params, opt, x_chain, data, center, T, N, hidden="onehot", lr=0.1):
    """One training step for E seeds (torch). Returns (params, opt, x_chain, loglik (E,))."""
    import torch
    E = x_chain.shape[0]
    with torch.no_grad():
        batch = data[torch.randint(0, data.shape[0], (E, N), generator=gen)]     # (E, N, D)
        xs, zs, x_chain = torch_chain(gen, params, x_chain, T, center, hidden)
        grads, loglik = torch_gradient(params, xs, zs, batch, center, hidden)
        params, opt = torch_rmsprop(params, grads, opt, lr)
    return params, opt, x_chain, loglik


# ----------------------------------------------------------------------------
# correctness before timing
# ----------------------------------------------------------------------------
def fixed_problem(data, E, T, N, L=6, hidden="onehot", seed=0, train_steps=3):
    """Fixed inputs for the gradient check, from the per-seed reference only: for each of
    E seeds, parameters after ``train_steps`` reference steps (so wbar, abar are not 0),
    one chain segment (xs, zs) and a minibatch. Returns (params, xs, zs, batch, center),
    each stacked over seeds (float32)."""
    ref = load_reference()
    data = np.asarray(data, np.float32)
    center = data.mean(0)
    out = {k: [] for k in ("params", "xs", "zs", "batch")}
    for e in range(E):
        rng = np.random.default_rng([seed, e])
        p = ref.init_params(rng, data, L, hidden)
        opt = ref.rmsprop_init(p)
        xc = data[rng.integers(len(data))].copy()
        for _ in range(train_steps):
            p, opt, xc, _ = ref.train_step(rng, p, opt, xc, data, center, T, N, hidden)
        xs, zs, _ = ref.run_chain(rng, p, xc, T, center, hidden)
        out["params"].append(p)
        out["xs"].append(xs)
        out["zs"].append(zs)
        out["batch"].append(data[rng.integers(0, len(data), size=N)])
    params = {k: np.stack([p[k] for p in out["params"]]) for k in PARAM_NAMES}
    return (params, np.stack(out["xs"]), np.stack(out["zs"]), np.stack(out["batch"]), center)


def _peer_gradient(peer, dtype, params, xs, zs, batch, center, hidden):
    """A peer's (grads, loglik, params after one RMSprop step from a 0.01 accumulator), all
    as NumPy arrays, computed in ``dtype``."""
    cast = lambda v: np.asarray(v, dtype)  # noqa: E731
    params = {k: cast(v) for k, v in params.items()}
    if peer == "numpy":
        grads, loglik = numpy_gradient(params, *map(cast, (xs, zs, batch, center)), hidden)
        opt0 = {k: np.full_like(v, 0.01) for k, v in params.items()}
        new_p, _ = numpy_rmsprop(params, grads, opt0)
        return grads, loglik, new_p
    if peer == "torch":
        import torch
        tp = to_torch(params, dtype)
        g, ll = torch_gradient(tp, *(torch.as_tensor(cast(v)) for v in (xs, zs, batch, center)),
                               hidden)
        new_p, _ = torch_rmsprop(tp, g, {k: torch.full_like(v, 0.01) for k, v in tp.items()})
        return ({k: v.numpy() for k, v in g.items()}, ll.numpy(),
                {k: v.numpy() for k, v in new_p.items()})
    raise ValueError(f"unknown peer {peer!r}")


def check_gradients(peer, params, xs, zs, batch, center, hidden="onehot", rtol=1e-4,
                    atol_scale=1e-5, float32_tol=1e-3):
    """Compare a peer's batched gradient (and on-the-fly log-likelihood, and one RMSprop
    update) with the per-seed reference ``numpy_reference.two_step_gradient``, seed by seed,
    on fixed samples; ``peer`` is "numpy" or "torch".

    Two comparisons, both on the same inputs:

    * float64 (the algebra): peer and reference both evaluated in float64, elementwise
      ``rtol`` relative plus ``atol_scale`` times the largest |entry| of that seed's
      reference array;
    * float32 (the precision the benchmark times): both in float32, max|peer - ref| at most
      ``float32_tol`` times max|ref| per array and seed. The gradient is a difference of
      nearly equal sums weighted by exp(ell) with |ell| ~ 10^2, so two correct float32
      implementations that sum in another order differ by ~1e-4 of the largest entry.

    Raises AssertionError naming the precision, seed and array on a mismatch. Returns
    ``{"float64": worst, "float32": worst}``, each mapping array name to the largest
    max|peer - ref| / max|ref| over seeds (to print).
    """
    ref = load_reference()
    E = xs.shape[0]
    out = {}
    for dtype in (np.float64, np.float32):
        label = np.dtype(dtype).name
        grads, loglik, new_p = _peer_gradient(peer, dtype, params, xs, zs, batch, center, hidden)
        worst = {k: 0.0 for k in (*PARAM_NAMES, "loglik", "update")}
        for e in range(E):
            p_e = {k: np.asarray(params[k][e], dtype) for k in PARAM_NAMES}
            want, want_ll = ref.two_step_gradient(p_e, xs[e], zs[e], batch[e],
                                                  np.asarray(center, dtype), hidden)
            want_p, _ = ref.rmsprop_update(p_e, want,
                                           {k: np.full_like(v, 0.01) for k, v in p_e.items()})
            pairs = [(k, grads[k][e], want[k]) for k in PARAM_NAMES]
            pairs += [("loglik", np.asarray(loglik[e]), np.asarray(want_ll)),
                      ("update", np.concatenate([new_p[k][e].ravel() for k in PARAM_NAMES]),
                       np.concatenate([want_p[k].ravel() for k in PARAM_NAMES]))]
            for name, got, exp in pairs:
                got, exp = np.asarray(got, np.float64), np.asarray(exp, np.float64)
                scale = float(np.abs(exp).max()) if exp.size else 0.0
                diff = float(np.abs(got - exp).max()) if exp.size else 0.0
                dev = diff / scale if scale > 0 else diff
                msg = f"{peer} peer, {label}, seed {e}, {name}"
                if dtype is np.float64:
                    np.testing.assert_allclose(got, exp, rtol=rtol, atol=atol_scale * scale,
                                               err_msg=msg)
                elif not dev <= float32_tol:
                    raise AssertionError(f"{msg}: max|peer - ref| / max|ref| = {dev:.3g} "
                                         f"> {float32_tol:g}")
                worst[name] = max(worst[name], dev)
        out[label] = worst
    return out
