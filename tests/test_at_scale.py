"""The at-scale study (experiments/at_scale.py) end to end in its reduced form: all of its
arms on one hidden layer, 600 training and 300 test images of all ten digits, 2 seeds,
6 epochs; then a rerun that must resume from the saved arms instead of training again."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.environ.get("NCL_MNIST_DIR"),
                                 reason="needs the MNIST files (NCL_MNIST_DIR)")]


def _run(out):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "at_scale.py"),
                           "--quick", "--only", "onehot-10", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, time.perf_counter() - t0


def _rows(out):
    with open(out / "per_seed.csv") as f:
        return list(csv.DictReader(f))


def test_quick_study_runs_and_resumes(tmp_path):
    out = tmp_path / "at_scale"
    _, first = _run(out)
    rows = _rows(out)
    assert sorted({r["arm"] for r in rows}) == ["EM", "NCL", "RBM-PCD", "RBM-exact"]
    assert all(len([r for r in rows if r["arm"] == a]) == 2 for a in {r["arm"] for r in rows})
    ll = np.array([float(r["loglik_heldout"]) for r in rows])
    # a log-likelihood per image of 784 binary pixels: finite and between the all-pixels
    # coin flip (784 ln 2 = 543 nats) and 0
    assert np.all(np.isfinite(ll)) and np.all(ll < 0) and np.all(ll > -784 * np.log(2) * 2)
    kl = np.array([float(r["sample_kl"]) for r in rows])
    assert np.all(np.isfinite(kl)) and np.all(kl >= 0)
    ncl = [r for r in rows if r["arm"] == "NCL"]
    assert all(np.isfinite(float(r["sigma"])) and float(r["sigma_err"]) > 0 for r in ncl)
    # the RBM's chain obeys detailed balance: its σ estimate is 0 within 4 errors
    for r in rows:
        if r["arm"].startswith("RBM") and float(r["sigma_err"]) > 0:
            assert abs(float(r["sigma"])) < 4 * float(r["sigma_err"]) + 1e-3, r
    lr = [r for r in rows if r["arm"] == "RBM-PCD"][0]["learning_rate"]
    assert float(lr) > 0
    text = (out / "README.md").read_text()
    for q in ("**1.", "**2.", "**3.", "**4."):
        assert q in text
    assert (out / "at_scale.png").stat().st_size > 10_000
    before = (out / "per_seed.csv").read_text()
    proc, second = _run(out)
    # resumed: no arm trained again, the same numbers
    assert "trained in" in proc.stdout
    assert (out / "per_seed.csv").read_text() == before
    assert second < first
