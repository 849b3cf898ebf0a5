"""ncl.figure_pool (figures drawn in worker processes) and the captions' frozen line
breaks (ncl.plots.wrap_words), each against an independent reference: matplotlib's own
word-by-word wrapping rule and drawing, and the same figures drawn in this process."""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncl import figure_pool, plots
from ncl.figure_pool import FigureJob


def _matplotlib_rule(text, line_width, width):
    """matplotlib's ``Text._get_wrapped_text`` loop (word by word), as the reference."""
    lines = []
    for paragraph in text.split("\n"):
        words = paragraph.split(" ")
        while words:
            if len(words) == 1:
                lines.append(words.pop(0))
                continue
            for i in range(2, len(words) + 1):
                if width(" ".join(words[:i])) > line_width:
                    lines.append(" ".join(words[:i - 1]))
                    words = words[i - 1:]
                    break
                if i == len(words):
                    lines.append(" ".join(words))
                    words = []
                    break
    return "\n".join(lines)


@settings(max_examples=300, deadline=None)
@given(words=st.lists(st.text(alphabet="abcσ→ij", min_size=0, max_size=12), max_size=40),
       breaks=st.lists(st.integers(0, 40), max_size=3),
       line_width=st.integers(0, 60))
def test_wrap_words_is_matplotlibs_rule(words, breaks, line_width):
    for b in sorted(breaks, reverse=True):       # newlines in the text always break
        if b < len(words):
            words = words[:b] + ["x\ny"] + words[b:]
    text = " ".join(words)
    assert plots.wrap_words(text, line_width, len) == _matplotlib_rule(text, line_width, len)


