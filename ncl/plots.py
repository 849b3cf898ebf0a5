"""Figures of the paper (Figs. 2–4) from plain arrays.

Every function takes NumPy arrays (no ncl objects beyond plain numbers), builds a new
:class:`matplotlib.figure.Figure` with the object-oriented API (no pyplot state, Agg
backend) and returns it; :func:`save_figure` writes it as PNG (dpi 200) and PDF.

* :func:`figure2` — (a) precise log-likelihood vs epoch, one line per seed coloured by
  the final σ (log colour scale); (b) σ vs epoch (log y); (c) final log-likelihood vs
  final σ with error bars.
* :func:`figure3` — for one or more runs (the paper shows the best and the worst): the
  ``w`` image of every hidden unit with ``p̄`` and the classifier's digit above, the
  ``w̄`` images, the ``ā`` bar chart, the matrix ``M`` (heatmap), the mean images
  ``⟨x(t)⟩ = sigmoid(w z(t−1) + a)`` along a sampled hidden trajectory, and the sampled
  images ``x(t)`` themselves.
* :func:`figure4` — (a) KL (eq. 22), (b) τ (eq. 23), (c) ``Tr(M)/L`` (eq. 24) with the
  ``1/L`` line, each against σ on a log x axis with error bars.

Which σ estimator a figure shows is a parameter (``"rb"``, Rao–Blackwellised, the
default; ``"counts"``, the paper's count estimator) and is written on the figure.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # a no-op if a backend is already in use

import numpy as np  # noqa: E402
from matplotlib import cbook  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib import text as mtext  # noqa: E402
from matplotlib import ticker as mticker  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

ESTIMATORS = ("rb", "counts")
ESTIMATOR_NAMES = {"rb": "Rao–Blackwellised", "counts": "transition counts (paper's)"}
SIGMA_LABEL = "σ (nats per double step)"
LOGLIK_LABEL = "log-likelihood (nats per image)"
TAU_LABEL = "τ (double steps)"
SIGMA_FLOOR = 1e-4
"""σ values below this (a count estimate of exactly 0) are drawn at the floor on log axes."""

_RC = {"font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "xtick.labelsize": 8,
       "ytick.labelsize": 8, "legend.fontsize": 7.5, "figure.titlesize": 10.5}


def _check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    return estimator


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_MATH_TICK = re.compile(r"^\$\\mathdefault\{(?:([0-9.]+)\\times)?(10)\^\{(-?[0-9]+)\}\}\$$")


class _PlainLogFormatter(mticker.LogFormatterSciNotation):
    """Matplotlib's log-axis tick labels (``10^k``, ``2×10^k``) in Unicode, e.g. ``10⁻²``,
    instead of mathtext: the same text without the mathtext parser (0.3 s a run of
    figures). Any other label is left as matplotlib writes it."""

    def __call__(self, x, pos=None):
        label = super().__call__(x, pos)
        m = _MATH_TICK.match(label)
        if m is None:
            return label
        coeff, base, exp = m.groups()
        return f"{coeff + '×' if coeff else ''}{base}{exp.translate(_SUPERSCRIPT)}"


def _plain_log_labels(fig: Figure) -> None:
    """Swap :class:`_PlainLogFormatter` in for every log axis's default formatters."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for get, put in ((axis.get_major_formatter, axis.set_major_formatter),
                             (axis.get_minor_formatter, axis.set_minor_formatter)):
                f = get()
                if type(f) is mticker.LogFormatterSciNotation:
                    put(_PlainLogFormatter(base=f._base, labelOnlyBase=f.labelOnlyBase,
                                           minor_thresholds=f.minor_thresholds,
                                           linthresh=f._linthresh))


def wrap_words(text: str, line_width: float, width) -> str:
    """``text`` with newlines so that each line fits ``line_width`` by ``width(line)``:
    matplotlib's rule for ``wrap=True`` texts (a line takes words while it fits, always
    at least one; newlines in ``text`` always break), with each line's end found by
    bisection (``width`` grows as words are added) instead of word by word."""
    out = []
    for paragraph in text.split("\n"):
        words = paragraph.split(" ")
        while words:
            lo, hi = 1, len(words)   # words[:lo] fits (or is one word); find the largest
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if width(" ".join(words[:mid])) > line_width:
                    hi = mid - 1
                else:
                    lo = mid
            out.append(" ".join(words[:lo]))
            words = words[lo:]
    return "\n".join(out)


