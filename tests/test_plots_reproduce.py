"""ncl.plots, ncl.reproduce and the `ncl reproduce / diagnose / figures` commands."""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import re
import warnings

import numpy as np
import pytest

from ncl import figures, options, plots, regimes, stats
from ncl import reproduce as rp

OUTPUTS = ("fig2.png", "fig2.pdf", "fig3.png", "fig3.pdf", "fig4.png", "fig4.pdf",
           "metrics.csv", "config.json", "diagnostics.npz", "REPORT.md")


# ----------------------------------------------------------------------------- statistics

def test_rankdata_average_ties():
    np.testing.assert_array_equal(stats.rankdata([10, 20, 20, 5, np.inf]), [2, 3.5, 3.5, 1, 5])


def test_spearman_hand_computed():
    # ranks x: 1..5; y = [5, 6, 7, 8, 7] has ranks [1, 2, 3.5, 5, 3.5].
    # centred: [-2, -1, 0, 1, 2] and [-2, -1, .5, 2, .5]; Σ = 8, Σx² = 10, Σy² = 9.5.
    rho = stats.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
    assert rho == pytest.approx(8 / math.sqrt(10 * 9.5), abs=1e-12)


def test_spearman_monotone_nan_inf_and_degenerate():
    x = np.array([0.1, 0.5, 2.0, 7.0, np.inf])
    assert stats.spearman(x, np.exp(np.arange(5))) == pytest.approx(1.0)
    assert stats.spearman(x, -np.arange(5)) == pytest.approx(-1.0)
    # a NaN pair is dropped
    assert stats.spearman([1, 2, np.nan, 4], [2, 1, 100, 3]) == pytest.approx(0.5)
    assert math.isnan(stats.spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(stats.spearman([1, 2], [1, 2]))
    with pytest.raises(ValueError):
        stats.spearman([1, 2, 3], [1, 2])


def test_kmeans_1d_is_optimal():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1, 5), rng.normal(6, 1, 4), rng.normal(13, 1, 3)])
    lab = stats.kmeans_1d(x, 3)

    def sse(labels):
        return sum(((x[labels == j] - x[labels == j].mean()) ** 2).sum()
                   for j in np.unique(labels))

    order = np.argsort(x)
    best = min(sse(np.searchsorted([b1, b2], np.arange(x.size), side="right")[np.argsort(order)])
               for b1, b2 in itertools.combinations(range(1, x.size), 2))
    assert sse(lab) == pytest.approx(best)
    # groups are numbered by increasing value
    assert [x[lab == j].mean() for j in range(3)] == sorted(x[lab == j].mean() for j in range(3))


def _synthetic_regimes(seed=0):
    rng = np.random.default_rng(seed)
    ll = np.concatenate([-150.5 + 0.05 * rng.standard_normal(8),
                         -148.2 + 0.05 * rng.standard_normal(5),
                         -147.0 + 0.05 * rng.standard_normal(12)])
    sigma = np.concatenate([np.exp(rng.uniform(np.log(0.5), np.log(2), 8)),
                            np.exp(rng.uniform(np.log(3), np.log(5), 5)),
                            np.exp(rng.uniform(np.log(6), np.log(12), 12))])
    truth = np.repeat([0, 1, 2], [8, 5, 12])
    perm = rng.permutation(ll.size)
    return ll[perm], sigma[perm], truth[perm]


@pytest.mark.parametrize("method", regimes.REGIME_METHODS)
def test_classify_regimes_recovers_paper_structure(method):
    ll, sigma, truth = _synthetic_regimes()
    labels, info = regimes.classify_regimes(ll, sigma, method=method)
    np.testing.assert_array_equal(labels, truth)
    assert info["paper_like"]
    assert [info["regimes"][r]["count"] for r in range(3)] == [8, 5, 12]


def test_classify_regimes_flags_non_paper_structure():
    ll, sigma, truth = _synthetic_regimes(1)
    # the low-LL group now has the HIGHEST σ: not the paper's picture
    sigma = np.where(truth == 0, sigma * 100, sigma)
    labels, info = regimes.classify_regimes(ll, sigma)
    np.testing.assert_array_equal(labels, truth)
    assert not info["paper_like"]


