"""The report of a reproduction: ``REPORT.md`` (:func:`render_report`, one function per
section; :func:`write_report`) from the numbers of :func:`ncl.analysis.analyse`, and the
per-seed table ``metrics.csv`` (:func:`metrics_rows`, :func:`write_metrics_csv`,
:func:`read_metrics_csv`). NumPy only; every statistic comes from :mod:`ncl.claims`.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from ncl.analysis import DISAGREE_WHY, analyse
from ncl.artifacts import CONFIG_FILE, REPORT_FILE, load_diagnostics_npz

__all__ = ["analyse", "render_report", "write_report", "metrics_rows", "write_metrics_csv",
           "read_metrics_csv"]


# ----------------------------------------------------------------------------- formatting

def _x(v, spec=".3g", na="n/a") -> str:
    """A number, or ``na`` where it cannot exist."""
    if v is None:
        return na
    v = float(v)
    if math.isnan(v):
        return na
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return format(v, spec)


def _iv(iv, spec=".3g", na="n/a (too few models)") -> str:
    return na if iv is None else f"[{_x(iv[0], spec)}, {_x(iv[1], spec)}]"


def _med(d, spec=".3g") -> str:
    """``median [interval]`` of an :func:`ncl.analysis._median` dict."""
    if d is None or d.get("value") is None:
        return "n/a (no finite values)"
    return f"{_x(d['value'], spec)} {_iv(d['interval'], spec)}"


def _n(k: int, word: str = "model") -> str:
    return f"{k} {word}" + ("" if k == 1 else "s")


def _seeds(seeds, limit: int = 24) -> str:
    if not seeds:
        return "none"
    s = ", ".join(str(v) for v in seeds[:limit])
    return s + (f" and {len(seeds) - limit} more" if len(seeds) > limit else "")


# ----------------------------------------------------------------------------- REPORT.md

def _header(summary: dict, cfg: dict) -> list[str]:
    """Title, protocol and diagnostics settings."""
    tc, dc = cfg["train_config"], cfg["diagnostics_config"]
    S, L = summary["n_models"], summary["n_hidden"]
    src = cfg["data"].get("source") or f"digits {cfg['data'].get('digits')}"
    seeds = cfg.get("seeds") or summary["seeds"]
    seed_txt = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}..{seeds[-1]}"
    held = cfg.get("heldout") or {}
    held_txt = (f"held-out set: {held['n_images']} images ({held.get('source', '')})"
                if held.get("n_images") else
                f"held-out set: none ({held.get('reason', 'not recorded')})")
    return [
        "# Reproduction of Baiesi & Rosso, Sect. IV (Figs. 2–4)", "",
        f"{_n(S)} ({seed_txt}), L = {L} {tc['model']['hidden']} hidden units "
        f"({summary['n_states']} hidden states; recognition `{tc['model']['recognition']}`), "
        f"T = {tc['chain_length']}, {tc['epochs']} epochs × {tc['steps_per_epoch']} steps, "
        f"RMSprop lr {tc['learning_rate']}, minibatch {tc['batch_min']} → {tc['batch_max']}, "
        f"data: {cfg['data'].get('n_samples', '?')} images ({src}); {held_txt}.", "",
        f"Diagnostics per model: {dc['n_chains']} chains from random data points, "
        f"{dc['burn_in']} double steps of burn-in each, {dc['n_steps']} recorded double steps "
        f"in total; Rao–Blackwellised (RB) M from K = {dc['rb_samples']} samples per state. "
        f"Per-model error bars: delete-one-group jackknife over the chains (count "
        f"quantities) or RB batches. Log-likelihood (LL): exact given p̄, in nats per image "
        f"(training data; held-out: the MNIST test images of the same digits). σ in nats "
        f"per double step, τ in double steps. KL: eq. (22) with the shipped classifier, "
        f"P_e floored at {dc['p_floor']}.", "",
        "Every claim is tested as the paper states it, with a rule fixed before looking at "
        "the data (`ncl.claims`): a one-sided test in the paper's direction at α = 0.05 "
        "(**supported**), the same test in the opposite direction (**contradicted**), or "
        "neither (**undecided at this ensemble size**, with the number of seeds that would "
        "decide it at 80 % power if the effect is as large as measured). Ensemble-level "
        "numbers carry 95 % bootstrap intervals over seeds (`scipy.stats.bootstrap`, BCa) "
        "or Wilson intervals for shares. The paper's figures use the **count** estimator "
        "of M, so each claim is tested with it first and with the RB estimator beside it.",
        ""]


def _verdict_cell(v: dict) -> str:
    if v["statistic"] is None:
        return f"{v['verdict']}: n/a ({v['note'] or 'untestable'})"
    p = "" if v["p_value"] is None else f", p = {_x(v['p_value'], '.2g')}"
    cell = (f"{v['statistic_name']} = {_x(v['statistic'])} "
            f"{_iv(v['interval'], na='(no interval: too few models)')}{p}: **{v['verdict']}**")
    if v["seeds_to_decide"]:
        cell += f" (≈ {v['seeds_to_decide']} seeds would decide it)"
    return cell


def _claims(summary: dict, cfg: dict) -> list[str]:
    """The table of the paper's claims: test, statistic, interval, verdict (counts, RB)."""
    lines = ["## Claims of the paper vs this run", "",
             "| paper (docs/model.md, What the paper reports) | test | counts M (the "
             "paper's) | RB M | exceptions (seeds; counts / RB) |", "|---|---|---|---|---|"]
    for c in summary["claims"]:
        vc, vr = c["counts"], c["rb"]
        exc = f"{_seeds(vc['exceptions'], 12)} / {_seeds(vr['exceptions'], 12)}"
        lines.append(f"| {c['claim']} | {vc['test']} | {_verdict_cell(vc)} | "
                     f"{_verdict_cell(vr)} | {exc} |")
    lines.append("")
    notes = [f"* {c['claim']}: {c['counts']['note']}" for c in summary["claims"]
             if c["counts"]["note"] and c["counts"]["statistic"] is not None]
    if notes:
        lines += ["Notes (counts estimator):", ""] + notes + [""]
    dis = [c for c in summary["claims"] if c["disagreement"]]
    if dis:
        lines += ["Where the two estimators disagree:", ""]
        lines += [f"* {c['claim']}: counts **{c['counts']['verdict']}**, RB "
                  f"**{c['rb']['verdict']}**." for c in dis]
        lines += ["", DISAGREE_WHY, ""]
    else:
        lines += ["The count and RB estimators give the same verdict on every claim.", ""]
    return lines


