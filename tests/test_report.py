"""ncl.analysis and ncl.report on synthetic ensembles of known structure (no training):
planted likelihood levels, a monotone σ trend, no trend, a single outlier, noise; 1, 3, 36
and 144 models, with and without the per-epoch monitor, one-hot and binary hidden units.
The analysis must find exactly the planted structure, no structure in noise, and the
report must read without NaN or NumPy warnings whatever the ensemble size."""
from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest

from ncl import analysis, claims, figures, report
from ncl.artifacts import CONFIG_FILE, DIAGNOSTICS_FILE, HELDOUT_KEYS

LEVELS = (-152.4, -150.6, -148.3, -147.0)


def synthetic_arrays(n, *, levels=LEVELS, trend=True, outlier=False, monitor=True,
                     hidden="onehot", heldout=True, noise=False, seed=0, epochs=4):
    """A ``diagnostics.npz``-like dict of ``n`` models with known structure: models spread
    over ``levels`` (round robin, so every level holds models once n ≥ len(levels)),
    σ growing with the level (``trend``) or independent of it, one extra model far below
    every level (``outlier``: the last seed), or one noisy level (``noise``)."""
    rng = np.random.default_rng(seed)
    L = 6 if hidden == "onehot" else 4
    S = L if hidden == "onehot" else 2 ** L
    k = len(levels)
    lab = np.arange(n) % k
    if noise:
        ll = rng.normal(-150.0, 1.0, n)
    else:
        ll = np.asarray(levels)[lab] + rng.normal(0, 0.03, n)
    if outlier:
        ll[-1] = min(levels) - 5.0
    if trend:
        sig = np.exp(0.2 + 0.6 * lab + rng.normal(0, 0.15, n))
    else:
        sig = np.exp(rng.normal(1.0, 0.6, n))
    tau = 6.0 * sig + rng.uniform(0, 2, n)
    perm = np.roll(np.eye(S), 1, axis=1)
    M = 0.9 * perm + 0.1 / S
    M = np.broadcast_to(M, (n, S, S)).copy()
    p_bar = np.full((n, S), 1.0 / S)
    A = {"seeds": np.arange(n) + 100, "n_hidden": np.asarray(L),
         "diag_loglik": ll, "diag_loglik_err": np.full(n, 0.01),
         "diag_sigma_rb": sig, "diag_sigma_rb_err": 0.05 * sig,
         "diag_sigma_counts": 0.7 * sig, "diag_sigma_counts_err": 0.05 * sig,
         "diag_tau_rb": tau, "diag_tau_rb_err": np.full(n, 0.5),
         "diag_tau_counts": 0.8 * tau, "diag_tau_counts_err": np.full(n, 0.5),
         "diag_p_bar": p_bar, "diag_log_M_rb": np.log(M), "diag_M_counts": M,
         "diag_transition_counts": (M * 1000).astype(np.int64),
         "diag_self_transition_counts": np.full(n, 0.1 / S) + rng.uniform(0, 1e-3, n),
         "diag_self_transition_counts_err": np.full(n, 1e-4),
         "diag_self_transition_rb": np.full(n, 0.1 / S) + rng.uniform(0, 1e-3, n),
         "diag_self_transition_rb_err": np.full(n, 1e-4),
         "hist_loglik": np.linspace(-170, -150, epochs)[None].repeat(n, 0),
         "hist_sigma_rb": np.ones((n, epochs)), "hist_sigma_counts": np.ones((n, epochs)),
         "hist_finite": np.ones((n, epochs), bool)}
    if monitor:
        A["hist_loglik_precise"] = A["hist_loglik"] + 0.1
    if hidden == "onehot":
        A["diag_unit_digit"] = np.broadcast_to(np.repeat([0, 1, 2], 2), (n, 6)).copy()
        A["diag_kl"] = np.exp(-2.0 * sig)
        A["diag_kl_err"] = 1e-4 * np.ones(n)
        A["classifier_digits"] = np.array([0, 1, 2])
    if heldout:
        A["diag_loglik_heldout"] = ll - 0.6 + rng.normal(0, 0.02, n)
        A["diag_loglik_heldout_err"] = np.full(n, 0.02)
        A["diag_loglik_heldout_rb"] = A["diag_loglik_heldout"] - 0.01
        A["diag_loglik_heldout_rb_err"] = np.full(n, 0.02)
    D, f = 784, 2
    best, worst = int(np.argmax(ll)), int(np.argmin(ll))
    A.update(fig3_index=np.array([best, worst]), fig3_seed=A["seeds"][[best, worst]],
             fig3_w=rng.normal(size=(f, D, L)), fig3_a=np.zeros((f, D)),
             fig3_wbar=rng.normal(size=(f, L, D)), fig3_abar=np.zeros((f, L)),
             fig3_z=np.zeros((f, 4), np.int32), fig3_mean_images=rng.uniform(size=(f, 4, D)),
             fig3_samples=rng.integers(0, 2, (f, 4, D)).astype(np.float32))
    return A