def test_classify_regimes_handles_zero_inf_sigma_and_few_points():
    labels, info = regimes.classify_regimes([-150, -147, -147.1], [0.0, np.inf, 3.0])
    assert labels.tolist() == [0, 1, 2] or sorted(labels.tolist()) == [0, 1, 2]
    labels, info = regimes.classify_regimes([-150, -150], [1.0, 1.0], method="kmeans-2d")
    assert labels.tolist() == [0, 0]


def test_cycle_structure():
    L = 6
    perm = np.roll(np.eye(L), 1, axis=1)  # 0→1→…→5→0
    M = 0.9 * perm + 0.1 / L
    c = regimes.cycle_structure(M)
    assert c["single_cycle"] and c["successor"] == [1, 2, 3, 4, 5, 0]
    two = np.zeros((L, L))
    for a, b in ((0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3)):
        two[a, b] = 1.0
    assert not regimes.cycle_structure(two)["single_cycle"]


def test_self_transition_err_counts():
    c = np.array([[50, 50], [10, 90]])
    M00, M11 = 0.5, 0.9
    want = math.sqrt(M00 * (1 - M00) / 100 + M11 * (1 - M11) / 100) / 2
    assert figures.self_transition_err_counts(c) == pytest.approx(want)


# ----------------------------------------------------------------------------- plots

def test_figures_from_synthetic_arrays(tmp_path):
    rng = np.random.default_rng(0)
    S, E, L, D = 5, 7, 3, 784
    sig = np.array([0.0, 0.5, 2.0, 9.0, np.inf])      # a count σ of 0 and an RB σ of ∞
    fig = plots.figure2(rng.normal(-150, 1, (S, E)), np.abs(rng.normal(1, 1, (S, E))),
                        rng.normal(-148, 1, S), sig, np.full(S, 0.01), np.full(S, 0.1),
                        seeds=np.arange(S), regimes=np.array([0, 0, 1, 2, 2]),
                        regime_names={0: "low", 1: "mid", 2: "high"}, caption="test")
    assert "Rao–Blackwellised" in fig._suptitle.get_text()
    paths = plots.save_figure(fig, tmp_path / "f2")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0
                                                                  for p in paths)
    fig = plots.figure2(rng.normal(-150, 1, (S, E)), np.abs(rng.normal(1, 1, (S, E))),
                        rng.normal(-148, 1, S), sig, estimator="counts")
    assert "counts" in fig._suptitle.get_text()
    run = dict(w=rng.normal(size=(D, L)), wbar=rng.normal(size=(L, D)), abar=rng.normal(size=L),
               p_bar=np.full(L, 1 / L), M=np.full((L, L), 1 / L), unit_digit=np.arange(L),
               mean_images=rng.uniform(size=(4, D)), samples=rng.integers(0, 2, (4, D)),
               z=np.arange(4) % L, title="run")
    plots.save_figure(plots.figure3([run, run]), tmp_path / "f3", formats=("png",))
    fig = plots.figure4(sig, np.array([0.0, 1e-4, 0.01, 0.1, 0.2]),
                        np.array([1.0, 2.0, np.inf, 50.0, 3.0]), np.full(S, 0.05),
                        sigma_err=np.full(S, 0.1), kl_err=np.full(S, 1e-3),
                        tau_err=np.array([0.1, 0.1, np.nan, 1.0, 0.1]),
                        self_transition_err=np.full(S, 0.01), n_hidden=L, estimator="counts")
    plots.save_figure(fig, tmp_path / "f4", formats=("png",))
    assert (tmp_path / "f3.png").exists() and (tmp_path / "f4.png").exists()
    with pytest.raises(ValueError):
        plots.figure2(np.zeros((S, E)), np.zeros((S, E)), np.zeros(S), np.ones(S),
                      estimator="bogus")


