"""Interactive explorers for Jupyter, built on the same functions the lessons use.

Lesson: notebooks/01_markov_noising.ipynb

ipywidgets is imported only when a widget is built, so the package works without it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .data import check_images
from .noising import q_sample
from .plotting import draw_cloud, image_grid
from .schedules import NoiseSchedule

__all__ = ["noising_slider"]


def noising_slider(x0: Tensor, s: NoiseSchedule, t: int = 0, seed: int = 0, ncols: int = 8):
    """A slider over t that redraws x0 noised to step t (``q_sample``, fixed noise).

    x0 is a batch of images (B, C, H, W), one image (C, H, W) or 2-D points (N, 2).
    The readout shows ᾱ_t and the SNR, so learners can tie the picture to the numbers.
    Returns the ipywidgets container; display it (it is the cell's value).

    Lesson: notebooks/01_markov_noising.ipynb
    """
    import ipywidgets as w
    from IPython.display import display

    points = x0.ndim == 2 and x0.shape[1] == 2
    if not points:
        x0 = check_images(x0.unsqueeze(0) if x0.ndim == 3 else x0, "x0")
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed), dtype=x0.dtype)

    def draw(t: int) -> None:
        x_t = q_sample(x0, t, s, noise)
        caption = f"t={t}   ᾱ_t={s.alpha_bars[t].item():.3f}   SNR={s.snr[t].item():.3g}"
        if points:
            from matplotlib.figure import Figure

            fig = Figure(figsize=(3.6, 3.6), layout="constrained")
            draw_cloud(fig.subplots(), x_t, caption, lim=3.0)
        else:
            fig = image_grid(x_t, ncols=ncols, title=caption)
        display(fig)

    slider = w.IntSlider(value=t, min=0, max=s.T - 1, step=1, description="t",
                         continuous_update=False, layout=w.Layout(width="60%"))
    return w.interactive(draw, t=slider)
