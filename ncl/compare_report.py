"""The outputs of an NCL-vs-RBM comparison (:func:`ncl.compare.run_comparison`): the
per-seed, summary and test tables (CSV), ``compare.md`` (:func:`markdown_report`),
``compare.json`` (settings, timings), the figure ``compare.png``
(:func:`plot_comparison`), all written by :func:`write_outputs`, and
:func:`load_results`, which rebuilds a :class:`~ncl.compare.Comparison` from those files.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import jax
import numpy as np

from ncl import diagnostics as dg
from ncl.compare import (METRICS, Arm, ArmResult, CompareConfig, Comparison,
                         compare_arms)
from ncl.stats import spread
from ncl.training import TrainConfig


def _fmt(v: float, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}" if abs(v) < 100 else f"{v:.1f}"


PER_SEED_COLUMNS = ("loglik", "loglik_err", "loglik_exact", "loglik_chain", "loglik_chain_err",
                    "kl", "kl_chain", "kl_soft", "sample_kl", "confident", "tau", "tau_counts",
                    "sigma", "sigma_err", "sigma_bc", "sigma_counts", "self_transition",
                    "loglik_otf_last_epoch", "finite")


def _sigma_check(res: ArmResult) -> dict:
    """Is sigma 0 within 3 standard errors? Uses the jackknife bias-corrected RB estimate
    (the plug-in sigma is >= 0 and biased upwards by O(1/samples), so a reversible model
    would show a few SE; see ``Diagnostics.sigma_rb_bc``)."""
    s = np.asarray(res.metrics["sigma_bc"], np.float64)
    e = np.asarray(res.metrics["sigma_err"], np.float64)
    ok = np.abs(s) <= 3 * e + 1e-6
    return {"n_within_3se": int(ok.sum()), "n": int(s.size)}


def summary_rows(comp: Comparison) -> list[dict]:
    rows = []
    for res in comp.arms:
        for name, label, _ in METRICS:
            med, q1, q3, n = spread(res.metrics[name])
            rows.append(dict(arm=res.arm.name, metric=name, label=label, median=med, q25=q1,
                             q75=q3, n=n))
    return rows


def write_outputs(comp: Comparison, out_dir, figure: bool = True) -> dict:
    """Write ``compare_per_seed.csv``, ``compare_summary.csv``, ``compare_tests.csv``,
    ``compare.md``, ``compare.json`` (settings, timings) and ``compare.png`` to ``out_dir``.
    Returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    p = out / "compare_per_seed.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arm", "seed", *PER_SEED_COLUMNS])
        for res in comp.arms:
            for i, s in enumerate(res.seeds):
                w.writerow([res.arm.name, s, *(repr(float(res.metrics[c][i]))
                                               for c in PER_SEED_COLUMNS)])
    paths["per_seed"] = p
    p = out / "compare_summary.csv"
    with p.open("w", newline="") as f:
        w = csv.DictWriter(f, ["arm", "metric", "label", "median", "q25", "q75", "n"])
        w.writeheader()
        w.writerows(summary_rows(comp))
    paths["summary"] = p
    p = out / "compare_tests.csv"
    with p.open("w", newline="") as f:
        w = csv.DictWriter(f, ["arm", "reference", "metric", "diff", "low", "high", "p",
                               "significant", "better"])
        w.writeheader()
        w.writerows(comp.tests)
    paths["tests"] = p
    p = out / "compare.md"
    p.write_text(markdown_report(comp))
    paths["markdown"] = p
    meta = {"config": comp.config.to_dict(),
            "arms": [{"name": r.arm.name, "train_config": r.arm.config.to_dict(),
                      "train_seconds": r.train_seconds, "eval_seconds": r.eval_seconds,
                      "sigma_check": _sigma_check(r)} for r in comp.arms],
            "devices": str(jax.devices())}
    p = out / "compare.json"
    p.write_text(json.dumps(meta, indent=2, default=float))
    paths["json"] = p
    if figure:
        paths["figure"] = plot_comparison(comp, out / "compare.png")
    return paths