def test_figure3_draws_each_image_strip_tile_for_tile():
    # Fig. 3's rows of images are one imshow each (image_strip): every tile must hold
    # exactly its image, the gaps must be blank (NaN), whatever the number of tiles
    rng = np.random.default_rng(1)
    side, gap = 28, plots.STRIP_GAP
    for n in (1, 2, 7):
        imgs = rng.uniform(size=(n, side * side))
        strip = plots.image_strip(imgs, side)
        assert strip.shape == (side, n * side + (n - 1) * gap)
        for k in range(n):
            c = k * (side + gap)
            np.testing.assert_array_equal(strip[:, c:c + side], imgs[k].reshape(side, side))
        assert np.isnan(strip).sum() == side * gap * (n - 1)
    L, n_seq = 3, 5
    run = dict(w=rng.normal(size=(side * side, L)), wbar=rng.normal(size=(L, side * side)),
               abar=rng.normal(size=L), p_bar=np.full(L, 1 / L), M=np.full((L, L), 1 / L),
               mean_images=rng.uniform(size=(n_seq, side * side)),
               samples=rng.integers(0, 2, (n_seq, side * side)), z=np.arange(n_seq) % L)
    fig = plots.figure3([run])
    shown = [np.ma.filled(im.get_array(), np.nan) for ax in fig.get_axes()
             for im in ax.get_images()]
    want = {"w": plots.image_strip(run["w"].T, side), "wbar": plots.image_strip(run["wbar"]),
            "mean": plots.image_strip(run["mean_images"]),
            "samples": plots.image_strip(run["samples"])}
    for name, a in want.items():
        assert any(s.shape == a.shape and np.array_equal(s, a, equal_nan=True) for s in shown), name
    assert len(fig.get_axes()) <= 10      # one axes per strip, not one per image


