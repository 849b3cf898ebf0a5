"""Plain per-seed NumPy reference of one training step (docs/model.md).

This is deliberately independent of the ``ncl`` package. It serves two
purposes:

1. the speed reference of the benchmarks: the way a competent scientist would
   write the model in NumPy -- vectorised over data and pixels, with Python
   loops over the T chain steps and over seeds;
2. an independent numerical check of the JAX implementation (same formulas,
   written out by hand from docs/model.md).

Model (docs/model.md): visible x in {0,1}^D, hidden z (one-hot over L states by
default, or L factorised bits with ``hidden="binary"``), parameters
``w (D, L)``, ``a (D,)``, ``wbar (L, D)``, ``abar (L,)``.

* generative kernel A:  h = w z + a,  x_i ~ Bernoulli(sigmoid(h_i)),
  log A(z, x) = sum_i [x_i h_i - softplus(h_i)];
* recognition kernel Abar: g = wbar (x - c) + abar, c the data mean
  (centering; pass ``center=None`` for c = 0);
  - onehot: alpha ~ p(alpha|x) = sigmoid(g_alpha) / sum_beta sigmoid(g_beta)
    (eq. 19), gradient with nu = sigmoid(g) ("paper-literal");
  - binary: z_alpha ~ Bernoulli(sigmoid(g_alpha)), nu = sigmoid(g).
* onehot: ``a`` is fixed at 0 (its gradient is zeroed).

Arrays are float32 where natural; the gradient code preserves the dtype of
its inputs, so it can also be run in float64 (the tests do).

Run ``python benchmarks/numpy_reference.py`` to time the paper-protocol step
(T=48, N=160, L=6, D=784) for one seed.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

__all__ = [
    "sigmoid",
    "softplus",
    "init_params",
    "recognition_probs",
    "run_chain",
    "two_step_gradient",
    "rmsprop_init",
    "rmsprop_update",
    "minibatch_size",
    "train_step",
    "train",
]

HIDDEN_KINDS = ("onehot", "binary")


# ----------------------------------------------------------------------------
# small numerical helpers
# ----------------------------------------------------------------------------
def softplus(h):
    """log(1 + exp(h)), stable for any h."""
    return np.logaddexp(0, h)


def sigmoid(h):
    """1 / (1 + exp(-h)), stable for any h (no overflow warnings)."""
    return np.exp(-np.logaddexp(0, -h))


def _logsumexp(v, axis):
    m = np.max(v, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(v - m), axis=axis))


def _check_hidden(hidden):
    if hidden not in HIDDEN_KINDS:
        raise ValueError(f"hidden must be one of {HIDDEN_KINDS}, got {hidden!r}")


def _center_vector(center, D, dtype):
    if center is None:
        return np.zeros(D, dtype=dtype)
    return np.asarray(center, dtype=dtype)


# ----------------------------------------------------------------------------
# initialisation (docs/model.md, App. A1)
# ----------------------------------------------------------------------------
def init_params(rng, data, L, hidden="onehot"):
    """wbar = abar = a = 0; w[:, alpha] = logit((k + 0.5) / (n + 1)).

    For each hidden unit alpha a random 10% subset of the data (size
    n = max(1, round(0.1 * N_D)), drawn without replacement) is taken and
    k counts the on-pixels of each visible unit in that subset.
    """
    _check_hidden(hidden)
    data = np.asarray(data, dtype=np.float32)
    N_D, D = data.shape
    n = max(1, int(round(0.1 * N_D)))
    w = np.empty((D, L), dtype=np.float32)
    for alpha in range(L):
        subset = rng.choice(N_D, size=n, replace=False)
        k = data[subset].sum(axis=0)
        m = (k + 0.5) / (n + 1.0)
        w[:, alpha] = np.log(m) - np.log1p(-m)
    return {
        "w": w,
        "a": np.zeros(D, dtype=np.float32),
        "wbar": np.zeros((L, D), dtype=np.float32),
        "abar": np.zeros(L, dtype=np.float32),
    }


# ----------------------------------------------------------------------------
# chain (docs/model.md, training step 1)
# ----------------------------------------------------------------------------
def recognition_probs(params, x, center, hidden="onehot"):
    """(p, nu) for one visible state x.

    p: the sampling distribution of the recognition kernel -- p(alpha|x) of
    eq. (19) for onehot, the per-bit on-probabilities for binary;
    nu = sigmoid(g), the factor used in the (paper-literal) gradient.
    """
    _check_hidden(hidden)
    c = _center_vector(center, x.shape[-1], params["wbar"].dtype)
    g = params["wbar"] @ (x - c) + params["abar"]
    nu = sigmoid(g)
    if hidden == "onehot":
        return nu / nu.sum(), nu
    return nu, nu


def run_chain(rng, params, x0, T, center, hidden="onehot"):
    """T double steps: z(t) ~ Abar(x'(t)), then x'(t+1) ~ A(z(t)).

    Returns xs (T, D) with xs[t] = x'(t), zs (T, L) with zs[t] = z(t)
    (one-hot rows for onehot), and x_next = x'(T) (the next persistent state).
    """
    _check_hidden(hidden)
    w, a, wbar, abar = params["w"], params["a"], params["wbar"], params["abar"]
    D, L = w.shape
    c = _center_vector(center, D, wbar.dtype)
    xs = np.empty((T, D), dtype=np.float32)
    zs = np.zeros((T, L), dtype=np.float32)
    x = np.asarray(x0, dtype=np.float32)
    for t in range(T):
        xs[t] = x
        nu = sigmoid(wbar @ (x - c) + abar)
        if hidden == "onehot":
            # alpha ~ nu / sum(nu) by inverting the cumulative distribution
            cdf = np.cumsum(nu)
            alpha = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), L - 1)
            zs[t, alpha] = 1.0
            h = w[:, alpha] + a
        else:
            zs[t] = rng.random(L) < nu
            h = w @ zs[t] + a
        x = (rng.random(D, dtype=np.float32) < sigmoid(h)).astype(np.float32)
    return xs, zs, x


# ----------------------------------------------------------------------------
# two-step gradient (docs/model.md, training steps 3, 4, 6)
# ----------------------------------------------------------------------------
def two_step_gradient(params, xs, zs, batch, center, hidden="onehot"):
    """Closed-form two-step gradient (eqs. 16a-d, 17) and on-the-fly loglik.

    l[n, t] = log A(z(t), x_n), r[n, t] = softmax_t l[n, t]; all gradients are
    averaged over the N rows of ``batch``. Returns (grads, loglik) with
    loglik = mean_n [logsumexp_t l[n, t] - log T]. For onehot, grads["a"] = 0.
    """
    _check_hidden(hidden)
    w, a, wbar, abar = params["w"], params["a"], params["wbar"], params["abar"]
    dtype = w.dtype
    xs = np.asarray(xs, dtype=dtype)
    zs = np.asarray(zs, dtype=dtype)
    batch = np.asarray(batch, dtype=dtype)
    N = batch.shape[0]
    T, D = xs.shape
    c = _center_vector(center, D, dtype)

    # generative side: h(t) = w z(t) + a, l[n, t] = sum_i x_ni h_i(t) - softplus(h_i(t))
    H = zs @ w.T + a                                   # (T, D)
    ell = batch @ H.T - softplus(H).sum(axis=1)        # (N, T)
    lse = _logsumexp(ell, axis=1)                      # (N,)
    r = np.exp(ell - lse[:, None])                     # (N, T), rows sum to 1
    loglik = float(np.mean(lse) - np.log(T))

    mu = sigmoid(H)                                    # (T, D)
    R = r.sum(axis=0)                                  # (T,)  sum_n r[n, t]
    # E[t, j] = (1/N) sum_n r[n, t] (x_nj - mu_j(t))
    E = (r.T @ batch - R[:, None] * mu) / N            # (T, D)
    grad_w = E.T @ zs                                  # (D, L)
    grad_a = E.sum(axis=0)                             # (D,)
    if hidden == "onehot":
        grad_a = np.zeros_like(grad_a)

    # recognition side (paper-literal): nu = sigmoid(g(x'(t)))
    Xc = xs - c                                        # (T, D)
    nu = sigmoid(Xc @ wbar.T + abar)                   # (T, L)
    F = (R / N)[:, None] * (zs - nu)                   # (T, L)
    grad_wbar = F.T @ Xc                               # (L, D)
    grad_abar = F.sum(axis=0)                          # (L,)

    grads = {"w": grad_w, "a": grad_a, "wbar": grad_wbar, "abar": grad_abar}
    return grads, loglik


# ----------------------------------------------------------------------------
# RMSprop, exactly optax.rmsprop's default formula, used for gradient ASCENT
# ----------------------------------------------------------------------------
def rmsprop_init(params):
    """optax.scale_by_rms: initial second moment nu = 0 (initial_scale=0)."""
    return {k: np.zeros_like(v) for k, v in params.items()}


def rmsprop_update(params, grads, state, lr=0.1, decay=0.9, eps=1e-8):
    """One RMSprop ascent step; returns (new_params, new_state).

    optax.rmsprop (v0.2.x defaults: eps_in_sqrt=True, no bias correction,
    no momentum, not centered) is
        nu <- decay * nu + (1 - decay) * g**2
        update = -lr * g / sqrt(nu + eps)      (eps *inside* the square root)
    applied to the gradient of a loss; here the objective is maximised, so
    params <- params + lr * g / sqrt(nu + eps).
    """
    if state is None:
        state = rmsprop_init(params)
    new_params, new_state = {}, {}
    for k, p in params.items():
        g = grads[k]
        nu = (1 - decay) * g**2 + decay * state[k]
        new_state[k] = nu.astype(p.dtype, copy=False)
        new_params[k] = (p + lr * g / np.sqrt(nu + eps)).astype(p.dtype, copy=False)
    return new_params, new_state


# ----------------------------------------------------------------------------
# schedule and training loop
# ----------------------------------------------------------------------------
def minibatch_size(epoch, epochs, n_min=16, n_max=160):
    """N_e = round(n_min + (n_max - n_min) * e / (E - 1)); n_min if E == 1."""
    if epochs <= 1:
        return int(n_min)
    return int(round(n_min + (n_max - n_min) * epoch / (epochs - 1)))


def train_step(rng, params, opt_state, x_chain, data, center, T, N, hidden="onehot", lr=0.1):
    """One training step: minibatch, chain, two-step gradient, RMSprop ascent.

    Returns (params, opt_state, x_chain, loglik).
    """
    idx = rng.integers(0, data.shape[0], size=N)       # uniform, with replacement
    batch = data[idx]
    xs, zs, x_chain = run_chain(rng, params, x_chain, T, center, hidden)
    grads, loglik = two_step_gradient(params, xs, zs, batch, center, hidden)
    params, opt_state = rmsprop_update(params, grads, opt_state, lr=lr)
    return params, opt_state, x_chain, loglik


def train(seed, data, L=6, T=48, epochs=120, steps_per_epoch=30, lr=0.1,
          hidden="onehot", centering=True):
    """Train one model (one seed) with the paper protocol.

    Returns (params, history) with history[e] the mean on-the-fly minibatch
    log-likelihood over the steps of epoch e.
    """
    rng = np.random.default_rng(seed)
    data = np.asarray(data, dtype=np.float32)
    center = data.mean(axis=0) if centering else None
    params = init_params(rng, data, L, hidden)
    opt_state = rmsprop_init(params)
    x_chain = data[rng.integers(data.shape[0])].copy()  # chain starts at a data point
    history = []
    for epoch in range(epochs):
        N = minibatch_size(epoch, epochs)
        lls = []
        for _ in range(steps_per_epoch):
            params, opt_state, x_chain, ll = train_step(
                rng, params, opt_state, x_chain, data, center, T, N, hidden, lr)
            lls.append(ll)
        history.append(float(np.mean(lls)))
    return params, np.asarray(history)


# ----------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------
def _load_mnist_012(mnist_dir="/work/shared/data/mnist", per_digit=1000):
    """First 1000 training images of digits 0, 1, 2, binarised at > 127."""
    import gzip
    import os

    with gzip.open(os.path.join(mnist_dir, "train-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(os.path.join(mnist_dir, "train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    idx = np.concatenate([np.flatnonzero(labels == d)[:per_digit] for d in (0, 1, 2)])
    return (images[idx] > 127).astype(np.float32)


def _load_data():
    try:
        from ncl.data import load_paper_data

        out = load_paper_data()
        x = out[0] if isinstance(out, tuple) else out
        return np.asarray(x, dtype=np.float32), "ncl.data.load_paper_data()"
    except Exception:  # ncl not importable / not written yet
        pass
    try:
        return _load_mnist_012(), "MNIST 0/1/2 from /work/shared/data/mnist"
    except Exception:
        warnings.warn("paper data not available: timing on random binary data (3000, 784)",
                      stacklevel=2)
        rng = np.random.default_rng(0)
        return (rng.random((3000, 784)) < 0.13).astype(np.float32), "random binary"


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--T", type=int, default=48)
    ap.add_argument("--N", type=int, default=160)
    ap.add_argument("--L", type=int, default=6)
    ap.add_argument("--hidden", default="onehot", choices=HIDDEN_KINDS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    data, source = _load_data()
    rng = np.random.default_rng(args.seed)
    center = data.mean(axis=0)
    params = init_params(rng, data, args.L, args.hidden)
    opt_state = rmsprop_init(params)
    x_chain = data[rng.integers(data.shape[0])].copy()

    def steps(n):
        nonlocal params, opt_state, x_chain
        for _ in range(n):
            params, opt_state, x_chain, ll = train_step(
                rng, params, opt_state, x_chain, data, center, args.T, args.N, args.hidden)
        return ll

    steps(args.warmup)
    t0 = time.perf_counter()
    ll = steps(args.steps)
    dt = (time.perf_counter() - t0) / args.steps
    print(f"data: {source}, shape {data.shape}")
    print(f"hidden={args.hidden} L={args.L} T={args.T} N={args.N}: "
          f"{args.steps} steps, {dt * 1e3:.3f} ms per seed-step "
          f"({dt:.3e} s), last minibatch loglik {ll:.2f}")
    return dt


if __name__ == "__main__":
    main()