def _caption_figure():
    fig = plots.new_figure((6.0, 2.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [1, 0])
    plots._caption(fig, "(a) per-epoch values monitored on the training chain (σ from its "
                   "Rao–Blackwellised M). (c) and the colours: final values from the "
                   "diagnostics (long chains; jackknife error bars). " * 3)
    return fig


def test_frozen_captions_are_matplotlibs_own_wrapping_at_the_save_dpi(tmp_path):
    reference = _caption_figure()
    reference.set_dpi(200)
    text = reference.texts[0]
    text._renderer = reference.canvas.get_renderer()   # what Text.draw sets before wrapping
    expected = text._get_wrapped_text()
    fig = _caption_figure()
    path = plots.save_figure(fig, tmp_path / "frozen", ("png",), dpi=200)[0]
    caption = fig.texts[0]
    assert not caption.get_wrap() and caption.get_text() == expected
    assert expected.count("\n") >= 2
    from PIL import Image
    width = Image.open(path).size[0]   # the caption never widens the figure
    assert width <= round((fig.get_figwidth() + 2 * 0.05) * 200) + 1


def _pdf_body(path) -> bytes:
    return re.sub(rb"/CreationDate \(D:[0-9Z+\-']+\)", b"", path.read_bytes())


def _same_bytes(a, b) -> bool:
    return hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def _jobs(tmp_path, rng):
    S, E, L, D = 4, 6, 3, 784
    f2 = dict(loglik_history=rng.normal(-150, 1, (S, E)),
              sigma_history=np.abs(rng.normal(1, 1, (S, E))),
              final_loglik=rng.normal(-148, 1, S), final_sigma=np.array([0.1, 0.5, 2, 9.]),
              seeds=np.arange(S), caption="synthetic")
    run = dict(w=rng.normal(size=(D, L)), wbar=rng.normal(size=(L, D)), abar=rng.normal(size=L),
               p_bar=np.full(L, 1 / L), M=np.full((L, L), 1 / L), unit_digit=np.arange(L),
               mean_images=rng.uniform(size=(4, D)), samples=rng.integers(0, 2, (4, D)),
               z=np.arange(4) % L, title="run")
    f4 = dict(sigma=f2["final_sigma"], kl=np.array([1e-4, 1e-3, 0.01, 0.1]),
              tau=np.array([1.0, 2.0, 5.0, 3.0]), self_transition=np.full(S, 0.3), n_hidden=L)
    return [FigureJob("figure2", f2, str(tmp_path / "fig2"), ("png",)),
            FigureJob("figure3", dict(runs=[run]), str(tmp_path / "fig3"), ("png", "pdf")),
            FigureJob("figure4", f4, str(tmp_path / "fig4"), ("png",))]


def test_workers_write_the_same_files_as_this_process(tmp_path):
    rng = np.random.default_rng(0)
    serial = figure_pool.draw_jobs(_jobs(tmp_path / "serial", rng))
    rng = np.random.default_rng(0)
    msgs = []
    workers = figure_pool.start_workers(3, msgs.append)
    assert len(workers) == 2
    pooled = figure_pool.draw_jobs(_jobs(tmp_path / "pooled", rng), workers, msgs.append)
    assert msgs == [] and all(w.proc.returncode == 0 for w in workers)
    assert [p.relative_to(tmp_path / "pooled") for p in pooled] == \
        [p.relative_to(tmp_path / "serial") for p in serial]
    for a, b in zip(serial, pooled):   # PDFs: the same up to their creation date
        assert _same_bytes(a, b) if a.suffix == ".png" else _pdf_body(a) == _pdf_body(b)


def test_workers_draw_with_the_callers_rc_params(tmp_path):
    def fig3(where):
        return _jobs(tmp_path / where, np.random.default_rng(1))[1]

    plain = figure_pool.draw_jobs([fig3("plain")])[0]
    with matplotlib.rc_context({"axes.facecolor": "0.8", "image.interpolation": "bicubic"}):
        here = figure_pool.draw_jobs([fig3("here")])[0]
        jobs = [_jobs(tmp_path / "first", np.random.default_rng(2))[0], fig3("worker")]
        worker = figure_pool.draw_jobs(jobs, figure_pool.start_workers(2))[1]
    assert worker.parent.name == "worker"
    assert _same_bytes(worker, here) and not _same_bytes(here, plain)


def test_a_worker_that_cannot_start_loses_no_figure(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    msgs = []
    workers = figure_pool.start_workers(2, msgs.append)
    paths = figure_pool.draw_jobs(_jobs(tmp_path, np.random.default_rng(0)), workers,
                                  msgs.append)
    assert workers == [] and "could not start a drawing worker" in msgs[0]
    assert len(paths) == 4 and all(p.stat().st_size > 0 for p in paths)


def test_an_error_in_a_worker_is_raised_here_as_without_workers(tmp_path):
    jobs = _jobs(tmp_path, np.random.default_rng(0))
    bad = jobs[1]._replace(kwargs=dict(jobs[1].kwargs, bogus=1))
    with pytest.raises(TypeError, match="bogus") as serial:
        figure_pool.draw_jobs([jobs[0], bad])
    msgs = []
    with pytest.raises(TypeError, match="bogus") as pooled:
        figure_pool.draw_jobs([jobs[0], bad], figure_pool.start_workers(2), msgs.append)
    assert str(pooled.value) == str(serial.value)
    assert len(msgs) == 1 and "a drawing worker failed (TypeError" in msgs[0]
    assert (tmp_path / "fig2.png").stat().st_size > 0


def test_an_error_here_ends_the_workers(tmp_path):
    jobs = _jobs(tmp_path, np.random.default_rng(0))
    workers = figure_pool.start_workers(2)
    with pytest.raises(ValueError, match="not a figure function"):
        figure_pool.draw_jobs([jobs[0]._replace(function="save_figure"), jobs[1]], workers)
    assert workers[0].proc.poll() is not None and not (tmp_path / "fig3.pdf").exists()


def test_processes_is_validated():
    with pytest.raises(ValueError, match="processes"):
        figure_pool.start_workers(0)
    with pytest.raises(TypeError, match="processes"):
        figure_pool.start_workers(1.5)


def test_cli_processes_is_a_usage_error(tmp_path, capsys):
    from ncl import cli
    assert cli.main(["figures", str(tmp_path), "--processes", "0"]) == cli.EXIT_USAGE
    assert "--processes must be at least 1, got 0" in capsys.readouterr().err


def test_ncl_plots_imports_without_jax():
    code = ("import sys, ncl, ncl.plots, ncl.figure_pool; "
            "assert 'jax' not in sys.modules, 'jax imported'; "
            "assert all(getattr(ncl, n) is not None for n in ncl.__all__); "
            "assert 'jax' in sys.modules; "
            "assert ncl.training.train_ensemble is ncl.train_ensemble; "
            "assert ncl.io.save_run and 'save_run' not in dir(ncl); "
            "assert not hasattr(ncl, 'no_such_module')")
    subprocess.run([sys.executable, "-c", code], check=True)