def markdown_report(comp: Comparison) -> str:
    cfg = comp.config
    t = cfg.train
    names = [r.arm.name for r in comp.arms]
    lines = [
        f"Seeds {cfg.first_seed}..{cfg.first_seed + cfg.n_seeds - 1} per arm; L = "
        f"{t.model.n_hidden} {t.model.hidden}, T = {t.chain_length}, {t.epochs} epochs x "
        f"{t.steps_per_epoch} steps, minibatch {t.batch_min} -> {t.batch_max}, RMSprop "
        f"lr {t.learning_rate:g} (unless the arm says otherwise), centering "
        f"{'on' if t.model.centering else 'off'}. Diagnostics: {cfg.diagnostics.n_steps} "
        f"recorded double steps after {cfg.diagnostics.burn_in} of burn-in, "
        f"{cfg.diagnostics.rb_samples} Rao-Blackwell samples per state. Samples: "
        f"{cfg.sample_chains * cfg.samples_per_chain} images per model; confident = max "
        f"class probability > {cfg.confidence:g}.",
        "",
        "Median [25th, 75th percentile] over seeds. The RBM log-likelihood is exact; the "
        "NCL one is the precise estimate given a long chain's occupancy. The RBM's unit-class "
        "KL uses its exact hidden marginal; the NCL's the chain occupancy (as the paper).",
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for name, label, _ in METRICS:
        cells = []
        for r in comp.arms:
            med, q1, q3, n = spread(r.metrics[name])
            cells.append("–" if n == 0 else f"{_fmt(med)} [{_fmt(q1)}, {_fmt(q3)}]")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| train time (s, all seeds) | " + " | ".join(
        f"{r.train_seconds:.0f}" for r in comp.arms) + " |")
    lines += ["", "Differences from the reference (" + names[0] + "): median difference "
              f"with a 95% percentile-bootstrap interval ({cfg.n_boot} resamples of seeds "
              "within each arm, scipy.stats.bootstrap, fixed seed) and the two-sided "
              "Mann-Whitney U p-value (scipy.stats.mannwhitneyu: exact for at most 8 seeds "
              "without ties, else the normal approximation with tie and continuity "
              "corrections); 'yes' = larger than its error (interval excludes 0 and "
              "p < 0.05).", "",
              "| arm | metric | difference | 95% interval | p | larger than error | better |",
              "|---|---|---|---|---|---|---|"]
    for r in comp.tests:
        lines.append(f"| {r['arm']} | {r['metric']} | {_fmt(r['diff'])} | [{_fmt(r['low'])}, "
                     f"{_fmt(r['high'])}] | {_fmt(r['p'], 2)} | "
                     f"{'yes' if r['significant'] else 'no'} | {r['better'] or '–'} |")
    lines += ["", "Sanity checks:"]
    for r in comp.arms:
        chk = _sigma_check(r)
        if r.arm.family == "rbm":
            d = np.abs(r.metrics["loglik_chain"] - r.metrics["loglik_exact"])
            lines.append(f"- {r.arm.name}: sigma (RB, jackknife bias-corrected) within 3 "
                         f"standard errors of 0 for {chk['n_within_3se']}/{chk['n']} seeds "
                         f"(detailed balance); chain "
                         f"estimate of the log-likelihood vs exact: median |difference| "
                         f"{_fmt(float(np.nanmedian(d)))} nats, max {_fmt(float(np.nanmax(d)))}.")
        else:
            lines.append(f"- {r.arm.name}: sigma (RB, jackknife bias-corrected) within 3 "
                         f"standard errors of 0 for {chk['n_within_3se']}/{chk['n']} seeds.")
        bad = int(np.sum(r.metrics["finite"] == 0))
        if bad:
            lines.append(f"- {r.arm.name}: {bad} seed(s) ended with non-finite parameters.")
    return "\n".join(lines) + "\n"


def _clip_loglik_axis(ax, comp: Comparison, xs, window: float = 60.0):
    """Zoom the log-likelihood axis on the arms whose median is within ``window`` nats of
    the best; models far below are drawn on the lower edge (▼) with their arm's median."""
    meds = [np.nanmedian(np.asarray(r.metrics["loglik"], float)) for r in comp.arms]
    best = np.nanmax(meds)
    keep = [r for r, m in zip(comp.arms, meds) if m >= best - window]
    v = np.concatenate([np.asarray(r.metrics["loglik"], float) for r in keep])
    v = v[np.isfinite(v)]
    lo = min(np.quantile(v, 0.02), best - 5.0)
    hi = v.max()
    lo, hi = lo - 0.08 * (hi - lo), hi + 0.05 * (hi - lo)
    ax.set_ylim(lo, hi)
    for r, m in zip(comp.arms, meds):
        ll = np.asarray(r.metrics["loglik"], float)
        below = ll < lo
        if below.any():
            x = np.asarray(xs(r), float)[below]
            ax.scatter(x, np.full(below.sum(), lo + 0.02 * (hi - lo)), marker="v", s=14,
                       color="k")
            ax.annotate(f"{r.arm.name}: {int(below.sum())} below\n(median {_fmt(float(m))})",
                        (np.median(x), lo + 0.04 * (hi - lo)), fontsize=6, ha="center",
                        va="bottom")