def _levels_section(summary: dict, cfg: dict) -> list[str]:
    """Every likelihood level (Fig. 2c), with shares, σ and held-out LL; the stragglers."""
    lines = ["## Likelihood levels (Fig. 2c)", "",
             f"Levels found from the data, numbered by increasing mean LL: "
             f"{summary['levels_rule']} (floor: the median jackknife error of the LL, "
             f"{_x(summary['spread_floor'], '.2g')} nats). The low-likelihood group of the "
             f"claims is the lowest level and the stragglers below its top.", ""]
    if not summary["levels"]:
        lines += [f"No level: no two of the {_n(summary['n_models'])} share a likelihood "
                  "value within the spread, so every model is a straggler.", ""]
    else:
        lines += ["| level | mean LL | SD | LL range | models | share [95 % Wilson] | "
                  "median σ counts [95 %] | median σ RB [95 %] | median held-out LL [95 %] |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for lev in summary["levels"]:
            sh = lev["share"]
            held = "n/a (no held-out set)" if lev["heldout"] is None else _med(lev["heldout"],
                                                                               ".2f")
            lines.append(f"| {lev['name']} | {lev['mean']:.2f} | {lev['sd']:.3f} | "
                         f"{lev['low']:.2f} … {lev['high']:.2f} | {lev['n']} | "
                         f"{sh['value']:.2f} {_iv(sh['interval'], '.2f')} | "
                         f"{_med(lev['sigma_counts'])} | {_med(lev['sigma_rb'])} | {held} |")
        lines.append("")
    st = summary["stragglers"]
    if st:
        lines += [f"Stragglers ({_n(len(st))} on no level):", "",
                  "| seed | LL | σ counts | σ RB |", "|---|---|---|---|"]
        lines += [f"| {r['seed']} | {_x(r['loglik'], '.2f')} | {_x(r['sigma_counts'])} | "
                  f"{_x(r['sigma_rb'])} |" for r in st]
    else:
        lines.append("Stragglers: none.")
    lines.append("")
    return lines


def _heldout_section(summary: dict, cfg: dict) -> list[str]:
    """Train vs held-out log-likelihood: per level, the gap, against σ."""
    h = summary["heldout"]
    lines = ["## Held-out log-likelihood", ""]
    if h is None:
        reason = (cfg.get("heldout") or {}).get("reason") or "diagnostics.npz has no held-out keys"
        return lines + [f"n/a ({reason}).", ""]
    lines += [f"Exact LL given p̄ (count estimate of p̄) on the held-out images, per model "
              f"(median jackknife error {_x(h['err_median'], '.2g')} nats). Medians over "
              "models with 95 % bootstrap intervals; gap = train − held-out.", "",
              "| group | models | train LL | held-out LL | gap |", "|---|---|---|---|---|",
              f"| all models | {h['n']} | {_med(h['train'], '.2f')} | "
              f"{_med(h['heldout'], '.2f')} | {_med(h['gap'], '.3f')} |"]
    for r in h["per_level"]:
        lines.append(f"| {r['name']} | {r['n']} | {_med(r['train'], '.2f')} | "
                     f"{_med(r['heldout'], '.2f')} | {_med(r['gap'], '.3f')} |")
    lines.append("")
    for label, k in (("train LL vs held-out LL", "rho_train_heldout"),
                     ("σ counts vs held-out LL", "rho_sigma_counts"),
                     ("σ RB vs held-out LL", "rho_sigma_rb")):
        r = h[k]
        val = (f"{_x(r['value'], '+.2f')} {_iv(r['interval'], '+.2f')}" if r["value"]
               is not None else f"n/a ({r['reason']})")
        lines.append(f"* Spearman ρ, {label}: {val}")
    lines.append("")
    return lines


def _tau_section(summary: dict, cfg: dict) -> list[str]:
    """τ in the high-σ regime: its distribution, and the maximum apart (Fig. 4b)."""
    lines = ["## τ (Fig. 4b)", "",
             "The paper's \"τ up to about 50\" is read as the typical τ of the high-σ models "
             "(the top σ tercile); the largest τ is reported apart (the maximum of many "
             "draws is not a typical value).", "",
             "| estimator | top-tercile models | smallest σ there | median τ [95 %] | "
             "quartiles | largest τ (seed) | τ = ∞ |", "|---|---|---|---|---|---|---|"]
    for e, t in summary["tau"].items():
        mx = t["max"]
        mx_txt = ("n/a (no finite τ)" if mx is None else
                  f"{mx['value']:.1f} ± {_x(mx['err'], '.1f')} (seed {mx['seed']})")
        if t["top"] is None:
            lines.append(f"| {e} | n/a ({t['reason']}) | n/a | n/a | n/a | {mx_txt} | "
                         f"{t['n_infinite']} |")
            continue
        top = t["top"]
        lines.append(f"| {e} | {top['n']} | {_x(top['sigma_min'])} | "
                     f"{_med(top['median'], '.1f')} | {_x(top['q25'], '.1f')} … "
                     f"{_x(top['q75'], '.1f')} | {mx_txt} | {t['n_infinite']} |")
    lines.append("")
    return lines


def _structure_section(summary: dict, cfg: dict) -> list[str]:
    """Best and worst run, structure per level (Fig. 3)."""
    L = summary["n_states"]
    lines = ["## Structure of the runs (Fig. 3)", ""]
    for tag, r in (("Best", summary["best"]), ("Worst", summary["worst"])):
        s = (f"* {tag} run: seed {r['seed']} ({r['level_name']}), LL {_x(r['loglik'], '.2f')}, "
             f"σ {_x(r['sigma_counts'])} (counts) / {_x(r['sigma_rb'])} (RB), "
             f"p̄ {r['p_min']:.3f} … {r['p_max']:.3f}")
        if "units_per_digit" in r:
            s += f", hidden units per digit {r['units_per_digit']}"
        s += (f", dominant successor of each state (RB M) {r['successor']} (at least "
              f"{r['dominant_fraction']:.0%} of the row's off-diagonal mass), one {L}-cycle: "
              f"{'yes' if r['single_cycle'] else 'no'} (RB), "
              f"{'yes' if r['counts_single_cycle'] else 'no'} (counts).")
        lines.append(s)
    if summary["structure_per_level"]:
        lines += ["", "| level | models | two units per digit | p̄ within 0.05 of uniform | "
                  f"one {L}-cycle (counts M) | one {L}-cycle (RB M) |",
                  "|---|---|---|---|---|---|"]
        for r in summary["structure_per_level"]:
            lines.append(f"| {r['name']} | {r['n']} | {r['n_two_per_digit']} | "
                         f"{r['n_near_uniform']} | {r['n_single_cycle_counts']} | "
                         f"{r['n_single_cycle_rb']} |")
    lines.append("")
    return lines


def _correlations_section(summary: dict, cfg: dict) -> list[str]:
    """Spearman rank correlations with bootstrap intervals."""
    lines = ["## Spearman rank correlations (over all models)", "",
             "| pair | ρ | 95 % bootstrap interval | models |", "|---|---|---|---|"]
    for k, r in summary["correlations"].items():
        if r["value"] is None:
            lines.append(f"| {k} | n/a ({r['reason']}) | n/a | {r['n']} |")
        else:
            lines.append(f"| {k} | {r['value']:+.3f} | {_iv(r['interval'], '+.3f')} | "
                         f"{r['n']} |")
    lines.append("")
    return lines


def _timings(summary: dict, cfg: dict) -> list[str]:
    """Wall times, cores, devices, load average."""
    t = cfg.get("timings", {})
    S = summary["n_models"]
    lines = ["## Timings", "", "| step | wall time (s) |", "|---|---|"]
    total = 0.0
    for k, name in (("train_seconds", f"training, {S}-seed vmapped program (incl. "
                                      "compilation)"),
                    ("diagnose_seconds", "diagnostics (incl. compilation)"),
                    ("figures_seconds", "figures (PNG + PDF)")):
        if t.get(k) is not None:
            lines.append(f"| {name} | {t[k]:.1f} |")
            total += float(t[k])
    dev = t.get("train_devices")
    dev_txt = (f"training sharded over {_n(int(dev), 'XLA CPU device')}" if dev is not None
               else "training devices not recorded (diagnostics of a saved run)")
    prov = cfg.get("provenance", {})

    def la(k):
        v = t.get(k)
        return "not recorded" if v is None else ", ".join(str(x) for x in v)

    lines += [f"| **total** | **{total:.1f}** ({total / 60:.1f} min) |", "",
              f"CPU cores: {cfg.get('cpu_count')}; {dev_txt}; ncl commit "
              f"{prov.get('git_commit')}, JAX {prov.get('jax_version')}. Load average (1, 5, "
              f"15 min): at start {la('load_average_start')}; after training "
              f"{la('load_average_after_train')}; after diagnostics "
              f"{la('load_average_after_diagnose')}. A load above the core count means other "
              "jobs shared the machine, which inflates these times.", ""]
    return lines


def _notes_and_files(summary: dict, cfg: dict) -> list[str]:
    """Notes and the list of files."""
    mon = ("" if summary["has_monitor"] else
           " This run has no precise per-epoch monitor (`hist_loglik_precise`): Fig. 2a "
           "shows the on-the-fly minibatch estimate.")
    return ["## Notes", "",
            "* Which seed lands on which level is not stable under float round-off: "
            "training the same seeds with a different number of XLA CPU devices "
            "(`--cpu-devices`) changes the last bits of a logit, which flips an occasional "
            "Bernoulli draw and sends the chain on another path. Compare ensembles (level "
            "shares, correlations), not individual seeds.",
            "* The per-epoch curves of Fig. 2(a, b) come from the training chain itself "
            "(parameters drifting), so they are noisier than the final diagnostics." + mon,
            "", "## Files", "",
            "* `fig2`, `fig3`, `fig4` (`.png`/`.pdf`) — Figs. 2–4, coloured by likelihood "
            "level (σ: Rao–Blackwellised; `ncl figures DIR --estimator counts` redraws them "
            "with the count estimator, `--heldout` draws Fig. 2c with the held-out LL).",
            "* `metrics.csv` — one row per seed: level, LL ± err, held-out LL ± err (counts "
            "and RB p̄), σ, τ and Tr(M)/L with both estimators, KL, p̄ and digit of each unit.",
            "* `config.json` — train and diagnostics configuration, seeds, held-out set, "
            "timings.",
            "* `diagnostics.npz` — all diagnostics arrays, the training history and the "
            "Fig. 3 samples (`ncl figures` redraws from it).", ""]


_SECTIONS = (_header, _claims, _levels_section, _heldout_section, _tau_section,
             _structure_section, _correlations_section, _timings, _notes_and_files)
"""The sections of ``REPORT.md`` in order; each maps ``(summary, cfg)`` to its lines."""


def render_report(summary: dict, cfg: dict) -> str:
    """``REPORT.md``: each claim of the paper, its test, statistic, interval and verdict."""
    lines = []
    for section in _SECTIONS:
        lines += section(summary, cfg)
    return "\n".join(lines)


def write_report(out_dir, summary: dict | None = None) -> dict:
    """(Re)write ``out_dir/REPORT.md`` from ``config.json`` and the analysis ``summary``
    (default: :func:`analyse` of ``out_dir/diagnostics.npz``); returns the summary."""
    out_dir = Path(out_dir)
    if summary is None:
        summary = analyse(load_diagnostics_npz(out_dir))
    cfg = json.loads((out_dir / CONFIG_FILE).read_text())
    (out_dir / REPORT_FILE).write_text(render_report(summary, cfg))
    return summary


# ----------------------------------------------------------------------------- metrics.csv

def _f(v, nd=6):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{nd}g}"