def config_for(A, hidden="onehot"):
    n = len(A["seeds"])
    return {"train_config": {"model": {"hidden": hidden, "recognition": "paper"},
                             "chain_length": 48, "epochs": 120, "steps_per_epoch": 30,
                             "learning_rate": 0.1, "batch_min": 16, "batch_max": 160},
            "diagnostics_config": {"n_chains": 8, "burn_in": 2000, "n_steps": 20000,
                                   "rb_samples": 4000, "p_floor": 1e-3},
            "data": {"n_samples": 3000, "source": "synthetic"},
            "seeds": [int(s) for s in A["seeds"]][:n],
            "heldout": {"n_images": 3147, "source": "synthetic"},
            "timings": {"train_seconds": 1.0}, "cpu_count": 2, "provenance": {}}


def analyse_and_render(A, hidden="onehot"):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = analysis.analyse(A)
        text = report.render_report(s, config_for(A, hidden))
        json.dumps(s, allow_nan=False)          # the summary holds no NaN either
    return s, text


def claim(s, start):
    return next(c for c in s["claims"] if c["claim"].startswith(start))


def check_readable(text, n):
    assert not re.search(r"\bnan\b", text, re.I), [ln for ln in text.splitlines()
                                                   if re.search(r"\bnan\b", ln, re.I)][:3]
    assert "1 models" not in text and "n/a XLA" not in text
    assert f"{n} model" in text


@pytest.mark.parametrize("n, hidden, monitor", [
    (1, "onehot", True), (1, "binary", False), (3, "onehot", False), (3, "binary", True),
    (36, "onehot", True), (36, "binary", False)])
def test_every_size_reads_without_nan_or_warnings(n, hidden, monitor):
    A = synthetic_arrays(n, hidden=hidden, monitor=monitor)
    s, text = analyse_and_render(A, hidden)
    check_readable(text, n)
    assert s["hidden"] == hidden and s["has_monitor"] == monitor
    assert len(s["level_labels"]) == n
    for c in s["claims"]:
        for est in ("counts", "rb"):
            v = c[est]
            assert v["verdict"] in (claims.SUPPORTED, claims.CONTRADICTED, claims.UNDECIDED)
            if v["statistic"] is None:
                assert v["note"], c["claim"]
    if n >= 36:     # every planted level is found, and listed in the report
        assert [round(lev["mean"], 1) for lev in s["levels"]] == list(LEVELS)
        for lev in s["levels"]:
            assert lev["name"] in text
    if hidden == "binary":
        assert "n/a (no KL" in text and "n/a (units per digit" in text
    if n < 3:
        assert "n/a" in text


def test_planted_levels_and_trend_are_found_with_both_estimators():
    s, text = analyse_and_render(synthetic_arrays(144, monitor=False))     # 144 models
    check_readable(text, 144)
    for lev in s["levels"]:
        assert lev["name"] in text
    assert [lev["n"] for lev in s["levels"]] == [36] * 4 and not s["stragglers"]
    assert all(abs(lev["share"]["value"] - 0.25) < 1e-12 for lev in s["levels"])
    lo, hi = s["levels"][0]["share"]["interval"]
    assert lo < 0.25 < hi
    trend = claim(s, "three regimes")
    for est in ("counts", "rb"):
        assert trend[est]["verdict"] == claims.SUPPORTED and trend[est]["statistic"] > 0.5
        assert trend[est]["interval"][0] > 0
    assert claim(s, "low LL")["counts"]["verdict"] == claims.SUPPORTED
    assert claim(s, "τ grows")["counts"]["verdict"] == claims.SUPPORTED
    assert claim(s, "⟨M_zz⟩")["counts"]["verdict"] == claims.SUPPORTED
    assert claim(s, "a good run")["counts"]["verdict"] == claims.SUPPORTED
    assert "Kendall τ_b" in text and "Wilson" in text
    # the held-out section: train vs held-out per level, the gap, ρ(σ, held-out LL)
    h = s["heldout"]
    assert h["gap"]["value"] == pytest.approx(0.6, abs=0.02)
    assert len(h["per_level"]) == 4 and h["rho_sigma_counts"]["value"] > 0.5
    assert "Held-out log-likelihood" in text and "gap" in text


