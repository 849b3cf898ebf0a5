"""Reference for docs/compare.md: the best log-likelihood of the one-hot model family.

With one softmax hidden unit, both models define p(x) = sum_a pbar(a) A(a, x), a mixture of
L products of Bernoullis (for the RBM pbar is set by the biases, for NCL by the dynamics).
Expectation-maximisation fits that family directly. Started from the App. A1 means (the
10% subsets of the same seeds as training, via ncl.model.init_params) and uniform weights,
it gives the log-likelihood both trainings could reach at best (up to local maxima).

    python experiments/mixture_em_reference.py [--seeds 36] [--iters 500]

writes docs/compare/em_reference.csv (per seed: log-likelihood, mixing weights, unit KL).
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import jax
import numpy as np

from ncl import classifier as clf
from ncl import fidelity
from ncl.data import load_paper_data
from ncl.model import ModelConfig, init_params
from ncl.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def em(x, means, iters, floor=1e-4):
    L = means.shape[0]
    pi = np.full(L, 1.0 / L)
    mu = np.clip(means, floor, 1 - floor)
    for _ in range(iters + 1):
        logp = x @ np.log(mu).T + (1 - x) @ np.log1p(-mu).T + np.log(pi)
        lse = np.logaddexp.reduce(logp, axis=1)
        ll = lse.mean()
        r = np.exp(logp - lse[:, None])
        nk = r.sum(0)
        pi = nk / nk.sum()
        mu = np.clip((r.T @ x + 0.5) / (nk[:, None] + 1.0), floor, 1 - floor)
    return ll, pi, mu


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=36)
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--out", default=str(REPO / "docs" / "compare" / "em_reference.csv"))
    a = ap.parse_args(argv)
    x, y = load_paper_data()
    x = x.astype(np.float64)
    cfg = TrainConfig(model=ModelConfig())
    C = clf.load_default_classifier()
    p_data = np.bincount(y, minlength=3) / len(y)
    rows = []
    for seed in range(a.seeds):
        k_init = jax.random.split(jax.random.key(seed), 3)[0]   # as ncl.training.init_state
        w = np.asarray(init_params(k_init, x.astype(np.float32), cfg.model).w, np.float64)
        ll, pi, mu = em(x, 1 / (1 + np.exp(-w.T)), a.iters)
        uc = np.asarray(clf.predict(C, mu.astype(np.float32)))
        pe = np.bincount(uc, weights=pi, minlength=3)
        kl = float(fidelity.class_fidelity_kl(pe.astype(np.float32), p_data.astype(np.float32)))
        rows.append(dict(seed=seed, loglik=ll, kl=kl, pi=" ".join(f"{v:.3f}" for v in pi)))
        print(seed, f"{ll:.3f}", f"{kl:.4f}", rows[-1]["pi"], flush=True)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    ll = np.array([r["loglik"] for r in rows])
    print(f"median {np.median(ll):.3f} [{np.quantile(ll, .25):.3f}, {np.quantile(ll, .75):.3f}]"
          f" max {ll.max():.3f}")


if __name__ == "__main__":
    main()
