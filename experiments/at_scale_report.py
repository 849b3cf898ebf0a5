"""Tables, figure and the four answers of ``experiments/at_scale.py`` from its per-model
rows (no JAX). Every verdict is a pre-set test on the per-seed numbers:

* a difference between two arms: the difference of medians with a 95 % percentile
  bootstrap interval over seeds and a two-sided Mann–Whitney U test
  (:func:`ncl.stats.bootstrap_median_difference`, :func:`ncl.stats.mann_whitney_u`);
  "higher"/"lower" when the interval excludes 0 and p < 0.05, else "undecided";
* "cycles form": a model's σ exceeds 3 of its batch-means errors, and its class
  irreversibility exceeds 3 of its jackknife errors;
* "σ separates good from bad seeds": Spearman ρ of σ and held-out log-likelihood
  within an arm (``scipy.stats.spearmanr``), supported when p < 0.05 with ρ > 0.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ncl.stats import bootstrap_median_difference, mann_whitney_u

BASELINES = ("RBM-PCD", "RBM-exact", "EM")


def _vals(rows, layer, arm, key):
    return np.array([r.get(key, np.nan) for r in rows
                     if (r["hidden"], r["L"]) == layer and r["arm"] == arm], float)


def _med(v):
    v = v[~np.isnan(v)]   # inf kept: a chain that never decorrelated within the window
    if v.size == 0:
        return "–"
    return f"{np.median(v):.3g} [{np.min(v):.3g}, {np.max(v):.3g}]"


def _compare(a, b, higher_is_better=True):
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size < 2 or b.size < 2:
        return dict(diff=np.nan, lo=np.nan, hi=np.nan, p=np.nan, verdict="undecided (too few)")
    d, lo, hi = bootstrap_median_difference(a, b)
    _, p = mann_whitney_u(a, b)
    if lo > 0 and p < 0.05:
        v = "higher"
    elif hi < 0 and p < 0.05:
        v = "lower"
    else:
        v = "undecided"
    if higher_is_better is not None and v in ("higher", "lower"):
        better = (v == "higher") == higher_is_better
        v += " (NCL better)" if better else " (NCL worse)"
    return dict(diff=d, lo=lo, hi=hi, p=p, verdict=v)


def _fmt_cmp(c):
    return (f"{c['diff']:+.3g} [{c['lo']:+.3g}, {c['hi']:+.3g}], p = {c['p']:.2g}: "
            f"**{c['verdict']}**")


def _layers(rows):
    seen = []
    for r in rows:
        if (r["hidden"], r["L"]) not in seen:
            seen.append((r["hidden"], r["L"]))
    return seen


def summarise(rows):
    """The numbers behind README.md: per layer and arm, and the four questions."""
    from scipy import stats
    out = {}
    for layer in _layers(rows):
        name = f"{layer[0]}-{layer[1]}"
        arms = [a for a in ("NCL",) + BASELINES if _vals(rows, layer, a, "loglik_heldout").size]
        q1 = {b: dict(loglik_heldout=_compare(_vals(rows, layer, "NCL", "loglik_heldout"),
                                              _vals(rows, layer, b, "loglik_heldout")),
                      sample_kl=_compare(_vals(rows, layer, "NCL", "sample_kl"),
                                         _vals(rows, layer, b, "sample_kl"), False))
              for b in arms if b != "NCL"}
        cyc = {}
        for a in arms:
            s, se = _vals(rows, layer, a, "sigma"), _vals(rows, layer, a, "sigma_err")
            ci, cie = (_vals(rows, layer, a, "class_irreversibility"),
                       _vals(rows, layer, a, "class_irreversibility_err"))
            cyc[a] = dict(n=int(s.size), sigma_positive=int(np.sum(s > 3 * se)),
                          class_cycle=int(np.sum(ci > 3 * cie)))
        s, ll = _vals(rows, layer, "NCL", "sigma"), _vals(rows, layer, "NCL", "loglik_heldout")
        ok = np.isfinite(s) & np.isfinite(ll)
        if ok.sum() >= 3 and np.ptp(s[ok]) > 0 and np.ptp(ll[ok]) > 0:
            r = stats.spearmanr(s[ok], ll[ok])
            rho, p = float(r.statistic), float(r.pvalue)
        else:
            rho = p = float("nan")
        sep = ("supported" if (p < 0.05 and rho > 0) else
               "contradicted" if (p < 0.05 and rho < 0) else "undecided")
        q3 = {b: _compare(_vals(rows, layer, "NCL", "class_tau"),
                          _vals(rows, layer, b, "class_tau"), None)
              for b in ("RBM-PCD", "RBM-exact") if b in arms}
        cost = {a: dict(train=float(np.median(_vals(rows, layer, a, "train_seconds"))),
                        evaluate=float(np.median(_vals(rows, layer, a, "eval_seconds"))))
                for a in arms}
        out[name] = dict(arms=arms, q1=q1, cycles=cyc, sigma_vs_ll=dict(rho=rho, p=p,
                                                                         verdict=sep),
                         q3=q3, cost=cost)
    return out


COLUMNS = (("loglik_heldout", "held-out LL"), ("loglik_train", "train LL"),
           ("sample_kl", "sample KL"), ("confident", "confident"), ("sigma", "σ"),
           ("class_tau", "class τ"), ("class_irreversibility", "class irrev."),
           ("train_seconds", "train s/model"))


def _table(rows, layer, arms):
    head = "| arm | " + " | ".join(lbl for _, lbl in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for a in arms:
        lines.append(f"| {a} | " + " | ".join(_med(_vals(rows, layer, a, k))
                                              for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def _figure(out: Path, rows, layers):
    from ncl.plots import new_figure, save_figure
    fig = new_figure(figsize=(3.0 * len(layers), 5.6), layout="constrained")
    axs = fig.subplots(2, len(layers), squeeze=False)
    colors = {"NCL": "C3", "RBM-PCD": "C0", "RBM-exact": "C2", "EM": "C7"}
    for j, layer in enumerate(layers):
        ax = axs[0, j]
        arms = [a for a in colors if _vals(rows, layer, a, "loglik_heldout").size]
        for i, a in enumerate(arms):
            v = _vals(rows, layer, a, "loglik_heldout")
            ax.plot(np.full(v.size, i) + np.linspace(-0.15, 0.15, v.size), v, "o",
                    color=colors[a], ms=4)
        ax.set_xticks(range(len(arms)), arms, rotation=30, fontsize=7)
        ax.set_title(f"{layer[0]} L = {layer[1]}", fontsize=9)
        if j == 0:
            ax.set_ylabel("held-out log-likelihood (nats/image)")
        ax = axs[1, j]
        for a in ("NCL", "RBM-PCD", "RBM-exact"):
            s, ll = _vals(rows, layer, a, "sigma"), _vals(rows, layer, a, "loglik_heldout")
            if s.size:
                ax.errorbar(s, ll, xerr=_vals(rows, layer, a, "sigma_err"), fmt="o", ms=4,
                            color=colors[a], label=a)
        ax.set_xlabel("σ (nats per double step)")
        if j == 0:
            ax.set_ylabel("held-out log-likelihood")
            ax.legend(fontsize=7)
    save_figure(fig, out / "at_scale", formats=("png",), dpi=130)


def write_report(out: Path, rows, meta: dict) -> None:
    out = Path(out)
    summ = summarise(rows)
    (out / "summary.json").write_text(json.dumps(dict(meta=meta, summary=summ), indent=1,
                                                 default=float))
    layers = _layers(rows)
    _figure(out, rows, layers)
    from ncl import classifier as clf
    _, cmeta = clf.load_default_classifier(range(10), with_meta=True)
    acc = cmeta.get("test_accuracy", float("nan"))
    L = [f"# At scale: all of MNIST{' (QUICK RUN: not the study)' if meta['quick'] else ''}",
         "",
         "Generated by `python experiments/at_scale.py` "
         f"({meta['n_train']} training and {meta['n_test']} test images, ten digits, "
         f"binarised at > 127; seeds {meta['seeds']}; wall time of the whole study "
         f"{meta['wall_seconds'] / 60:.1f} min on this machine). Raw numbers: "
         "[`per_seed.csv`](per_seed.csv), [`summary.json`](summary.json).",
         "",
         "Arms (same data, seeds, App. A1 initialisation and protocol: "
         "`ncl.training.TrainConfig()` defaults, monitor off): **NCL** (the paper's rule); "
         "**RBM-PCD** (same hidden layer, tied weights, PCD; learning rate chosen by a "
         f"sweep over {', '.join(f'{f:g}' for f in meta['rbm_learning_rates'])} "
         f"on seeds {list(meta['sweep_seeds'])} by exact training likelihood, "
         "`runs/*-RBM-PCD/lr_sweep.json`); **RBM-exact** (the RBM trained by the gradient "
         "of its exact log-likelihood); **EM** (the one-hot family as a mixture of "
         f"Bernoulli products, {meta['em_iters']} EM iterations from the same A1 means).",
         "",
         "Measures: held-out LL on the 10 000 test images, train LL on the first 10 000 "
         "training images (NCL: eq. 7 given the Rao–Blackwellised occupancy of its chains, "
         "`ncl.chain_diagnostics`; RBM and EM: exact); sample KL = KL(P_D ‖ P_samples) of "
         "the classes of the images the model's own chain generates (EM: i.i.d. samples), "
         f"classified by the shipped ten-digit MLP (held-out accuracy {acc:.4f}); "
         "confident = share classified with probability > 0.9; σ from the hidden "
         "trajectory (eq. 21, Rao–Blackwellised, jackknife-corrected); class τ = "
         "decorrelation time of the generated classes (e-folding of the lagged canonical "
         "correlation, double steps); class irrev. = KL of class pairs forward vs "
         "reversed (a lower bound on the visible chain's entropy production). Chain "
         f"settings: {meta['chain']}. Cells: median [min, max] over seeds.",
         ""]
    for layer in layers:
        name = f"{layer[0]}-{layer[1]}"
        s = summ[name]
        L += [f"## {layer[0]} hidden units, L = {layer[1]}", "", _table(rows, layer, s["arms"]), ""]
        sweep = out / "runs" / f"{name}-RBM-PCD" / "lr_sweep.json"
        if sweep.exists():
            sw = json.loads(sweep.read_text())
            L += ["PCD learning-rate sweep (median exact training LL of the sweep seeds): "
                  + ", ".join(f"{r['learning_rate']:g}: {r['median']:.1f}" for r in sw["rows"])
                  + f"; chosen {sw['chosen']:g}.", ""]
        n_ll = sorted({int(r.get("ll_images", 0)) for r in rows if (r["hidden"], r["L"]) == layer})
        if n_ll and n_ll[0] < meta["n_test"]:
            L += [f"Likelihoods of this layer on the first {n_ll[0]} training and test images.",
                  ""]
    L += ["## The four questions", "",
          "Differences are NCL minus baseline: difference of medians [95 % bootstrap "
          "interval], two-sided Mann–Whitney p; a verdict needs the interval to exclude 0 "
          "and p < 0.05.", "",
          "**1. Does the NCL beat the equilibrium baselines on held-out likelihood and class "
          "fidelity?**", ""]
    for name, s in summ.items():
        for b, c in s["q1"].items():
            L.append(f"- {name} vs {b}: held-out LL {_fmt_cmp(c['loglik_heldout'])}; "
                     f"sample KL {_fmt_cmp(c['sample_kl'])}")
    L += ["", "**2. Do cycles still form, and does σ separate good from bad seeds?** "
          "(models with σ > 3 errors; with class irreversibility > 3 errors; Spearman ρ of "
          "σ and held-out LL over the NCL seeds)", ""]
    for name, s in summ.items():
        cyc = "; ".join(f"{a}: σ>0 in {c['sigma_positive']}/{c['n']}, class cycle in "
                        f"{c['class_cycle']}/{c['n']}" for a, c in s["cycles"].items()
                        if a != "EM")
        sv = s["sigma_vs_ll"]
        L.append(f"- {name}: {cyc}; ρ(σ, held-out LL) = {sv['rho']:+.2f}, p = {sv['p']:.2g}: "
                 f"**{sv['verdict']}**")
    L += ["", "**3. How does mixing compare with the RBM's chain?** (class τ, NCL minus RBM)",
          ""]
    for name, s in summ.items():
        for b, c in s["q3"].items():
            L.append(f"- {name} vs {b}: {_fmt_cmp(c)}")
    L += ["", "**4. What does it cost per model?** (median seconds per model on this 2-core "
          "machine: training, ensemble time / seeds, compilation included; measuring)", ""]
    for name, s in summ.items():
        L.append(f"- {name}: " + "; ".join(f"{a} {c['train']:.1f} s + {c['evaluate']:.1f} s"
                                           for a, c in s["cost"].items()))
    L += ["", "![held-out likelihood by arm; σ against held-out likelihood](at_scale.png)", ""]
    notes = out / "NOTES.md"
    if notes.exists():
        L += [notes.read_text()]
    (out / "README.md").write_text("\n".join(L) + "\n")