def _freeze_wrapped_text(fig: Figure, dpi: float) -> None:
    """Wrap every left-aligned, unrotated ``wrap=True`` text of ``fig`` (the captions)
    once, at ``dpi``, and turn its wrapping off: matplotlib would wrap it again in every
    draw, measuring every prefix of every line (0.3 s a figure), and at each format's own
    dpi; measured here with the Agg renderer at ``dpi``, as matplotlib does for a PNG."""
    renderer, scale = RendererAgg(1, 1, dpi), dpi / fig.dpi
    for t in fig.findobj(lambda a: isinstance(a, mtext.Text) and a.get_wrap()):
        if (t.get_usetex() or t.get_rotation() % 360 != 0
                or t.get_horizontalalignment() != "left" or not t.get_text()):
            continue
        x0, _ = t.get_transform().transform(t.get_position())
        prop = t.get_fontproperties()

        def width(line, prop=prop, renderer=renderer):
            w, _, _ = renderer.get_text_width_height_descent(line, prop,
                                                             cbook.is_math_text(line))
            return math.ceil(w)
        t.set_text(wrap_words(t.get_text(), (fig.bbox.x1 - x0) * scale, width))
        t.set_wrap(False)


def new_figure(figsize=(7.0, 3.0), **kw) -> Figure:
    """A figure not registered with pyplot (no global state), with an Agg canvas."""
    fig = Figure(figsize=figsize, **kw)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path_stem, formats: Sequence[str] = ("png", "pdf"),
                dpi: int = 200, pad_inches: float = 0.05) -> list[Path]:
    """Write ``fig`` to ``path_stem.<fmt>`` for each format, cropped to its tight bounding
    box plus ``pad_inches`` (captions below the axes included); returns the paths. The
    layout is solved once, then frozen (the figure's layout engine is set to none), and
    so are the captions' line breaks (:func:`_freeze_wrapped_text`); log axes get
    :class:`_PlainLogFormatter` labels (:func:`_plain_log_labels`)."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    # One layout pass and one tight-bounding-box pass per figure, shared by every format:
    # ``bbox_inches="tight"`` would draw the figure twice per format. The layout engine
    # runs on its own (no draw of every artist: 0.1 s a figure, the same pixels).
    _plain_log_labels(fig)
    _freeze_wrapped_text(fig, dpi)
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
    else:
        fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    # the figure itself and the free texts (captions, placed below the axes)
    extents = [fig.bbox] + [t.get_window_extent(renderer) for t in fig.texts
                            if t.get_visible() and t.get_text()]
    bbox = Bbox.union(extents).transformed(fig.dpi_scale_trans.inverted()).padded(pad_inches)
    fig.set_layout_engine("none")
    for fmt in formats:
        p = stem.with_suffix(f".{fmt}")
        fig.savefig(p, dpi=dpi, bbox_inches=bbox)
        paths.append(p)
    return paths


def sigma_for_log_axis(sigma, floor: float = SIGMA_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """``(σ clipped to [floor, max finite], mask of clipped values)`` for log axes.

    ``inf`` (a one-way flux) is drawn at the largest finite value; 0 and NaN-free values
    below ``floor`` at ``floor``. NaN stays NaN.
    """
    s = np.asarray(sigma, np.float64).copy()
    finite = np.isfinite(s)
    top = np.nanmax(s[finite]) if finite.any() else 1.0
    clipped = (s < floor) | np.isposinf(s)
    s = np.where(np.isposinf(s), max(top, floor), s)
    s = np.where(s < floor, floor, s)
    return s, clipped


def sigma_norm(final_sigma) -> mcolors.LogNorm:
    s, _ = sigma_for_log_axis(final_sigma)
    s = s[np.isfinite(s)]
    lo, hi = (float(s.min()), float(s.max())) if s.size else (SIGMA_FLOOR, 1.0)
    if hi <= lo:
        lo, hi = lo / 2, hi * 2
    return mcolors.LogNorm(vmin=lo, vmax=hi)


def _err(a, n):
    if a is None:
        return None
    a = np.asarray(a, np.float64)
    return np.where(np.isfinite(a), a, 0.0) if a.shape == (n,) else None


def _regime_name(r, names) -> str:
    r = int(r)
    if names is not None and r in names:
        return str(names[r])
    return "no level" if r < 0 else f"regime {r}"


def _group_color(r) -> str:
    """The colour of group (level) ``r``; −1 (a straggler) is grey."""
    return "0.6" if int(r) < 0 else f"C{int(r) % 10}"


def _has_positive(*arrays) -> bool:
    """Whether any array holds a finite positive value (a log axis needs one)."""
    for a in arrays:
        a = np.asarray(a, np.float64)
        if np.any(np.isfinite(a) & (a > 0)):
            return True
    return False


def _outside_legend(fig: Figure, axes):
    """One legend for ``axes`` right of the panels, so it hides no point (duplicate
    labels merged)."""
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if labels:
        fig.legend([handles[k] for k in labels], labels, loc="outside right upper",
                   frameon=False, fontsize=7.5)


def _caption(fig: Figure, text: str, y: float = -0.01):
    fig.text(0.01, y, text, ha="left", va="top", fontsize=7.5, wrap=True, color="0.2")


# ----------------------------------------------------------------------------- Fig. 2

def figure2(loglik_history, sigma_history, final_loglik, final_sigma,
            final_loglik_err=None, final_sigma_err=None, *, seeds=None,
            estimator: str = "rb", regimes=None, regime_names=None, epochs=None,
            loglik_label: str = "precise: exact given the epoch's p̄, all data",
            caption: str | None = None, final_label: str | None = None) -> Figure:
    """Paper Fig. 2.

    Args:
      loglik_history: ``(S, E)`` per-epoch log-likelihood (e.g. ``history.loglik_precise``).
      sigma_history: ``(S, E)`` per-epoch σ (``history.sigma_rb`` or ``sigma_counts``).
      final_loglik, final_sigma: ``(S,)`` final values (diagnostics of the trained
        models); they colour every curve (log colour scale) and make panel (c).
      final_loglik_err, final_sigma_err: ``(S,)`` error bars of panel (c) (or None).
      seeds: ``(S,)`` seed labels (annotated in (c) for the extreme runs).
      estimator: ``"rb"`` or ``"counts"`` — which σ is shown (written on the figure).
      regimes: optional ``(S,)`` regime labels (ints); panel (c) uses one marker each.
      regime_names: optional ``{label: name}`` for the legend.
      epochs: ``(E,)`` epoch numbers (default 1..E).
      loglik_label: how the per-epoch log-likelihood was computed (y label of (a)).
      caption: extra text under the figure.
      final_label: what the final log-likelihood of (c) is (e.g. ``"held-out"``; default:
        the training log-likelihood).
    """
    _check_estimator(estimator)
    ll_h = np.atleast_2d(np.asarray(loglik_history, np.float64))
    sg_h = np.atleast_2d(np.asarray(sigma_history, np.float64))
    fl = np.asarray(final_loglik, np.float64)
    fs = np.asarray(final_sigma, np.float64)
    S, E = ll_h.shape
    if sg_h.shape != (S, E) or fl.shape != (S,) or fs.shape != (S,):
        raise ValueError(f"shape mismatch: loglik_history {ll_h.shape}, sigma_history "
                         f"{sg_h.shape}, final_loglik {fl.shape}, final_sigma {fs.shape}")
    ep = np.arange(1, E + 1) if epochs is None else np.asarray(epochs)
    norm = sigma_norm(fs)
    cmap = matplotlib.colormaps["viridis"]
    fs_plot, fs_clipped = sigma_for_log_axis(fs)
    order = np.argsort(fs_plot)  # high σ drawn last (on top)
    name = ESTIMATOR_NAMES[estimator]

    with matplotlib.rc_context(_RC):
        fig = new_figure(figsize=(11.0, 3.6), layout="constrained")
        ax_a, ax_b, ax_c = fig.subplots(1, 3)
        for i in order:
            c = cmap(norm(fs_plot[i]))
            ax_a.plot(ep, ll_h[i], color=c, lw=0.9, alpha=0.9)
            sg, _ = sigma_for_log_axis(sg_h[i])
            ax_b.plot(ep, sg, color=c, lw=0.9, alpha=0.9)
        ax_a.set_xlabel("epoch")
        ax_a.set_ylabel(f"{LOGLIK_LABEL}\n({loglik_label})", fontsize=8)
        ax_a.set_title("(a) log-likelihood during training", loc="left")
        if _has_positive(sg_h):
            ax_b.set_yscale("log")
        else:
            ax_b.text(0.5, 0.5, "no per-epoch σ recorded", ha="center", va="center",
                      transform=ax_b.transAxes, color="0.4")
        ax_b.set_xlabel("epoch")
        ax_b.set_ylabel(SIGMA_LABEL)
        ax_b.set_title(f"(b) σ during training ({'RB' if estimator == 'rb' else 'counts'})",
                       loc="left")

        xerr = _err(final_sigma_err, S)
        yerr = _err(final_loglik_err, S)
        markers = "osD^v<>p*h"
        reg = (np.zeros(S, int) if regimes is None else np.asarray(regimes, int))
        for r in np.unique(reg):
            m = reg == r
            ax_c.errorbar(fs_plot[m], fl[m], xerr=None if xerr is None else xerr[m],
                          yerr=None if yerr is None else yerr[m], fmt="none", ecolor="0.55",
                          elinewidth=0.8, capsize=1.5, zorder=1)
            ax_c.scatter(fs_plot[m], fl[m], c=fs_plot[m], cmap=cmap, norm=norm, s=26,
                         marker=markers[int(r) % len(markers)], edgecolors="k",
                         linewidths=0.4, zorder=2,
                         label=None if regimes is None else _regime_name(r, regime_names))
        if fs_clipped.any():
            ax_c.scatter(fs_plot[fs_clipped], fl[fs_clipped], s=70, facecolors="none",
                         edgecolors="r", linewidths=0.8, zorder=3,
                         label="σ = 0 or ∞ (drawn at axis limit)")
        if seeds is not None:
            seeds = np.asarray(seeds)
            ib, iw = int(np.nanargmax(fl)), int(np.nanargmin(fl))
            for i, dy, va in ((ib, 7, "bottom"), (iw, -7, "top")):
                ax_c.annotate(f"seed {seeds[i]}", (fs_plot[i], fl[i]), xytext=(0, dy),
                              textcoords="offset points", fontsize=7, ha="center", va=va,
                              arrowprops=dict(arrowstyle="-", lw=0.5, color="0.3"))
            ax_c.margins(y=0.1)
        if _has_positive(fs_plot):
            ax_c.set_xscale("log")
        ax_c.set_xlabel(f"final {SIGMA_LABEL}")
        which = "" if final_label is None else f"{final_label} "
        ax_c.set_ylabel(f"final {which}{LOGLIK_LABEL}")
        ax_c.set_title(f"(c) final {which}log-likelihood vs σ", loc="left")
        if regimes is not None or fs_clipped.any():
            _outside_legend(fig, [ax_c])
        sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        cb = fig.colorbar(sm, ax=[ax_a, ax_b, ax_c], pad=0.01, aspect=30)
        cb.set_label(f"final {SIGMA_LABEL}")
        fig.suptitle(f"{S} models. σ estimator: {name}; curves coloured by the final σ",
                     x=0.01, ha="left")
        if caption:
            _caption(fig, caption)
    return fig


# ----------------------------------------------------------------------------- Fig. 3

STRIP_GAP = 3
"""Pixels of blank between the tiles of an image strip (:func:`image_strip`)."""


def image_strip(images, side: int = 28, gap: int = STRIP_GAP) -> np.ndarray:
    """Tile ``images (n, side·side)`` left to right into one ``(side, n·side + (n−1)·gap)``
    array, NaN in the gaps (drawn blank): one ``imshow`` for a row of images instead of
    one axes per image, which is what makes Fig. 3 cheap to lay out and render. Tile ``k``
    occupies columns ``k·(side + gap) … k·(side + gap) + side − 1``."""
    images = np.asarray(images, np.float64)
    n = images.shape[0]
    out = np.full((side, n * side + max(n - 1, 0) * gap), np.nan)
    for k in range(n):
        c = k * (side + gap)
        out[:, c:c + side] = images[k].reshape(side, side)
    return out


def _strip(ax, images, *, side: int, cmap="gray_r", vmin=0.0, vmax=1.0, labels=None,
           fontsize=7.0, ylabel=None):
    """Draw :func:`image_strip` of ``images`` on ``ax`` (no ticks), each tile's label above
    it; returns the image artist (for a colour bar)."""
    cm = matplotlib.colormaps[cmap].with_extremes(bad="white")
    im = ax.imshow(image_strip(images, side), cmap=cm, vmin=vmin, vmax=vmax,
                   interpolation="nearest", aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if labels is not None:
        for k, lab in enumerate(labels):
            ax.text(k * (side + STRIP_GAP) + (side - 1) / 2, -1.5, lab, ha="center",
                    va="bottom", fontsize=fontsize)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    return im


def _draw_run(sf, run: dict, estimator: str, side: int):
    w = np.asarray(run["w"], np.float64)          # (D, L)
    wbar = np.asarray(run["wbar"], np.float64)    # (L, D)
    abar = np.asarray(run["abar"], np.float64)    # (L,)
    p_bar = np.asarray(run["p_bar"], np.float64)  # (L,)
    M = np.asarray(run["M"], np.float64)          # (L, L)
    L = w.shape[1]
    digits = run.get("unit_digit")
    mean_imgs = np.asarray(run["mean_images"], np.float64)
    samples = np.asarray(run["samples"], np.float64)
    z_seq = np.asarray(run["z"], int) if run.get("z") is not None else None

    head, top, bottom = sf.subfigures(3, 1, height_ratios=[0.22, 2.15, 1.25])
    head.text(0.01, 0.5, run.get("title", ""), ha="left", va="center", fontsize=10,
              fontweight="bold")
    left, mid, right = top.subfigures(1, 3, width_ratios=[L + 0.9, 2.0, 3.1])
    axes = left.subplots(2, 2, gridspec_kw={"width_ratios": [L, 0.09], "wspace": 0.04,
                                            "hspace": 0.35})
    left.subplots_adjust(left=0.04, right=0.93, top=0.83, bottom=0.03)
    wlim = float(np.nanmax(np.abs(w))) or 1.0
    blim = float(np.nanmax(np.abs(wbar))) or 1.0
    labels = [f"α={a}: p̄={p_bar[a]:.2f}"
              + ("" if digits is None else f"\nclassified '{int(digits[a])}'")
              for a in range(L)]
    im_w = _strip(axes[0, 0], w.T, side=side, cmap="RdBu_r", vmin=-wlim, vmax=wlim,
                  labels=labels, ylabel="w")
    im_b = _strip(axes[1, 0], wbar, side=side, cmap="RdBu_r", vmin=-blim, vmax=blim,
                  ylabel="w̄")
    for cax, im, lab in ((axes[0, 1], im_w, "w (logit)"), (axes[1, 1], im_b, "w̄")):
        cb = left.colorbar(im, cax=cax)
        cb.set_label(lab, fontsize=7)
        cb.ax.tick_params(labelsize=6)

    ax = mid.subplots()
    mid.subplots_adjust(left=0.38, right=0.95, top=0.83, bottom=0.2)
    ax.bar(np.arange(L), abar, color=["C0" if v >= 0 else "C3" for v in abar])
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(np.arange(L))
    ax.set_xlabel("hidden unit α")
    ax.set_ylabel("ā (hidden bias)")
    ax.set_title("hidden biases ā", fontsize=8.5)

    ax = right.subplots()
    right.subplots_adjust(left=0.15, right=0.85, top=0.83, bottom=0.2)
    im = ax.imshow(M, cmap="magma_r", vmin=0.0, vmax=1.0)
    for i in range(L):
        for j in range(L):
            ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="w" if M[i, j] > 0.55 else "k")
    ax.set_xticks(np.arange(L))
    ax.set_yticks(np.arange(L))
    ax.set_xlabel("to z")
    ax.set_ylabel("from z'")
    ax.set_title(f"M[z', z] ({'RB' if estimator == 'rb' else 'counts'})", fontsize=9)
    cb = right.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label("transition probability", fontsize=7)
    cb.ax.tick_params(labelsize=6)

    axes = bottom.subplots(2, 1, gridspec_kw={"hspace": 0.08})
    bottom.subplots_adjust(left=0.04, right=0.99, top=0.86, bottom=0.02)
    _strip(axes[0], mean_imgs, side=side, ylabel="⟨x(t)⟩",
           labels=None if z_seq is None else [f"z={z}" for z in z_seq])
    _strip(axes[1], samples, side=side, ylabel="x(t)")
    bottom.suptitle("mean images ⟨x(t)⟩ = sigmoid(w z(t−1) + a) along a sampled hidden "
                    "trajectory z(t−1) (top row) and the sampled images x(t) (bottom row); "
                    "t increases to the right", fontsize=7.5, y=0.995)


def figure3(runs: Sequence[dict], *, estimator: str = "rb", side: int = 28,
            caption: str | None = None) -> Figure:
    """Paper Fig. 3: one panel per run (the paper: the best and the worst).

    Each ``run`` dict holds NumPy arrays of ONE model:
      ``w (D, L)``, ``wbar (L, D)``, ``abar (L,)``, ``p_bar (L,)`` (occupancy),
      ``M (L, L)`` (transition matrix, estimator as ``estimator``), optional
      ``unit_digit (L,)`` (classifier's digit of each unit's mean image),
      ``mean_images (n, D)`` (``sigmoid(w z(t−1) + a)``), ``samples (n, D)`` (``x(t)``),
      optional ``z (n,)`` (the hidden states ``z(t−1)``), and ``title`` (str).
    """
    _check_estimator(estimator)
    runs = list(runs)
    if not runs:
        raise ValueError("figure3 needs at least one run")
    n_seq = max(np.asarray(r["mean_images"]).shape[0] for r in runs)
    width = max(11.0, 0.62 * n_seq)
    with matplotlib.rc_context(_RC):
        fig = new_figure(figsize=(width, 5.0 * len(runs)))
        sfs = fig.subfigures(len(runs), 1, hspace=0.04) if len(runs) > 1 else [fig]
        for sf, run in zip(np.atleast_1d(sfs), runs):
            _draw_run(sf, run, estimator, side)
        if caption:
            _caption(fig, caption, y=0.0)
    return fig


# ----------------------------------------------------------------------------- Fig. 4

def figure4(sigma, kl, tau, self_transition, *, sigma_err=None, kl_err=None, tau_err=None,
            self_transition_err=None, self_transition_alt=None, alt_label: str | None = None,
            n_hidden: int, estimator: str = "rb", regimes=None, regime_names=None,
            kl_log: bool = True, kl_floor: float = 1e-6,
            caption: str | None = None) -> Figure:
    """Paper Fig. 4: indicators against σ (log x axis), with error bars.

    Args:
      sigma: ``(S,)`` final σ of each model (estimator ``estimator``), ``sigma_err``.
      kl: ``(S,)`` KL(P_D || P_e) of eq. (22), ``kl_err``.
      tau: ``(S,)`` decorrelation time (eq. 23; ``inf`` for a periodic chain, drawn at
        the top of the axis with an open marker), ``tau_err``.
      self_transition: ``(S,)`` ``Tr(M)/L`` (eq. 24), ``self_transition_err``.
      self_transition_alt: optional second estimate of ``Tr(M)/L`` (other estimator),
        drawn as small crosses labelled ``alt_label``.
      n_hidden: L (the ``1/L`` line of panel (c)).
      estimator: which σ (and τ) estimator is shown (written on the figure).
      regimes: optional ``(S,)`` int regime labels (marker colours), ``regime_names``
        ``{label: name}`` for the legend.
      kl_log: log scale for the KL axis (its values span decades; values below
        ``kl_floor`` are drawn at the floor). ``False``: linear, as in the paper.
    """
    _check_estimator(estimator)
    s, s_clip = sigma_for_log_axis(sigma)
    n = s.shape[0]
    kl = np.asarray(kl, np.float64)
    tau = np.asarray(tau, np.float64)
    st = np.asarray(self_transition, np.float64)
    reg = np.zeros(n, int) if regimes is None else np.asarray(regimes, int)
    colors = np.array([_group_color(r) for r in reg])
    xerr = _err(sigma_err, n)
    name = ESTIMATOR_NAMES[estimator]

    with matplotlib.rc_context(_RC):
        fig = new_figure(figsize=(11.0, 3.5), layout="constrained")
        ax_a, ax_b, ax_c = fig.subplots(1, 3)

        def panel(ax, y, yerr, ylabel, title):
            y = np.asarray(y, np.float64)
            e = _err(yerr, n)
            ax.errorbar(s, y, xerr=xerr, yerr=e, fmt="none", ecolor="0.55", elinewidth=0.8,
                        capsize=1.5, zorder=1)
            for r in np.unique(reg):
                m = reg == r
                ax.scatter(s[m], y[m], c=colors[m], s=24, edgecolors="k", linewidths=0.4,
                           zorder=2,
                           label=None if regimes is None else _regime_name(r, regime_names))
            if _has_positive(s):
                ax.set_xscale("log")
            ax.set_xlabel(SIGMA_LABEL)
            ax.set_ylabel(ylabel)
            ax.set_title(title, loc="left")

        if not np.isfinite(kl).any():
            ax_a.set_xlabel(SIGMA_LABEL)
            ax_a.set_ylabel("KL(P_D ‖ P_e) (nats)")
            ax_a.set_title("(a) class fidelity, eq. (22)", loc="left")
            ax_a.text(0.5, 0.5, "KL n/a (no digit classifier\nfor these hidden units)",
                      ha="center", va="center", transform=ax_a.transAxes, color="0.4")
        elif kl_log:
            kl_plot = np.where(np.isfinite(kl), np.maximum(kl, kl_floor), np.nan)
            kl_e = _err(kl_err, n)
            if kl_e is not None:  # asymmetric bars that stay above the floor
                lo_ = np.minimum(kl_e, kl_plot - kl_floor * 0.5)
                kl_e = np.stack([np.maximum(lo_, 0.0), kl_e])
            panel(ax_a, kl_plot, None, "KL(P_D ‖ P_e) (nats, log scale)",
                  "(a) class fidelity, eq. (22)")
            if kl_e is not None:
                ax_a.errorbar(s, kl_plot, yerr=kl_e, fmt="none", ecolor="0.55",
                              elinewidth=0.8, capsize=1.5, zorder=1)
            ax_a.set_yscale("log")
        else:
            panel(ax_a, kl, kl_err, "KL(P_D ‖ P_e) (nats)", "(a) class fidelity, eq. (22)")
            ax_a.axhline(0, color="0.7", lw=0.6, zorder=0)

        finite = np.isfinite(tau)
        top = (np.nanmax(tau[finite]) if finite.any() else 1.0) * 1.15 + 1e-9
        tau_plot = np.where(finite, tau, top)
        panel(ax_b, tau_plot, np.where(finite, np.asarray(tau_err if tau_err is not None
                                                          else np.zeros(n), np.float64), 0.0),
              TAU_LABEL, "(b) decorrelation time, eq. (23) "
              f"({'RB' if estimator == 'rb' else 'counts'} M)")
        if (~finite).any():
            ax_b.scatter(s[~finite], tau_plot[~finite], s=60, marker="^", facecolors="none",
                         edgecolors="r", zorder=3, label="τ = ∞ (periodic), drawn at top")

        panel(ax_c, st, self_transition_err, "⟨M_zz⟩ = Tr(M)/L",
              "(c) mean self-transition, eq. (24)")
        ax_c.axhline(1.0 / n_hidden, color="k", ls="--", lw=0.9, label=f"1/L = 1/{n_hidden}")
        if self_transition_alt is not None:
            ax_c.scatter(s, np.asarray(self_transition_alt, np.float64), marker="x", s=14,
                         color="0.35", linewidths=0.7, zorder=2,
                         label=alt_label or "other estimator")
        top_c = max(1.0 / n_hidden, float(np.nanmax(st)) if np.isfinite(st).any() else 0.0)
        ax_c.set_ylim(0.0, 1.45 * top_c)
        _outside_legend(fig, [ax_a, ax_b, ax_c])
        if s_clip.any():
            for ax in (ax_a, ax_b, ax_c):
                ax.text(0.99, 0.01, "σ = 0 or ∞ drawn at the axis limit", ha="right",
                        va="bottom", transform=ax.transAxes, fontsize=6.5, color="r")
        fig.suptitle(f"{n} models against the final σ ({name} estimator)", x=0.01,
                     ha="left")
        if caption:
            _caption(fig, caption)
    return fig