def test_log_tick_labels_are_plain_text_with_matplotlibs_values(tmp_path):
    """Log axes keep matplotlib's ticks and label values, written as Unicode (10⁻², 2×10¹)
    rather than mathtext; every label of a saved figure is parser-free."""
    fig = plots.new_figure((4, 3), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([1e-3, 30.0], [0.2, 0.7])
    ax.set_xscale("log")
    ax.set_yscale("log")                          # less than a decade: minor ticks labelled
    plots.save_figure(fig, tmp_path / "f", ("png",))
    for axis in (ax.xaxis, ax.yaxis):
        for fmt, locs in ((axis.get_major_formatter(), axis.get_majorticklocs()),
                          (axis.get_minor_formatter(), axis.get_minorticklocs())):
            assert isinstance(fmt, plots._PlainLogFormatter)
            labels = [fmt(v) for v in locs]
            assert not any("$" in t for t in labels)
            for v, t in zip(locs, labels):
                if not t:
                    continue
                coeff, _, exp = t.partition("10")
                value = float(coeff.rstrip("×") or 1) * 10.0 ** int(
                    exp.translate(str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")))
                assert math.isclose(value, v, rel_tol=1e-9), (t, v)
    assert any(fmt for fmt in [ax.yaxis.get_minor_formatter()(v)
                               for v in ax.yaxis.get_minorticklocs()])
    xf = ax.xaxis.get_major_formatter()
    assert xf(1e-2) == "10⁻²" and xf(10.0) == "10¹"


def test_plots_leave_no_pyplot_state():
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    plots.figure4(np.ones(3), np.ones(3), np.ones(3), np.ones(3), n_hidden=6)
    assert plt.get_fignums() == before


# ----------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def quick_reproduction(tmp_path_factory):
    from ncl import cli
    out = tmp_path_factory.mktemp("repro") / "quick"
    rc = cli.main(["reproduce", "--quick", "--seeds", "3", "--out", str(out), "--quiet"])
    assert rc == 0
    return out


def test_reproduce_quick_writes_every_output(quick_reproduction):
    out = quick_reproduction
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("config.json", "state.npz", "history.npz"):
        assert (out / "ensemble" / name).is_file()
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["seed"]) for r in rows] == [0, 1, 2]
    for r in rows:
        for k in ("loglik", "loglik_err", "loglik_onthefly", "sigma_rb", "sigma_rb_err",
                  "sigma_counts", "sigma_counts_err", "tau_rb", "tau_rb_err", "tau_counts",
                  "trM_over_L_counts", "kl", "kl_err", "kl_soft", "sigma_rb_bc",
                  "trM_over_L_counts_err", "trM_over_L_rb_err"):
            float(r[k])  # parseable ("inf"/"nan" allowed)
        assert math.isfinite(float(r["sigma_rb_bc"])) and float(r["trM_over_L_rb_err"]) >= 0
        assert math.isfinite(float(r["loglik"])) and float(r["loglik"]) < 0
        p = [float(r[f"p_bar_{a}"]) for a in range(6)]
        assert sum(p) == pytest.approx(1.0, abs=1e-3)
        assert all(int(r[f"digit_{a}"]) in (0, 1, 2) for a in range(6))
        assert int(r["level"]) >= -1
        for k in ("loglik_heldout", "loglik_heldout_rb"):
            assert math.isfinite(float(r[k])) and float(r[k]) < 0
        assert float(r["loglik_heldout_err"]) >= 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["heldout"]["n_images"] == 3147      # the bundled MNIST test images of 0, 1, 2
    assert cfg["train_config"]["epochs"] == 3 and cfg["seeds"] == [0, 1, 2]
    assert cfg["diagnostics_config"] == dataclasses.asdict(rp.quick_protocol()[1])
    for k in ("train_seconds", "diagnose_seconds", "figures_seconds"):
        assert cfg["timings"][k] > 0
    report = (out / "REPORT.md").read_text()
    for phrase in ("Timings", "Claims of the paper", "Spearman", "Tr(M)/L < 1/L",
                   "Rao–Blackwellised", "Likelihood levels", "Held-out log-likelihood",
                   "3 models", "XLA CPU device"):
        assert phrase in report
    assert not re.search(r"\bnan\b", report, re.I)
    d = np.load(out / "diagnostics.npz")
    assert d["diag_sigma_rb"].shape == (3,) and d["hist_loglik_precise"].shape == (3, 3)
    assert d["fig3_mean_images"].shape == (2, 16, 784)


def test_diagnose_and_figures_reuse_the_saved_run(quick_reproduction, tmp_path, monkeypatch):
    from ncl import cli, training

    def no_training(*a, **k):
        raise AssertionError("diagnose must not retrain")

    monkeypatch.setattr(training, "train_ensemble", no_training)
    monkeypatch.setattr(training, "train", no_training)
    out = tmp_path / "diag"
    state = quick_reproduction / "ensemble" / "state.npz"
    mtime = state.stat().st_mtime_ns
    rc = cli.main(["diagnose", str(quick_reproduction / "ensemble"), "--out", str(out),
                   "--quiet", "--quick", "--estimator", "counts", "--no-figures"])
    assert rc == 0
    assert state.stat().st_mtime_ns == mtime
    for name in ("metrics.csv", "config.json", "diagnostics.npz", "REPORT.md"):
        assert (out / name).is_file(), name
    assert not (out / "fig2.png").exists()
    with open(out / "metrics.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3
    # figures from diagnostics.npz alone
    assert cli.main(["figures", str(out), "--quiet", "--estimator", "counts"]) == 0
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name


def test_cli_usage_errors(quick_reproduction, tmp_path):
    from ncl import cli
    assert cli.main(["figures", str(tmp_path / "missing"), "--quiet"]) == cli.EXIT_USAGE
    assert cli.main(["reproduce", "--quick", "--out", str(quick_reproduction),
                     "--quiet"]) == cli.EXIT_USAGE


def test_quick_options_are_overridable():
    from ncl import cli
    args = cli.build_parser().parse_args(["reproduce", "--quick", "--epochs", "2", "-T", "8"])
    cfg = options.quick_train_config(args)
    assert (cfg.epochs, cfg.chain_length, cfg.steps_per_epoch) == (2, 8, 5)


@pytest.mark.slow
def test_reproduce_quick_binary_one_seed(tmp_path):
    """``ncl reproduce --quick --hidden binary -L 4`` at one seed: figures drawn (no
    log-scale crash without KL), a report without NaN and without NumPy warnings."""
    from ncl import cli
    out = tmp_path / "qb"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rc = cli.main(["reproduce", "--quick", "--hidden", "binary", "-L", "4", "--seeds",
                       "1", "--out", str(out), "--quiet"])
    assert rc == 0
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    text = (out / "REPORT.md").read_text()
    assert "1 model " in text and "1 models" not in text
    assert not re.search(r"\bnan\b", text, re.I) and "n/a (" in text
