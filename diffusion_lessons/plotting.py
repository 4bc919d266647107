"""Pictures for the lessons: image grids, noising strips, 2-D clouds, schedule curves.

Lesson: notebooks/01_markov_noising.ipynb

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so a
notebook shows it exactly once (when it is the cell's value) and nothing leaks
between cells. Importing this module inside IPython registers the PNG display of
Figures (what ``%matplotlib inline`` would do), so no magic is needed in the lessons.
Images are (N, C, H, W) tensors in [-1, 1], as ``data`` gives them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from einops import rearrange
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from torch import Tensor

from .data import check_images
from .noising import q_sample
from .schedules import NoiseSchedule


def _display_figures_as_png() -> None:
    """In IPython, show a Figure that is a cell's value as a PNG, without pyplot."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:  # no IPython: nothing to display to
        return
    shell = get_ipython()
    if shell is None:
        return
    for formatter in shell.display_formatter.formatters.values():
        try:
            formatter.lookup_by_type(Figure)
            return  # the user (or %matplotlib inline) already chose how Figures display
        except KeyError:
            pass
    select_figure_formats(shell, {"png"})


_display_figures_as_png()

__all__ = [
    "arrow_panels",
    "cloud_panels",
    "compare_histograms",
    "draw_cloud",
    "image_grid",
    "noising_clouds",
    "noising_strip",
    "schedule_curves",
    "show_image",
]


