"""The files of a reproduction (or diagnostics) output directory and the schema of its
``diagnostics.npz``.

* file names: :data:`DIAGNOSTICS_FILE`, :data:`METRICS_FILE`, :data:`REPORT_FILE`,
  :data:`CONFIG_FILE`, :data:`ENSEMBLE_DIR` and the figure stems :data:`FIGURES`; the
  chain diagnostics' :data:`CHAIN_DIAGNOSTICS_FILE` and :data:`CHAIN_METRICS_FILE`;
* ``diagnostics.npz``: ``seeds``, ``n_hidden``, ``diag_*`` (every
  :class:`~ncl.diagnostics.Diagnostics` array, :func:`diagnostics_arrays`), ``hist_*``
  (the training history, :func:`history_arrays`), ``fig3_*`` (Fig. 3's runs and samples)
  and ``classifier_digits``; :data:`FIGURE_KEYS` must be present
  (:func:`load_diagnostics_npz`); :data:`HELDOUT_KEYS` (the held-out log-likelihood per
  model) are present when a held-out set was available (files written before them lack
  them: the report and ``ncl figures --heldout`` then say so);
* :func:`write_json` for ``config.json``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ncl.io import to_jsonable

DIAGNOSTICS_FILE = "diagnostics.npz"
METRICS_FILE = "metrics.csv"
REPORT_FILE = "REPORT.md"
CONFIG_FILE = "config.json"
ENSEMBLE_DIR = "ensemble"
FIGURES = ("fig2", "fig3", "fig4")
CHAIN_DIAGNOSTICS_FILE = "chain_diagnostics.npz"
"""``ncl diagnose``'s chain diagnostics (:mod:`ncl.chain_diagnostics`, for hidden spaces
too large to tabulate ``M``): ``seeds``, ``n_hidden``, ``classifier_digits``, one ``chain_*``
array per :class:`~ncl.chain_diagnostics.ChainDiagnostics` field (leading member axis)
and ``settings_json`` (the settings, data and provenance as one JSON string)."""
CHAIN_METRICS_FILE = "chain_metrics.csv"
"""One row per member of the chain diagnostics (the scalars of ``chain_diagnostics.npz``,
the per-class arrays as one column per digit)."""


def diagnostics_arrays(d) -> dict:
    """The ``diag_*`` arrays of :class:`ncl.diagnostics.Diagnostics` ``d`` (fields that
    are ``None`` left out)."""
    out = {}
    for k, v in d._asdict().items():
        if v is None:
            continue
        out[f"diag_{k}"] = np.asarray(v)
    return out


def history_arrays(history) -> dict:
    """The ``hist_*`` arrays of a training history (the fields present)."""
    out = {}
    for k in ("loglik", "loglik_precise", "sigma_rb", "sigma_counts", "batch_size",
              "hidden_occupancy", "finite"):
        v = getattr(history, k, None)
        if v is not None:
            out[f"hist_{k}"] = np.asarray(v)
    return out


FIGURE_KEYS = ("seeds", "n_hidden", "diag_loglik", "diag_loglik_err", "diag_sigma_rb",
                "diag_sigma_rb_err", "diag_sigma_counts", "diag_sigma_counts_err",
                "diag_tau_rb", "diag_tau_rb_err", "diag_tau_counts", "diag_tau_counts_err",
                "diag_p_bar", "diag_log_M_rb", "diag_M_counts", "diag_transition_counts",
                "diag_self_transition_counts", "diag_self_transition_rb",
                "fig3_index", "fig3_w", "fig3_wbar", "fig3_abar", "fig3_z",
                "fig3_mean_images", "fig3_samples")


HELDOUT_KEYS = ("diag_loglik_heldout", "diag_loglik_heldout_err", "diag_loglik_heldout_rb",
                "diag_loglik_heldout_rb_err")
"""The optional held-out arrays, ``(E,)`` each: exact LL given p̄ (counts / RB) on the
held-out images, with jackknife errors."""


def load_diagnostics_npz(out_dir) -> dict:
    """The arrays of ``out_dir/diagnostics.npz``; ``FileNotFoundError`` if absent,
    ``ValueError`` naming the file if it is corrupt or lacks arrays the figures need."""
    path = Path(out_dir) / DIAGNOSTICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `ncl reproduce` or `ncl diagnose` "
                                "first")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # BadZipFile, pickled data, truncated members, ...
        raise ValueError(f"cannot read {path}: the file is corrupt or truncated ({e}); "
                         "write it again with `ncl diagnose RUN_DIR`") from e
    missing = [k for k in FIGURE_KEYS if k not in arrays]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more"
                                          if len(missing) > 4 else "")
        raise ValueError(f"{path} lacks the arrays {shown}; it was not written by "
                         "`ncl reproduce`/`ncl diagnose` (write it again with "
                         "`ncl diagnose RUN_DIR`)")
    return arrays


def write_json(path: Path, obj):
    """Write ``obj`` as JSON to ``path`` (through a temporary file, then renamed)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2, allow_nan=True))
    os.replace(tmp, path)
