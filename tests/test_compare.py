"""ncl.compare: sample quality, the arms, and `ncl compare` end to end on a reduced protocol
(its statistics, ncl.stats: tests/test_stats.py)."""
import csv
import json

import numpy as np
import pytest

from ncl import compare as cmp
from ncl import compare_report
from ncl.cli import main as cli_main
from ncl.training import TrainConfig


def test_sample_quality():
    probs = np.array([[[0.95, 0.03, 0.02], [0.5, 0.4, 0.1], [0.05, 0.05, 0.9], [0.0, 0.99, 0.01]]])
    conf, kl = cmp.sample_quality(probs, np.full(3, 1 / 3), confidence=0.9)
    assert conf[0] == pytest.approx(0.5)  # 0.95 and 0.99 exceed 0.9; 0.9 does not
    freq = np.array([2, 1, 1]) / 4
    assert kl[0] == pytest.approx(np.sum(1 / 3 * np.log((1 / 3) / freq)))


def test_compare_config_arms_share_the_protocol():
    cfg = cmp.CompareConfig(rbm_learning_rates=(0.001,), rbm_exact=True)
    arms = cfg.arms()
    assert [a.name for a in arms] == ["NCL", "RBM", "RBM lr=0.001", "RBM exact-gradient"]
    ncl_cfg, rbm_cfg = arms[0].config, arms[1].config
    assert rbm_cfg.family == "rbm" and rbm_cfg.model.recognition == "softmax"
    for field in ("chain_length", "learning_rate", "epochs", "steps_per_epoch", "batch_min",
                  "batch_max", "init_subset_fraction", "n_chains", "rmsprop_decay"):
        assert getattr(ncl_cfg, field) == getattr(rbm_cfg, field), field
    assert rbm_cfg.model.n_hidden == ncl_cfg.model.n_hidden
    assert rbm_cfg.model.centering == ncl_cfg.model.centering
    assert arms[2].config.learning_rate == 0.001 and arms[3].config.gradient == "exact"
    assert cfg.seeds == list(range(36))
    with pytest.raises(ValueError, match="family"):
        cmp.CompareConfig(train=arms[1].config)
    with pytest.raises(ValueError, match="sample_start"):
        cmp.CompareConfig(sample_start="void")


@pytest.mark.slow   # end to end; CI runs it (-m slow)
def test_cli_compare_end_to_end_reduced_protocol(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--seeds", "3", "--epochs", "2", "--steps-per-epoch", "4", "-T", "8",
            "--batch-max", "32", "--burn-in", "20", "--diag-steps", "240", "--diag-chains", "8",
            "--rb-samples", "80", "--sample-chains", "6", "--bootstrap", "200",
            "--cpu-devices", "1", "--out", str(out)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "| metric | NCL | RBM |" in printed
    for name in ("compare.md", "compare_per_seed.csv", "compare_summary.csv", "compare_tests.csv",
                 "compare.json", "compare.png"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "compare_per_seed.csv").open()))
    assert [r["arm"] for r in rows] == ["NCL"] * 3 + ["RBM"] * 3
    for r in rows:
        assert np.isfinite(float(r["loglik"])) and 0 <= float(r["confident"]) <= 1
        assert float(r["tau"]) >= 0 and float(r["self_transition"]) <= 1
    rbm_rows = [r for r in rows if r["arm"] == "RBM"]
    # RBM: the log-likelihood is the exact one; sigma (RB, bias-corrected) is 0 within its
    # error (detailed balance): 8 jackknife groups, 6 SE -> false alarm < 1e-3 per row
    assert all(float(r["loglik"]) == float(r["loglik_exact"]) for r in rbm_rows)
    assert all(abs(float(r["sigma_bc"])) <= 6 * float(r["sigma_err"]) + 1e-6 for r in rbm_rows)
    assert all(float(r["sigma"]) >= 0 for r in rows)
    tests = list(csv.DictReader((out / "compare_tests.csv").open()))
    assert {t["metric"] for t in tests} >= {"loglik", "sigma", "tau", "confident", "kl"}
    md = (out / "compare.md").read_text()  # the method is stated, with its resample count
    assert "95% percentile-bootstrap interval (200 resamples" in md
    assert "scipy.stats.mannwhitneyu" in md
    meta = json.loads((out / "compare.json").read_text())
    assert [a["name"] for a in meta["arms"]] == ["NCL", "RBM"]
    assert meta["arms"][1]["train_config"]["family"] == "rbm"
    # refuses to overwrite; bad options are usage errors
    assert cli_main(argv) == 2
    assert cli_main(["compare", "--confidence", "1.5", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.slow
def test_compare_python_api_with_all_arms(paper_data, tmp_path):
    x, y = paper_data
    from ncl import diagnostics as dg
    cfg = cmp.CompareConfig(
        train=TrainConfig(epochs=6, steps_per_epoch=10, chain_length=16, batch_max=64),
        n_seeds=4, rbm_learning_rates=(0.001,), rbm_exact=True,
        diagnostics=dg.DiagnosticsConfig(burn_in=100, n_steps=3200, n_chains=16,
                                         rb_samples=1600),
        sample_chains=20, n_boot=500)
    comp = cmp.run_comparison(cfg, x, y, log=lambda m: None)
    assert len(comp.arms) == 4
    for res in comp.arms[1:]:
        # every RBM is reversible: the jackknife bias-corrected sigma (RB) is 0 within its
        # error. (The plug-in sigma is >= 0 and biased up by O(1/samples): it came out at
        # 2.3-3.4 SE for these RBMs.) 16 groups, 5 SE: false alarm about 2e-4 per seed
        # (t with 15 dof), under 0.3% for the 12 checks.
        assert np.all(np.abs(res.metrics["sigma_bc"]) <= 5 * res.metrics["sigma_err"] + 1e-6)
        assert np.all(res.metrics["sigma"] >= 0)
    paths = compare_report.write_outputs(comp, tmp_path)
    assert "RBM exact-gradient" in paths["markdown"].read_text()