def plot_comparison(comp: Comparison, path) -> Path:
    """Per-seed strip plots of every metric (median and quartiles marked) and log-likelihood
    against σ, one colour per arm."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [m for m in METRICS if any(np.any(np.isfinite(r.metrics[m[0]])) for r in comp.arms)]
    n = len(panels) + 1
    cols = 4
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    rng = np.random.default_rng(0)
    names = [r.arm.name for r in comp.arms]
    for ax, (name, label, _) in zip(axes.flat, panels):
        for i, r in enumerate(comp.arms):
            v = np.asarray(r.metrics[name], np.float64)
            fin = np.isfinite(v)
            ax.scatter(i + 0.12 * rng.standard_normal(fin.sum()), v[fin], s=9, alpha=0.6,
                       color=colors[i % len(colors)])
            if (~fin & ~np.isnan(v)).any():
                ax.annotate(f"{int((~fin & ~np.isnan(v)).sum())} inf", (i, 1.0),
                            xycoords=("data", "axes fraction"), ha="center", va="top",
                            fontsize=7)
            med, q1, q3, k = spread(v)
            if k and np.isfinite(med):
                ax.plot([i - 0.3, i + 0.3], [med, med], color="k", lw=1.5)
                if np.isfinite(q1) and np.isfinite(q3):
                    ax.plot([i, i], [q1, q3], color="k", lw=1)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=20, fontsize=7, ha="right")
        ax.set_title(label, fontsize=9)
        vals = np.concatenate([np.asarray(r.metrics[name], np.float64) for r in comp.arms])
        vals = vals[np.isfinite(vals)]
        if name in ("sigma", "sigma_counts", "tau") and vals.size and vals.min() > 0 and \
                vals.max() / vals.min() > 100:
            ax.set_yscale("log")
        if name == "loglik" and vals.size:
            _clip_loglik_axis(ax, comp, lambda r: np.full(len(r.seeds), names.index(r.arm.name),
                                                          float))
    ax = axes.flat[len(panels)]
    for i, r in enumerate(comp.arms):
        s = np.maximum(np.asarray(r.metrics["sigma"], np.float64), 1e-6)
        ax.scatter(s, r.metrics["loglik"], s=9, alpha=0.7, color=colors[i % len(colors)],
                   label=r.arm.name)
    ax.set_xscale("log")
    ax.set_xlabel("sigma (RB), floored at 1e-6", fontsize=8)
    ax.set_ylabel("log-likelihood", fontsize=8)
    _clip_loglik_axis(ax, comp, lambda r: np.maximum(np.asarray(r.metrics["sigma"], float),
                                                     1e-6))
    ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def load_results(out_dir) -> Comparison:
    """Rebuild a :class:`Comparison` (metrics, settings, timings; no states or diagnostics
    objects) from the files :func:`write_outputs` wrote, e.g. to redraw the figure or the
    Markdown table without retraining."""
    out = Path(out_dir)
    meta = json.loads((out / "compare.json").read_text())
    c = dict(meta["config"])
    c["train"] = TrainConfig.from_dict(c["train"])
    c["diagnostics"] = dg.DiagnosticsConfig(**c["diagnostics"])
    c["rbm_learning_rates"] = tuple(c["rbm_learning_rates"])
    cfg = CompareConfig(**c)
    per_arm: dict = {}
    with (out / "compare_per_seed.csv").open() as f:
        for row in csv.DictReader(f):
            per_arm.setdefault(row["arm"], []).append(row)
    arms = []
    for a in meta["arms"]:
        rows = per_arm[a["name"]]
        metrics = {k: np.array([float(r[k]) for r in rows]) for k in PER_SEED_COLUMNS}
        arms.append(ArmResult(Arm(a["name"], TrainConfig.from_dict(a["train_config"])),
                              [int(r["seed"]) for r in rows], metrics, None, None, None,
                              a["train_seconds"], a["eval_seconds"]))
    return Comparison(cfg, arms, compare_arms(arms, cfg.n_boot))
