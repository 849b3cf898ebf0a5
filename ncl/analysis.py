"""The numbers of a reproduction report (NumPy and scipy.stats through :mod:`ncl.claims`).

:func:`analyse` maps the arrays of ``diagnostics.npz`` to a JSON-able summary:

* ``levels`` — every discrete likelihood level found from the data
  (:func:`ncl.levels.find_levels`, spread floor = the median jackknife error of the LL),
  each with its share of models (Wilson interval), median σ (counts and RB) and median
  held-out LL (bootstrap intervals); ``stragglers`` by seed; ``level_labels`` per model
  (−1: straggler) and ``level_names`` (:func:`ncl.regimes.level_names`, the one naming
  table of figures and report);
* ``claims`` — each claim of the paper tested as stated (:mod:`ncl.claims`) with the
  paper's count estimator of M first and the Rao–Blackwellised one beside it, and a
  sentence where the two disagree;
* ``tau`` (the distribution of τ in the high-σ tercile, and the maximum apart),
  ``heldout`` (train vs held-out LL), ``correlations`` (Spearman ρ with intervals),
  ``structure`` (best and worst run, structure per level).

A number that cannot exist (too few models, no held-out set, no classifier) is ``None``
with a reason, never NaN, and no NumPy warning is raised on small ensembles.
"""
from __future__ import annotations

import math

import numpy as np

from ncl import claims as C
from ncl.levels import find_levels, low_group
from ncl.regimes import STRAGGLER_NAME, cycle_structure, level_names

ESTIMATORS = ("counts", "rb")
"""The paper's estimator of M first (its figures use counts), the RB one beside it."""

NEAR_UNIFORM = 0.05
"""p̄ within this of uniform (``max |p̄_z − 1/S| ≤ 0.05``) counts as near-uniform."""

DISAGREE_WHY = (
    "The count estimator leaves out transitions never observed in the recorded chains, "
    "so for near-deterministic cycles (rare backward transitions) its σ is biased low "
    "and its M has exact zeros; the Rao–Blackwellised M averages the exact transition "
    "probabilities and has neither bias (docs/model.md, diagnostics).")


def _num(x):
    """A float, or ``None`` for NaN (JSON- and report-friendly)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _ci(ci):
    lo, hi = (_num(v) for v in ci)
    return None if lo is None or hi is None else [lo, hi]


def _median(x) -> dict:
    x = np.asarray(x, np.float64)
    fin = x[np.isfinite(x)]
    if fin.size == 0:
        return dict(value=None, interval=None, n=0)
    m, ci = C.median_interval(fin)
    return dict(value=_num(m), interval=_ci(ci), n=int(fin.size))


def _share(k: int, n: int) -> dict:
    s, ci = C.share_interval(k, n)
    return dict(value=_num(s), interval=_ci(ci), k=int(k), n=int(n))


def _rho(x, y) -> dict:
    """Spearman ρ with its bootstrap interval over the models with finite x, y."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        why = (f"{n} model{'' if n == 1 else 's'} with finite values" if n < 3
               else "one of the two is constant")
        return dict(value=None, interval=None, n=n, reason=why)
    r = float(C.spearman_rho(x[ok], y[ok]))
    return dict(value=_num(r), n=n, reason="",
                interval=_ci(C.bootstrap_interval((x[ok], y[ok]), C.spearman_rho,
                                                  vectorized=True)))


def _verdict(v: C.Verdict) -> dict:
    d = v._asdict()
    d["statistic"] = _num(v.statistic)
    d["interval"] = _ci(v.interval)
    d["p_value"] = _num(v.p_value)
    d["exceptions"] = [int(s) for s in v.exceptions]
    return d


def _untestable(claim, test, name, n, why) -> C.Verdict:
    return C.Verdict(claim, test, name, math.nan, (math.nan, math.nan), math.nan,
                     C.UNDECIDED, None, n, (), why)


def _get(arrays, k):
    v = arrays.get(f"diag_{k}")
    return None if v is None else np.asarray(v, np.float64)


def _structure(arrays, M, i, n_states, L) -> dict:
    p = np.asarray(arrays["diag_p_bar"][i], np.float64)
    cyc = cycle_structure(M)
    r = dict(p_min=float(p.min()), p_max=float(p.max()),
             near_uniform=bool(np.max(np.abs(p - 1.0 / p.size)) <= NEAR_UNIFORM), **cyc)
    ud = arrays.get("diag_unit_digit")
    if ud is not None and n_states == L:
        digits = np.asarray(arrays.get("classifier_digits", [0, 1, 2]))
        idx = np.searchsorted(digits, np.asarray(ud[i]))
        counts = np.bincount(np.clip(idx, 0, digits.size - 1), minlength=digits.size)
        r["units_per_digit"] = counts.tolist()
        r["two_per_digit"] = bool(L == 2 * digits.size and np.all(counts == 2))
    r["good"] = bool(r.get("two_per_digit", False) and r["near_uniform"]
                     and r["single_cycle"])
    return r