def _to_hwc(image: Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W) or (H, W, C) in [0, 1] for imshow."""
    image = image.detach().float().cpu().clamp(-1, 1) * 0.5 + 0.5
    if image.shape[0] == 1:
        return image[0].numpy()  # (H, W), drawn in grey
    return rearrange(image, "c h w -> h w c").numpy()  # (H, W, C)


def show_image(ax: Axes, image: Tensor, title: str | None = None) -> None:
    """Draw one (C, H, W) image in [-1, 1] on ``ax``, without ticks.

    Lesson: notebooks/03_unet.ipynb
    """
    ax.imshow(_to_hwc(image), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)


def image_grid(
    images: Tensor,
    ncols: int = 8,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    scale: float = 1.2,
    titles: Sequence[str] | None = None,
) -> Figure:
    """Images (N, C, H, W) in [-1, 1] laid out row by row, ``ncols`` to a row.

    ``row_labels`` and ``col_labels`` say what each row and column is; ``titles`` (one per image,
    e.g. a caption) go above each image.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    images = check_images(images)
    n = images.shape[0]
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(scale * ncols + (0.8 if row_labels else 0), scale * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            show_image(ax, images[i], titles[i] if titles is not None else None)
        else:
            ax.axis("off")
    for c, label in enumerate(col_labels or []):
        axes[0, c].set_title(label, fontsize=9)
    for r, label in enumerate(row_labels or []):
        axes[r, 0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def _labels_for(ts: Sequence[int], s: NoiseSchedule) -> list[str]:
    return [f"t={t}\nᾱ={s.alpha_bars[t].item():.2f}" for t in ts]


def noising_strip(
    x0: Tensor,
    s: NoiseSchedule,
    ts: Sequence[int],
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
) -> Figure:
    """One image per row, noised with ``q_sample`` at each step in ``ts`` (columns).

    x0 is one image (C, H, W) or a batch (B, C, H, W). The same noise is used in every
    column, so the only thing that changes left to right is t.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    x0 = x0.unsqueeze(0) if x0.ndim == 3 else x0
    x0 = check_images(x0, "x0")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    columns = [q_sample(x0, t, s, noise) for t in ts]  # each (B, C, H, W)
    grid = rearrange(torch.stack(columns), "t b c h w -> (b t) c h w")  # row-major: one row per image
    title = title or f"Noising with the {s.name} schedule (T={s.T}): one image per row, t grows left to right"
    return image_grid(grid, ncols=len(ts), title=title, col_labels=_labels_for(ts, s), row_labels=row_labels)


def draw_cloud(ax: Axes, points: Tensor, title: str, lim: float, color: str = "C0") -> None:
    """Points (N, 2) as a scatter on ``ax``, in a square window of half-width ``lim``.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    p = points.detach().float().cpu()
    ax.scatter(p[:, 0], p[:, 1], s=3, alpha=0.5, color=color)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("$x_1$")


def noising_clouds(
    points: Tensor,
    s: NoiseSchedule,
    ts: Sequence[int],
    generator: torch.Generator | None = None,
    title: str | None = None,
    lim: float = 3.0,
) -> Figure:
    """A 2-D cloud (N, 2) noised with ``q_sample`` at each step in ``ts``, one panel each.

    The dashed circle is the 2-sigma ring of N(0, I), where every cloud ends up.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {tuple(points.shape)}")
    noise = torch.randn(points.shape, generator=generator, dtype=points.dtype)  # the same ε in every panel
    labels = [label.replace("\n", "  ") for label in _labels_for(ts, s)]
    clouds = {label: q_sample(points, t, s, noise) for t, label in zip(ts, labels, strict=True)}
    title = title or f"A 2-D data set under the {s.name} schedule; dashed: 2σ of N(0, I)"
    return cloud_panels(clouds, title, lim)


def cloud_panels(clouds: Mapping[str, Tensor], title: str, lim: float = 3.0, ring: bool = True) -> Figure:
    """Several 2-D clouds (each (N, 2)) side by side, one panel per entry, titled by its key.

    For clouds you computed yourself, e.g. states of ``markov_chain`` recorded by its
    callback, or chain and closed form next to each other. ``ring`` draws the dashed
    2-sigma circle of N(0, I).

    Lesson: notebooks/01_markov_noising.ipynb
    """
    for name, p in clouds.items():
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"each cloud must have shape (N, 2), got {tuple(p.shape)} for {name!r}")
    fig = Figure(figsize=(2.3 * len(clouds), 2.8), layout="constrained")
    axes = fig.subplots(1, len(clouds), squeeze=False)[0]
    circle = np.linspace(0, 2 * np.pi, 200)
    for ax, (name, points) in zip(axes, clouds.items(), strict=True):
        draw_cloud(ax, points, name, lim)
        if ring:
            ax.plot(2 * np.cos(circle), 2 * np.sin(circle), "k--", lw=0.8)
    axes[0].set_ylabel("$x_2$")
    fig.suptitle(title)
    return fig


def arrow_panels(
    starts: Tensor,
    ends: Mapping[str, Tensor],
    title: str,
    data: Tensor | None = None,
    lim: float = 2.0,
    length: float | None = None,
    label: str = "distance from start to end",
) -> Figure:
    """Arrows from the points ``starts`` (N, 2) towards the matching points of each entry of ``ends`` (each
    (N, 2)), one panel per entry, titled by its key: e.g. from noisy inputs x_t to a network's guesses x̂_0.

    Every arrow has the same ``length`` (default lim/15): it shows the direction. Its colour shows the distance
    to the end point, on one logarithmic scale shared by all panels (the colour bar, titled ``label``).
    ``data`` (M, 2), if given, is drawn underneath in grey with ``draw_cloud``.

    Lesson: notebooks/04_training.ipynb
    """
    if starts.ndim != 2 or starts.shape[1] != 2:
        raise ValueError(f"starts must have shape (N, 2), got {tuple(starts.shape)}")
    if not ends:
        raise ValueError("ends must hold at least one entry {title: (N, 2) end points}")
    for name, end in ends.items():
        if end.shape != starts.shape:
            raise ValueError(f"each entry of ends must have the shape of starts, {tuple(starts.shape)}; "
                             f"got {tuple(end.shape)} for {name!r}")
    if data is not None and (data.ndim != 2 or data.shape[1] != 2):
        raise ValueError(f"data must have shape (M, 2), got {tuple(data.shape)}")
    length = lim / 15 if length is None else length
    p = starts.detach().double().cpu()
    gaps = {name: end.detach().double().cpu() - p for name, end in ends.items()}  # each (N, 2): end - start
    dists = {name: gap.norm(dim=1) for name, gap in gaps.items()}  # each (N,)
    every = torch.cat(list(dists.values()))
    vmax = max(every.max().item(), 1e-12)
    norm = LogNorm(vmin=max(every.min().item(), vmax * 1e-4, 1e-12), vmax=vmax * (1 + 1e-9), clip=True)
    fig = Figure(figsize=(3.0 * len(ends) + 1.0, 3.4), layout="constrained")
    axes = fig.subplots(1, len(ends), squeeze=False)[0]
    for ax, name in zip(axes, ends, strict=True):
        if data is not None:
            draw_cloud(ax, data, name, lim, color="0.75")  # the data first: the arrows lie on top
        else:
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="$x_1$")
            ax.set_title(name, fontsize=9)
        arrow = length * gaps[name] / dists[name].clamp_min(1e-12)[:, None]  # (N, 2): the direction only
        arrows = ax.quiver(p[:, 0], p[:, 1], arrow[:, 0], arrow[:, 1], dists[name], cmap="viridis", norm=norm,
                           angles="xy", scale_units="xy", scale=1, width=0.006, zorder=3)
    axes[0].set_ylabel("$x_2$")
    fig.colorbar(arrows, ax=list(axes), label=label, shrink=0.9)
    fig.suptitle(title)
    return fig


_CURVES = {
    "betas": ("β_t (noise added at step t)", "β_t", "log"),
    "alpha_bars": ("ᾱ_t (signal variance left)", "ᾱ_t", "linear"),
    "log_snr": ("log SNR(t) = log ᾱ_t/(1-ᾱ_t)", "log SNR", "linear"),
}


def schedule_curves(
    schedules: Sequence[NoiseSchedule] | Mapping[str, NoiseSchedule],
    curves: Sequence[str] = ("betas", "alpha_bars", "log_snr"),
    relative: bool = False,
    title: str = "Noise schedules side by side",
) -> Figure:
    """One panel per quantity (β_t, ᾱ_t, log SNR), one line per schedule.

    ``relative=True`` puts t/T on the x axis, to compare schedules with different T.

    Lesson: notebooks/02_noise_schedules.ipynb
    """
    if isinstance(schedules, Mapping):
        items = list(schedules.items())
    else:
        items = [(f"{sc.name} (T={sc.T})", sc) for sc in schedules]
    for c in curves:
        if c not in _CURVES:
            raise ValueError(f"curves must be chosen from {sorted(_CURVES)}, got {c!r}")
    fig = Figure(figsize=(4.2 * len(curves), 3.4), layout="constrained")
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, c in zip(axes, curves, strict=True):
        label, ylabel, yscale = _CURVES[c]
        for name, sc in items:
            x = torch.arange(sc.T) / sc.T if relative else torch.arange(sc.T)
            ax.plot(x, getattr(sc, c), label=name)
        ax.set_yscale(yscale)
        ax.set_title(label, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("t / T" if relative else "step t")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return fig


def compare_histograms(
    samples: Mapping[str, Tensor],
    title: str,
    xlabel: str = "value",
    bins: int = 60,
    normal: tuple[float, float] | None = None,
) -> Figure:
    """Overlaid density histograms of several 1-D sample sets (e.g. chain vs closed form).

    ``normal=(mean, std)`` adds that Gaussian's density as a black line.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.subplots()
    values = {k: v.detach().flatten().float().cpu().numpy() for k, v in samples.items()}
    lo = min(v.min() for v in values.values())
    hi = max(v.max() for v in values.values())
    edges = np.linspace(lo, hi, bins + 1)
    for name, v in values.items():
        ax.hist(v, bins=edges, density=True, histtype="stepfilled", alpha=0.45, label=name)
    if normal is not None:
        mean, std = normal
        grid = np.linspace(lo, hi, 300)
        ax.plot(grid, np.exp(-0.5 * ((grid - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi)),
                "k", lw=1.2, label=f"N({mean:.2f}, {std:.2f}²)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def trajectory_panels(
    paths: Mapping[str, Tensor],
    title: str,
    data: Tensor | None = None,
    lim: float = 2.0,
    show: int = 12,
) -> Figure:
    """Paths of 2-D points, one panel per entry: each entry (S, N, 2) holds S recorded states of N points.

    The end points (the last state) are drawn as a cloud, and the first ``show`` paths as lines from a
    circle (their start) to a cross (their end). ``data`` (M, 2), if given, is drawn underneath in grey.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    if not paths:
        raise ValueError("paths must hold at least one entry {title: (S, N, 2) states}")
    for name, p in paths.items():
        if p.ndim != 3 or p.shape[2] != 2:
            raise ValueError(f"each entry must have shape (S, N, 2), got {tuple(p.shape)} for {name!r}")
    fig = Figure(figsize=(3.2 * len(paths), 3.4), layout="constrained")
    axes = fig.subplots(1, len(paths), squeeze=False)[0]
    for ax, (name, p) in zip(axes, paths.items(), strict=True):
        p = p.detach().float().cpu()
        if data is not None:
            draw_cloud(ax, data, name, lim, color="0.75")
        draw_cloud(ax, p[-1], name, lim)
        for k in range(min(show, p.shape[1])):
            ax.plot(p[:, k, 0], p[:, k, 1], "-", color="C3", lw=0.8, alpha=0.8)
            ax.plot(p[0, k, 0], p[0, k, 1], "o", color="C3", ms=3)
            ax.plot(p[-1, k, 0], p[-1, k, 1], "x", color="k", ms=4)
    axes[0].set_ylabel("$x_2$")
    fig.suptitle(title)
    return fig