def test_no_trend_is_not_called_supported():
    s, _ = analyse_and_render(synthetic_arrays(36, trend=False, seed=3))
    assert len(s["levels"]) == 4
    v = claim(s, "three regimes")["counts"]
    assert v["verdict"] != claims.SUPPORTED
    if v["verdict"] == claims.UNDECIDED and v["seeds_to_decide"]:
        assert v["seeds_to_decide"] > 36


def test_a_single_outlier_is_the_one_straggler_named_by_seed():
    A = synthetic_arrays(36, outlier=True)
    s, text = analyse_and_render(A)
    assert [r["seed"] for r in s["stragglers"]] == [int(A["seeds"][-1])]
    assert len(s["levels"]) == 4
    assert s["level_labels"][-1] == -1
    assert int(A["seeds"][-1]) in s["low_group_seeds"]
    assert f"| {int(A['seeds'][-1])} |" in text


def test_noise_is_one_level_and_no_regimes():
    s, text = analyse_and_render(synthetic_arrays(144, noise=True, trend=False, seed=5))
    assert len(s["levels"]) == 1
    v = claim(s, "three regimes")["counts"]
    assert v["verdict"] == claims.UNDECIDED and v["statistic"] is None
    assert claim(s, "low LL")["counts"]["statistic"] is None
    check_readable(text, 144)


def test_estimators_that_disagree_are_explained():
    A = synthetic_arrays(36)
    A["diag_sigma_counts"] = A["diag_sigma_counts"][::-1].copy()     # counts: no trend
    s, text = analyse_and_render(A)
    c = claim(s, "three regimes")
    assert c["counts"]["verdict"] != c["rb"]["verdict"] and c["disagreement"]
    assert "Where the two estimators disagree" in text and "biased low" in text


def test_tau_distribution_and_maximum_reported_apart():
    A = synthetic_arrays(36)
    A["diag_tau_counts"][0] = 500.0       # one huge τ in the lowest level
    s, text = analyse_and_render(A)
    t = s["tau"]["counts"]
    assert t["max"]["value"] == 500.0 and t["max"]["seed"] == int(A["seeds"][0])
    assert t["top"]["median"]["value"] < 100 and t["top"]["n"] == 12
    assert t["top"]["median"]["interval"] is not None
    assert "500.0" in text


def test_metrics_rows_carry_level_and_heldout():
    A = synthetic_arrays(8)
    s = analysis.analyse(A)
    rows = report.metrics_rows(A, s["level_labels"])
    assert [int(r["level"]) for r in rows] == s["level_labels"]
    for k in ("loglik_heldout", "loglik_heldout_err", "loglik_heldout_rb",
              "loglik_heldout_rb_err"):
        assert float(rows[0][k]) == pytest.approx(float(A[f"diag_{k}"][0]), rel=1e-5)
    A = synthetic_arrays(3, heldout=False)
    rows = report.metrics_rows(A, [0, 0, 0])
    assert rows[0]["loglik_heldout"] == "nan"
    s, text = analyse_and_render(A)
    assert s["heldout"] is None and "## Held-out log-likelihood" in text


def _write(tmp_path, A, hidden="onehot"):
    np.savez(tmp_path / DIAGNOSTICS_FILE, **A)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config_for(A, hidden)))
    return tmp_path


@pytest.mark.parametrize("n, hidden, monitor, heldout", [(1, "binary", False, True),
                                                       (3, "onehot", True, False)])
def test_figures_are_drawn_for_small_and_binary_runs(tmp_path, n, hidden, monitor, heldout):
    A = synthetic_arrays(n, hidden=hidden, monitor=monitor, heldout=heldout)
    assert heldout or not any(k in A for k in HELDOUT_KEYS)    # as an old file
    out = _write(tmp_path, A, hidden)
    msgs = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = figures.make_figures(out, formats=("png",), log=msgs.append, heldout=True)
    assert len(paths) == 3 and all(p.stat().st_size > 0 for p in paths)
    assert any("no held-out arrays" in m for m in msgs) == (not heldout)
    report.write_report(out)
    check_readable((out / "REPORT.md").read_text(), n)


def test_figure_legends_name_every_level_once():
    from ncl import plots
    A = synthetic_arrays(36, outlier=True)
    lv, _ = analysis.ensemble_levels(A)
    names = figures._level_names(lv.label, A["diag_loglik"])
    fig = plots.figure4(A["diag_sigma_rb"], A["diag_kl"], A["diag_tau_rb"],
                        A["diag_self_transition_counts"], n_hidden=6, regimes=lv.label,
                        regime_names=names)
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert all(ax.get_legend() is None for ax in fig.axes)    # no legend over the points
    for j in range(4):
        assert labels.count(names[j]) == 1
    assert labels.count(names[-1]) == 1