def _claims(arrays, ll, lv, low, seeds, n_states, L, structure) -> list[dict]:
    kl = _get(arrays, "kl")
    top_mask = np.zeros(ll.size, bool)
    if lv.n_levels:
        top_mask[lv.levels[-1].members] = True
    has_digits = arrays.get("diag_unit_digit") is not None and n_states == L
    per_est = {}
    for est in ESTIMATORS:
        sig, tau = _get(arrays, f"sigma_{est}"), _get(arrays, f"tau_{est}")
        tr = _get(arrays, f"self_transition_{est}")
        tr_err = _get(arrays, f"self_transition_{est}_err")
        if tr_err is None:
            tr_err = np.zeros_like(tr)
        vs = [C.regimes_trend(lv.label, sig), C.low_ll_low_sigma(low, sig, seeds)]
        if kl is not None:
            vs.append(C.low_kl_high_sigma(kl, sig, seeds))
        else:
            vs.append(_untestable(C.LOW_KL_CLAIM, "Mann-Whitney U", "P(σ_lowKL > σ_other)",
                                  ll.size, "no KL: no digit classifier for this run"))
        vs += [C.tau_grows_with_sigma(sig, tau), C.tau_scale(sig, tau, seeds),
               C.trace_below_uniform(tr, tr_err, n_states, seeds)]
        if has_digits:
            good = np.array([s[est]["good"] for s in structure])
            vs.append(C.good_run_structure(good, ll, seeds, top_mask))
        else:
            vs.append(_untestable(C.GOOD_RUN, "structure of the best run",
                                  "share of top level", ll.size,
                                  "units per digit need one-hot hidden units and the "
                                  "digit classifier"))
        per_est[est] = vs
    out = []
    for vc, vr in zip(per_est["counts"], per_est["rb"]):
        d = dict(claim=vc.claim, counts=_verdict(vc), rb=_verdict(vr), disagreement="")
        if vc.verdict != vr.verdict:
            d["disagreement"] = (f"counts: {vc.verdict}, RB: {vr.verdict}. " + DISAGREE_WHY)
        out.append(d)
    return out