def metrics_rows(arrays: dict, level_labels) -> list[dict]:
    """One dict per seed (the columns of ``metrics.csv``); ``level_labels``: the level of
    each model (``analyse(arrays)["level_labels"]``, −1 for a straggler)."""
    seeds = np.asarray(arrays["seeds"])
    g = lambda k: arrays.get(f"diag_{k}")  # noqa: E731
    p_bar = np.asarray(g("p_bar"))
    L = p_bar.shape[1]
    hist_ll = arrays.get("hist_loglik")
    hist_llp = arrays.get("hist_loglik_precise")
    finite = arrays.get("hist_finite")
    rows = []
    for i, s in enumerate(seeds):
        r = {"seed": int(s), "level": int(level_labels[i]),
             "loglik": _f(g("loglik")[i]), "loglik_err": _f(g("loglik_err")[i]),
             "loglik_onthefly": _f(hist_ll[i, -1]) if hist_ll is not None else "nan",
             "loglik_precise_monitor": (_f(hist_llp[i, -1]) if hist_llp is not None
                                        else "nan"),
             "sigma_rb": _f(g("sigma_rb")[i]), "sigma_rb_err": _f(g("sigma_rb_err")[i]),
             "sigma_counts": _f(g("sigma_counts")[i]),
             "sigma_counts_err": _f(g("sigma_counts_err")[i]),
             "tau_rb": _f(g("tau_rb")[i]), "tau_rb_err": _f(g("tau_rb_err")[i]),
             "tau_counts": _f(g("tau_counts")[i]),
             "tau_counts_err": _f(g("tau_counts_err")[i]),
             "trM_over_L_counts": _f(g("self_transition_counts")[i]),
             "trM_over_L_rb": _f(g("self_transition_rb")[i])}
        for k in ("kl", "kl_err", "kl_soft", "kl_soft_err"):
            r[k] = _f(g(k)[i]) if g(k) is not None else "nan"
        # newer fields (absent from diagnostics files written before them)
        for col, k in (("loglik_heldout", "loglik_heldout"),
                       ("loglik_heldout_err", "loglik_heldout_err"),
                       ("loglik_heldout_rb", "loglik_heldout_rb"),
                       ("loglik_heldout_rb_err", "loglik_heldout_rb_err"),
                       ("sigma_rb_bc", "sigma_rb_bc"),
                       ("trM_over_L_counts_err", "self_transition_counts_err"),
                       ("trM_over_L_rb_err", "self_transition_rb_err")):
            r[col] = _f(g(k)[i]) if g(k) is not None else "nan"
        for a in range(L):
            r[f"p_bar_{a}"] = _f(p_bar[i, a], 4)
        ud = g("unit_digit")
        for a in range(L):
            r[f"digit_{a}"] = int(ud[i, a]) if ud is not None else -1
        r["finite"] = int(bool(np.all(finite[i]))) if finite is not None else 1
        rows.append(r)
    return rows


def write_metrics_csv(path, rows: list[dict]) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    return path


def read_metrics_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
