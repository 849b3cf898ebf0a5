"""Exact reference on small systems: does the approximate two-step gradient reach the
maximum the true gradient reaches?  (writes docs/exact_reference/)

For D <= 20 visible bits, ``ncl.exact`` computes the stationary distribution, the exact
log-likelihood and its exact gradient. On two small data sets

* ``prototypes``: 4 random 10-bit prototypes, each bit flipped with probability 0.1,
  1000 samples (L = 4);
* ``digits``: the paper's 3000 MNIST digits (0, 1, 2) block-averaged onto a 4 x 3 grid
  (12 pixels) and thresholded at 0.2 (L = 6),

the main model (one-hot, centering, a = 0) is trained with the paper's protocol (RMSprop
lr 0.1, 120 epochs x 30 steps, minibatch 16 -> 160, T = 48) by three gradients through
``ncl.training`` with the same seeds:

* ``two-step``: the paper's algorithm (PCD chain, T = 48, eqs. 16-17);
* ``two-step T=inf``: the same rule with exact stationary averages
  (``ncl.exact.expected_two_step_gradient``), i.e. without chain noise;
* ``exact``: the gradient of the exact log-likelihood (``ncl.exact.exact_gradient``).

Along training (every ``--every`` epochs) it records the exact log-likelihood of the whole
data set and the angles between the exact full-data gradient and (a) the T = inf two-step
gradient, (b) a two-step estimate from one T = 48 segment of the persistent chain, both on
the whole data set. At the end, every model is refined by deterministic full-batch ascent
(Adam, cosine-decayed) along the T = inf two-step field to its fixed point, and from
there along the exact gradient: the log-likelihood gained by the second refinement and
the exact gradient norm at the two-step fixed point say whether that fixed point is a
maximum of the likelihood.

Both recognition options that matter are run: ``paper`` (the default, whose two-step
rule differentiates the factorised eq. 11 form, not the eq. 19 kernel that samples) and
``eq19-exact`` (the two-step rule differentiates the sampling kernel itself).

Usage: python experiments/exact_reference.py [--seeds 12] [--out docs/exact_reference]
       [--quick]
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]

from ncl import chain as chain_lib  # noqa: E402
from ncl import exact  # noqa: E402
from ncl import training as T  # noqa: E402
from ncl.gradient import two_step_gradient  # noqa: E402
from ncl.model import ModelConfig  # noqa: E402

ARMS = {"two-step": "closed-form", "two-step T=inf": "two-step-expected", "exact": "exact"}


def datasets():
    from ncl.data import load_paper_data
    x, _, _ = exact.noisy_prototypes(0, n_visible=10, n_prototypes=4, n_samples=1000, flip=0.1)
    out = {"prototypes": (x, 4)}
    img, _ = load_paper_data()
    out["digits"] = (exact.block_downsample(img, (4, 3), threshold=0.2), 6)
    return out


def _np_tree(tree):
    return jax.tree_util.tree_map(lambda a: np.array(a), tree)


def train_arm(seeds, data, cfg, every):
    """Train an ensemble; returns final state, history and {epoch: (params, chain x)}."""
    records = {}

    def save(epoch, row, state):
        records[int(epoch)] = (_np_tree(state.params), np.array(state.chain.x))

    t0 = time.perf_counter()
    state, hist = T.train_ensemble(seeds, data, cfg, checkpoint=(every, save), devices=1)
    jax.block_until_ready(state)
    return state, hist, records, time.perf_counter() - t0


def make_analysis(model: ModelConfig, chain_length: int):
    @jax.jit
    def analyse(params, chain_x, center, data, key):
        """Per member: exact LL, |g_exact|, angle(T=inf two-step, exact), angle(T=48
        two-step from the persistent chain, exact); all on the whole data set."""
        def one(p, x, c, k):
            g_ex, ll = exact.exact_gradient(p, None, data, c, model)
            g_ts, _ = exact.expected_two_step_gradient(p, None, data, c, model)
            _, traj = chain_lib.sample_chain(k, chain_lib.ChainState(x), p, c, model,
                                             chain_length)
            g_mc, _ = two_step_gradient(p, traj, data, c, model)
            return (ll, exact.gradient_norm(g_ex, model), exact.gradient_norm(g_ts, model),
                    exact.gradient_angle(g_ts, g_ex, model),
                    exact.gradient_angle(g_mc, g_ex, model))
        keys = jax.random.split(key, params.w.shape[0])
        return jax.vmap(one)(params, chain_x, center, keys)
    return analyse


def refine(params, center, data, model, field, steps, lr):
    fn = jax.jit(jax.vmap(lambda p, c: exact.ascend(p, data, c, model, field, steps, lr)))
    return fn(params, center)


def run(out: Path, n_seeds: int, quick: bool, log=print):
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(n_seeds))
    if quick:
        base = T.TrainConfig(epochs=6, steps_per_epoch=10, chain_length=48, monitor=False)
        every, steps_refine = 2, 300
    else:
        base = T.TrainConfig(monitor=False)
        every, steps_refine = 4, 3000
    rows, curves, timings = [], [], {}
    for dname, (x, L) in datasets().items():
        xj = jnp.asarray(x, jnp.float32)
        emp = exact.empirical_log_likelihood(x)
        for recog in ("paper", "eq19-exact"):
            model = ModelConfig(n_hidden=L, recognition=recog)
            analyse = make_analysis(model, base.chain_length)
            for arm, grad in ARMS.items():
                cfg = dataclasses.replace(base, model=model, gradient=grad)
                log(f"[{dname} / {recog} / {arm}] training {n_seeds} seeds")
                state, hist, records, t_train = train_arm(seeds, x, cfg, every)
                timings[f"{dname}/{recog}/{arm}"] = t_train
                for epoch in sorted(records):
                    params, chain_x = records[epoch]
                    res = [np.asarray(v, np.float64) for v in analyse(
                        jax.tree_util.tree_map(jnp.asarray, params), jnp.asarray(chain_x),
                        state.center, xj, jax.random.key(epoch))]
                    for i, s in enumerate(seeds):
                        curves.append(dict(dataset=dname, recognition=recog, arm=arm, seed=s,
                                           epoch=epoch + 1, loglik=res[0][i],
                                           grad_norm_exact=res[1][i], grad_norm_ts=res[2][i],
                                           angle_ts_inf=res[3][i], angle_ts_T48=res[4][i]))
                # fixed-point analysis
                t0 = time.perf_counter()
                ll_final = np.asarray(jax.vmap(
                    lambda p, c, xj=xj, model=model: exact.log_likelihood(p, xj, c, model))(
                    state.params, state.center), np.float64)
                p_ts, _ = refine(state.params, state.center, xj, model, "two-step-expected",
                                 steps_refine, 0.01)
                p_ts_ex, _ = refine(p_ts, state.center, xj, model, "exact", steps_refine, 0.01)
                p_ex, _ = refine(state.params, state.center, xj, model, "exact", steps_refine,
                                 0.01)
                at_ts = [np.asarray(v, np.float64) for v in analyse(
                    p_ts, state.chain.x, state.center, xj, jax.random.key(999))]
                ll_ts_ex = np.asarray(jax.vmap(
                    lambda p, c, xj=xj, model=model: exact.log_likelihood(p, xj, c, model))(
                    p_ts_ex, state.center), np.float64)
                at_ex = [np.asarray(v, np.float64) for v in analyse(
                    p_ex, state.chain.x, state.center, xj, jax.random.key(998))]
                timings[f"{dname}/{recog}/{arm}/refine"] = time.perf_counter() - t0
                for i, s in enumerate(seeds):
                    rows.append(dict(
                        dataset=dname, recognition=recog, arm=arm, seed=s,
                        empirical_loglik=emp, loglik_final=ll_final[i],
                        loglik_ts_fixed_point=at_ts[0][i],
                        grad_norm_exact_at_ts_fixed_point=at_ts[1][i],
                        grad_norm_ts_at_ts_fixed_point=at_ts[2][i],
                        angle_at_ts_fixed_point=at_ts[3][i],
                        loglik_exact_from_ts_fixed_point=ll_ts_ex[i],
                        gain_exact_over_ts_fixed_point=ll_ts_ex[i] - at_ts[0][i],
                        loglik_exact_refined=at_ex[0][i],
                        grad_norm_exact_at_exact_refined=at_ex[1][i]))
                med = np.median(ll_final)
                log(f"    trained in {t_train:.1f}s; final exact LL median {med:.4f} "
                    f"(empirical {emp:.4f}); T=inf fixed point {np.median(at_ts[0]):.4f}, "
                    f"+exact {np.median(ll_ts_ex):.4f}; exact-refined {np.median(at_ex[0]):.4f}")
    write_outputs(out, rows, curves, timings, n_seeds, base, every, steps_refine)
    return rows, curves


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(float(v)) if isinstance(v, (float, np.floating)) else v)
                        for k, v in r.items()})


def _med(v):
    v = np.asarray(v, np.float64)
    return np.median(v), np.quantile(v, 0.25), np.quantile(v, 0.75)


def summary_table(rows) -> list[dict]:
    out = []
    keys = sorted({(r["dataset"], r["recognition"], r["arm"]) for r in rows},
                  key=lambda k: (k[0], k[1], list(ARMS).index(k[2])))
    for d, rec, arm in keys:
        sel = [r for r in rows if (r["dataset"], r["recognition"], r["arm"]) == (d, rec, arm)]
        row = dict(dataset=d, recognition=rec, arm=arm, n=len(sel),
                   empirical_loglik=sel[0]["empirical_loglik"])
        for k in ("loglik_final", "loglik_ts_fixed_point", "gain_exact_over_ts_fixed_point",
                  "grad_norm_exact_at_ts_fixed_point", "angle_at_ts_fixed_point",
                  "loglik_exact_refined"):
            m, lo, hi = _med([r[k] for r in sel])
            row[k] = m
            row[k + "_q25"] = lo
            row[k + "_q75"] = hi
        out.append(row)
    return out


def angle_summary(curves) -> list[dict]:
    out = []
    keys = sorted({(c["dataset"], c["recognition"]) for c in curves})
    for d, rec in keys:
        sel = [c for c in curves if (c["dataset"], c["recognition"], c["arm"]) ==
               (d, rec, "two-step")]
        epochs = sorted({c["epoch"] for c in sel})
        for phase, es in (("first 10% of epochs", epochs[:max(1, len(epochs) // 10)]),
                          ("last 25% of epochs", epochs[-max(1, len(epochs) // 4):])):
            ss = [c for c in sel if c["epoch"] in es]
            a_inf = _med([c["angle_ts_inf"] for c in ss])
            a_48 = _med([c["angle_ts_T48"] for c in ss])
            out.append(dict(dataset=d, recognition=rec, phase=phase, angle_inf=a_inf,
                            angle_T48=a_48))
    return out


def write_outputs(out, rows, curves, timings, n_seeds, base, every, steps_refine):
    _write_csv(out / "final.csv", rows)
    _write_csv(out / "curves.csv", curves)
    summ = summary_table(rows)
    _write_csv(out / "summary.csv", summ)
    (out / "run.json").write_text(json.dumps(dict(
        seeds=n_seeds, train_config=base.to_dict(), record_every_epochs=every,
        refine_steps=steps_refine, refine="Adam, lr 0.01 cosine-decayed to 0, full batch",
        timings_seconds=timings, devices=str(jax.devices())), indent=2))

    def f(v, d=3):
        return f"{v:.{d}f}"

    lines = ["| data | recognition | gradient | exact LL, end of training | "
             "T=inf two-step fixed point | gain of exact ascent from it | "
             "exact-gradient norm there | exact ascent from the end of training | "
             "empirical (upper bound) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in summ:
        lines.append(
            f"| {r['dataset']} | {r['recognition']} | {r['arm']} | {f(r['loglik_final'])} "
            f"[{f(r['loglik_final_q25'])}, {f(r['loglik_final_q75'])}] | "
            f"{f(r['loglik_ts_fixed_point'])} | {f(r['gain_exact_over_ts_fixed_point'], 4)} "
            f"[{f(r['gain_exact_over_ts_fixed_point_q25'], 4)}, "
            f"{f(r['gain_exact_over_ts_fixed_point_q75'], 4)}] | "
            f"{r['grad_norm_exact_at_ts_fixed_point']:.2g} | {f(r['loglik_exact_refined'])} | "
            f"{f(r['empirical_loglik'])} |")
    lines += ["", "| data | recognition | phase (two-step training) | angle(T=inf two-step, "
              "exact) deg | angle(T=48 two-step, exact) deg |", "|---|---|---|---|---|"]
    for a in angle_summary(curves):
        lines.append(f"| {a['dataset']} | {a['recognition']} | {a['phase']} | "
                     f"{a['angle_inf'][0]:.1f} [{a['angle_inf'][1]:.1f}, {a['angle_inf'][2]:.1f}]"
                     f" | {a['angle_T48'][0]:.1f} [{a['angle_T48'][1]:.1f}, "
                     f"{a['angle_T48'][2]:.1f}] |")
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    plot(out / "exact_reference.png", curves, rows)


def plot(path, curves, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    combos = sorted({(c["dataset"], c["recognition"]) for c in curves})
    fig, axes = plt.subplots(3, len(combos), figsize=(4.0 * len(combos), 9.0), squeeze=False)
    colors = {"two-step": "C0", "two-step T=inf": "C1", "exact": "C2"}
    for j, (d, rec) in enumerate(combos):
        ax = axes[0, j]
        emp = [r["empirical_loglik"] for r in rows if r["dataset"] == d][0]
        for arm in ARMS:
            sel = [c for c in curves if (c["dataset"], c["recognition"], c["arm"]) == (d, rec, arm)]
            epochs = sorted({c["epoch"] for c in sel})
            ll = np.array([[c["loglik"] for c in sel if c["epoch"] == e] for e in epochs])
            ax.plot(epochs, np.median(ll, 1), color=colors[arm], label=arm)
            ax.fill_between(epochs, np.quantile(ll, 0.25, 1), np.quantile(ll, 0.75, 1),
                            color=colors[arm], alpha=0.2)
        ax.axhline(emp, color="k", ls=":", lw=1, label="empirical (bound)")
        lo = min(np.quantile([c["loglik"] for c in curves if c["dataset"] == d], 0.05), emp)
        ax.set_ylim(lo - 0.2, emp + 0.1)
        ax.set_title(f"{d}, recognition={rec}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("exact log-likelihood (nats)")
        ax.legend(fontsize=7)
        ax = axes[1, j]
        sel = [c for c in curves
               if (c["dataset"], c["recognition"], c["arm"]) == (d, rec, "two-step")]
        epochs = sorted({c["epoch"] for c in sel})
        for key, lab, col in (("angle_ts_inf", "T=inf two-step vs exact", "C1"),
                              ("angle_ts_T48", "T=48 two-step vs exact", "C0")):
            a = np.array([[c[key] for c in sel if c["epoch"] == e] for e in epochs])
            ax.plot(epochs, np.median(a, 1), color=col, label=lab)
            ax.fill_between(epochs, np.quantile(a, 0.25, 1), np.quantile(a, 0.75, 1),
                            color=col, alpha=0.2)
        ax.set_ylim(0, 180)
        ax.set_xlabel("epoch (models of the two-step run)")
        ax.set_ylabel("gradient angle (deg)")
        ax.legend(fontsize=7)
        ax = axes[2, j]
        for i, arm in enumerate(ARMS):
            sel = [r for r in rows if (r["dataset"], r["recognition"], r["arm"]) == (d, rec, arm)]
            for k, (key, mk) in enumerate((("loglik_final", "o"),
                                           ("loglik_ts_fixed_point", "s"),
                                           ("loglik_exact_refined", "^"))):
                v = [r[key] for r in sel]
                ax.scatter(np.full(len(v), 3 * i + k)
                           + 0.1 * np.random.default_rng(k).standard_normal(len(v)),
                           v, s=10, marker=mk, color=colors[arm], alpha=0.7)
        ax.axhline(emp, color="k", ls=":", lw=1)
        ax.set_xticks(range(9))
        ax.set_xticklabels([f"{a}\n{s}" for a in ("2-step", "T=inf", "exact")
                            for s in ("end", "ts-fp", "ex-fp")], fontsize=6)
        ax.set_ylabel("exact log-likelihood")
        vals = [r[k] for r in rows if r["dataset"] == d and r["recognition"] == rec
                for k in ("loglik_final", "loglik_ts_fixed_point", "loglik_exact_refined")]
        ax.set_ylim(np.quantile(vals, 0.02) - 0.1, emp + 0.1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--out", default=str(REPO / "docs" / "exact_reference"))
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    run(Path(a.out), a.seeds, a.quick)
    print(f"done in {time.perf_counter() - t0:.0f}s; see {a.out}/tables.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