def _tau_summary(sig, tau, tau_err, seeds) -> dict:
    ok = np.isfinite(sig)
    n = int(ok.sum())
    fin = np.isfinite(tau)
    out = dict(n_infinite=int((~fin).sum()), max=None)
    if fin.any():
        i = int(np.argmax(np.where(fin, tau, -np.inf)))
        out["max"] = dict(value=float(tau[i]), err=_num(tau_err[i]), seed=int(seeds[i]))
    if n < 3:
        out["top"] = None
        out["reason"] = f"{n} model{'' if n == 1 else 's'} with finite σ: no σ tercile"
        return out
    idx = np.flatnonzero(ok)[np.argsort(sig[ok], kind="mergesort")][-(n // 3):]
    t = tau[idx]
    tf = t[np.isfinite(t)]
    out["top"] = dict(n=int(idx.size), median=_median(tf),
                      q25=_num(np.percentile(tf, 25)) if tf.size else None,
                      q75=_num(np.percentile(tf, 75)) if tf.size else None,
                      sigma_min=float(sig[idx].min()), n_infinite=int(t.size - tf.size))
    return out


def _heldout(arrays, ll, lv, names) -> dict | None:
    llh = _get(arrays, "loglik_heldout")
    if llh is None:
        return None
    err = _get(arrays, "loglik_heldout_err")
    gap = ll - llh
    per_level = []
    for j, level in enumerate(lv.levels):
        m = level.members
        per_level.append(dict(level=j, name=names[j], n=int(m.size), train=_median(ll[m]),
                              heldout=_median(llh[m]), gap=_median(gap[m])))
    return dict(n=int(np.isfinite(llh).sum()), train=_median(ll), heldout=_median(llh),
                gap=_median(gap), err_median=_num(np.median(err)) if err is not None
                and err.size else None,
                rho_train_heldout=_rho(ll, llh),
                rho_sigma_counts=_rho(_get(arrays, "sigma_counts"), llh),
                rho_sigma_rb=_rho(_get(arrays, "sigma_rb"), llh),
                per_level=per_level)


def ensemble_levels(arrays: dict):
    """:func:`ncl.levels.find_levels` of the final LL of ``diagnostics.npz``'s arrays, with
    the spread floor ``max(1e-3, median jackknife error)``; returns ``(Levels, floor)``."""
    ll = _get(arrays, "loglik")
    ll_err = _get(arrays, "loglik_err")
    err_fin = ll_err[np.isfinite(ll_err)] if ll_err is not None else np.zeros(0)
    floor = max(1e-3, float(np.median(err_fin)) if err_fin.size else 0.0)
    return find_levels(ll, spread_floor=floor), floor


def analyse(arrays: dict) -> dict:
    """The numbers behind each claim of the paper (docs/model.md, "What the paper
    reports") from the arrays of ``diagnostics.npz`` (see the module docstring)."""
    seeds = np.asarray(arrays["seeds"]).astype(np.int64)
    ll = _get(arrays, "loglik")
    L = int(arrays["n_hidden"])
    n_states = int(np.asarray(arrays["diag_p_bar"]).shape[1])
    S = int(ll.size)
    lv, floor = ensemble_levels(arrays)
    low = low_group(lv, ll)
    names = level_names([lev.mean for lev in lv.levels])
    sig = {e: _get(arrays, f"sigma_{e}") for e in ESTIMATORS}
    llh = _get(arrays, "loglik_heldout")

    levels = []
    for j, lev in enumerate(lv.levels):
        m = lev.members
        levels.append(dict(
            level=j, name=names[j], mean=lev.mean, sd=lev.sd, low=lev.low, high=lev.high,
            n=lev.size, share=_share(lev.size, S),
            sigma_counts=_median(sig["counts"][m]), sigma_rb=_median(sig["rb"][m]),
            heldout=None if llh is None else _median(llh[m]),
            seeds=[int(s) for s in seeds[m]]))
    stragglers = [dict(seed=int(seeds[i]), loglik=_num(ll[i]),
                       sigma_counts=_num(sig["counts"][i]), sigma_rb=_num(sig["rb"][i]))
                  for i in lv.stragglers]

    M_rb = np.exp(np.asarray(arrays["diag_log_M_rb"], np.float64))
    M_c = np.asarray(arrays["diag_M_counts"], np.float64)
    structure = [dict(counts=_structure(arrays, M_c[i], i, n_states, L),
                      rb=_structure(arrays, M_rb[i], i, n_states, L)) for i in range(S)]
    finite_ll = np.where(np.isfinite(ll), ll, -np.inf)
    best, worst = int(np.argmax(finite_ll)), int(np.argmin(np.where(np.isfinite(ll), ll,
                                                                    np.inf)))

    def run(i):
        r = dict(seed=int(seeds[i]), loglik=_num(ll[i]), sigma_counts=_num(sig["counts"][i]),
                 sigma_rb=_num(sig["rb"][i]), level=int(lv.label[i]),
                 level_name=names.get(int(lv.label[i]), STRAGGLER_NAME), **structure[i]["rb"])
        r["counts_single_cycle"] = structure[i]["counts"]["single_cycle"]
        return r

    per_level_structure = []
    for j, lev in enumerate(lv.levels):
        m = lev.members
        per_level_structure.append(dict(
            level=j, name=names[j], n=int(m.size),
            n_two_per_digit=sum(structure[i]["rb"].get("two_per_digit", False) for i in m),
            n_near_uniform=sum(structure[i]["rb"]["near_uniform"] for i in m),
            n_single_cycle_rb=sum(structure[i]["rb"]["single_cycle"] for i in m),
            n_single_cycle_counts=sum(structure[i]["counts"]["single_cycle"] for i in m)))

    kl = _get(arrays, "kl")
    corr = {}
    for e in ESTIMATORS:
        corr[f"sigma_{e} vs LL"] = _rho(sig[e], ll)
        if kl is not None:
            corr[f"sigma_{e} vs KL"] = _rho(sig[e], kl)
        corr[f"sigma_{e} vs tau_{e}"] = _rho(sig[e], _get(arrays, f"tau_{e}"))
        corr[f"sigma_{e} vs Tr(M)/L ({e})"] = _rho(sig[e],
                                                   _get(arrays, f"self_transition_{e}"))
    corr["sigma_rb vs sigma_counts"] = _rho(sig["rb"], sig["counts"])
    if llh is not None:
        corr["LL vs held-out LL"] = _rho(ll, llh)

    return dict(
        n_models=S, n_hidden=L, n_states=n_states,
        hidden="onehot" if n_states == L else "binary",
        seeds=[int(s) for s in seeds],
        levels_rule=lv.describe(), spread_floor=floor, levels=levels, stragglers=stragglers,
        level_labels=[int(v) for v in lv.label], level_names=names,
        low_group_seeds=[int(s) for s in seeds[low]],
        claims=_claims(arrays, ll, lv, low, seeds, n_states, L, structure),
        tau={e: _tau_summary(sig[e], _get(arrays, f"tau_{e}"), _get(arrays, f"tau_{e}_err"),
                             seeds) for e in ESTIMATORS},
        heldout=_heldout(arrays, ll, lv, names),
        correlations=corr, best=run(best), worst=run(worst),
        structure_per_level=per_level_structure,
        has_kl=kl is not None, has_monitor=arrays.get("hist_loglik_precise") is not None)
