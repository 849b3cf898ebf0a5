"""Figs. 2–4 of a reproduction from its ``diagnostics.npz``: the arrays each figure needs,
assembled from the file's schema (:mod:`ncl.artifacts`; Fig. 3's runs and samples by
:func:`fig3_arrays`), drawn by :mod:`ncl.plots` (arrays → matplotlib Figures) and saved
(:func:`make_figures`)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ncl import plots
from ncl.artifacts import CONFIG_FILE, load_diagnostics_npz, write_json
from ncl.figure_pool import FigureJob, draw_jobs, start_workers
from ncl.progress import Log
from ncl.analysis import ensemble_levels
from ncl.regimes import level_names
from ncl.sampling import sample_sequence


def fig3_arrays(key, params, centers, config, x, diag_loglik, seeds) -> dict:
    """Params and a sampled sequence of the best and the worst run (by final LL)."""
    import jax
    ll = np.asarray(diag_loglik, np.float64)
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    best, worst = int(np.argmax(ll)), int(np.argmin(ll))
    which = [best, worst]
    out = {"fig3_index": np.array(which), "fig3_seed": np.asarray(seeds)[which]}
    keys = jax.random.split(key, 2 * len(which))
    k_x0, k_seq = keys[:len(which)], keys[len(which):]
    x0 = np.stack([x[int(jax.random.randint(k, (), 0, x.shape[0]))] for k in k_x0])
    sub = jax.tree_util.tree_map(lambda a: a[np.asarray(which)], params)
    seq = sample_sequence(k_seq, sub, np.asarray(centers)[which], config, x0)
    for name in ("z", "mean_images", "samples"):
        out[f"fig3_{name}"] = seq[name]
    for name in ("w", "a", "wbar", "abar"):
        out[f"fig3_{name}"] = np.asarray(getattr(params, name))[which]
    return out


def _pick(arrays, estimator):
    if estimator == "rb":
        return (arrays["diag_sigma_rb"], arrays["diag_sigma_rb_err"], arrays["diag_tau_rb"],
                arrays["diag_tau_rb_err"])
    return (arrays["diag_sigma_counts"], arrays["diag_sigma_counts_err"],
            arrays["diag_tau_counts"], arrays["diag_tau_counts_err"])


def self_transition_err_counts(transition_counts) -> np.ndarray:
    """Standard error of ``Tr(M_counts)/L`` from the transition counts ``(..., L, L)``.

    The hidden process is a Markov chain, so given the visits ``n_z`` the row counts are
    multinomial: ``SE = sqrt(Σ_z M_zz (1 − M_zz) / n_z) / L``.
    """
    c = np.asarray(transition_counts, np.float64)
    n = c.sum(-1)
    L = c.shape[-1]
    mzz = np.diagonal(c, axis1=-2, axis2=-1) / np.maximum(n, 1)
    var = np.where(n > 0, mzz * (1 - mzz) / np.maximum(n, 1), 0.0)
    return np.sqrt(var.sum(-1)) / L


def _level_names(labels, loglik) -> dict:
    """The names (:func:`ncl.regimes.level_names`) of the levels in ``labels``, from the
    mean LL of each labelled group."""
    labels, ll = np.asarray(labels), np.asarray(loglik, np.float64)
    k = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    return level_names([float(np.mean(ll[labels == j])) if np.any(labels == j) else np.nan
                        for j in range(k)])


def _figure_jobs(out_dir: Path, estimator: str, formats: tuple, levels, heldout: bool,
                 log) -> list[FigureJob]:
    """The :class:`ncl.figure_pool.FigureJob` of Figs. 2, 3 and 4 (see
    :func:`make_figures`)."""
    A = load_diagnostics_npz(out_dir)
    seeds = A["seeds"]
    sig, sig_err, tau, tau_err = _pick(A, estimator)
    if levels is None:
        levels = ensemble_levels(A)[0].label
    levels = np.asarray(levels)
    names = _level_names(levels, A["diag_loglik"])
    name = plots.ESTIMATOR_NAMES[estimator]
    jobs = []

    # the precise per-epoch log-likelihood, else the on-the-fly minibatch estimate (App. A3)
    llh = A.get("hist_loglik_precise")
    ll_label = "precise: exact given the epoch's p̄, all data"
    if llh is None or not np.isfinite(llh).any():
        llh = A["hist_loglik"]
        ll_label = "on-the-fly minibatch estimate (no precise monitor)"
    sgh = A.get(f"hist_sigma_{estimator}")
    if sgh is None:
        sgh = np.full_like(llh, np.nan)
    final_ll, final_err, final_label = A["diag_loglik"], A["diag_loglik_err"], None
    held_note = ""
    if heldout:
        if "diag_loglik_heldout" in A:
            final_ll, final_err = A["diag_loglik_heldout"], A["diag_loglik_heldout_err"]
            final_label = "held-out"
            held_note = (" (c): held-out log-likelihood (MNIST test images of the same "
                         "digits), markers: levels of the training log-likelihood.")
        else:
            held_note = (" (c): training log-likelihood; this diagnostics.npz has no "
                         "held-out arrays (rerun `ncl diagnose` to add them).")
            log("figures: no held-out arrays in diagnostics.npz; Fig. 2c shows the "
                "training log-likelihood")
    jobs.append(FigureJob("figure2", dict(
        loglik_history=llh, sigma_history=sgh, final_loglik=final_ll, final_sigma=sig,
        final_loglik_err=final_err, final_sigma_err=sig_err, seeds=seeds,
        estimator=estimator, regimes=levels, regime_names=names, loglik_label=ll_label,
        final_label=final_label,
        caption=(f"(a, b) per-epoch values monitored on the training chain (σ from its "
                 f"{name} M). (c) and the colours: final values from the diagnostics "
                 f"(long chains; jackknife error bars). Markers: likelihood levels found "
                 f"from the data (see REPORT.md)." + held_note)),
        str(out_dir / "fig2"), formats))

    runs = []
    for j, tag in enumerate(("(a) best run (highest final log-likelihood)",
                             "(b) worst run (lowest final log-likelihood)")):
        i = int(A["fig3_index"][j])
        M = (np.exp(A["diag_log_M_rb"][i]) if estimator == "rb" else A["diag_M_counts"][i])
        ud = A.get("diag_unit_digit")
        kl = A.get("diag_kl")
        title = (f"{tag}: seed {int(seeds[i])}, log-likelihood {A['diag_loglik'][i]:.2f} "
                 f"nats/image, σ = {sig[i]:.3g} ± {sig_err[i]:.2g} ({estimator}), "
                 f"τ = {tau[i]:.3g}")
        if kl is not None:
            title += f", KL = {kl[i]:.3g}"
        runs.append(dict(w=A["fig3_w"][j], wbar=A["fig3_wbar"][j], abar=A["fig3_abar"][j],
                         p_bar=A["diag_p_bar"][i], M=M,
                         unit_digit=None if ud is None else ud[i],
                         mean_images=A["fig3_mean_images"][j], samples=A["fig3_samples"][j],
                         z=A["fig3_z"][j], title=title))
    jobs.append(FigureJob("figure3", dict(runs=runs, estimator=estimator),
                          str(out_dir / "fig3"), formats))

    st_c = A["diag_self_transition_counts"]
    st_rb = A["diag_self_transition_rb"]
    kl = A.get("diag_kl")
    jobs.append(FigureJob("figure4", dict(
        sigma=sig, kl=kl if kl is not None else np.full(sig.shape, np.nan), tau=tau,
        self_transition=st_c,
        sigma_err=sig_err, kl_err=A.get("diag_kl_err"), tau_err=tau_err,
        self_transition_err=(A["diag_self_transition_counts_err"]
                             if "diag_self_transition_counts_err" in A
                             else self_transition_err_counts(A["diag_transition_counts"])),
        self_transition_alt=st_rb, alt_label="Tr(M)/L, Rao–Blackwellised M",
        n_hidden=int(A["diag_p_bar"].shape[1]), estimator=estimator, regimes=levels,
        regime_names=names,
        caption=("(a) KL of eq. (22), P_e floored at 1e-3 (values below 1e-6 drawn at 1e-6); "
                 "(b) τ = −1/ln|λ₂| of the "
                 f"{name} M; (c) dots: count estimate of Tr(M)/L with "
                 f"{'jackknife' if 'diag_self_transition_counts_err' in A else 'multinomial'} "
                 "error bars, crosses: Rao–Blackwellised M; dashed: 1/L. Error bars: jackknife "
                 "over chains / RB batches.")),
        str(out_dir / "fig4"), formats))
    return jobs


def make_figures(out_dir, estimator: str = "rb", log=None,
                 formats: Sequence[str] = ("png", "pdf"), levels=None,
                 heldout: bool = False, processes: int | None = None) -> list[Path]:
    """Figs. 2–4 from ``out_dir/diagnostics.npz`` (no JAX computation). Returns paths
    and records the time in ``out_dir/config.json`` (``timings.figures_seconds``).
    ``levels``: the likelihood level of each model, −1 for a straggler (default:
    :func:`ncl.analysis.ensemble_levels`, as in the report's ``level_labels``); markers
    and colours show the levels, named by :func:`ncl.regimes.level_names`.
    ``heldout``: Fig. 2c shows the held-out log-likelihood instead of the training one
    (a file without the held-out arrays is drawn with the training one, with a note).
    ``processes``: how many processes draw the three figures side by side
    (:func:`ncl.figure_pool.draw_jobs`; default one per figure, at most the core count;
    1 draws them here, one after the other). The files are the same either way (the
    PDFs up to their creation date)."""
    log = log or Log(True)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    workers = start_workers(processes, log)   # their imports overlap the reading below
    try:
        jobs = _figure_jobs(out_dir, estimator, tuple(formats), levels, heldout, log)
    except BaseException:
        for w in workers:
            w.stop()
        raise
    log("figures: fig2, fig3, fig4 ...")
    paths = draw_jobs(jobs, workers, log)
    dt = time.perf_counter() - t0
    cfg_path = out_dir / CONFIG_FILE
    if cfg_path.exists():
        cfg = json.loads(cfg_path.read_text())
        cfg.setdefault("timings", {})["figures_seconds"] = dt
        write_json(cfg_path, cfg)
    log(f"figures: {len(paths)} files written in {dt:.1f} s")
    return paths
