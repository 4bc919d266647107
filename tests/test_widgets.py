import pytest
import torch

from diffusion_lessons import NoiseSchedule, toy_2d
from diffusion_lessons.widgets import noising_slider

pytest.importorskip("ipywidgets")
S = NoiseSchedule.cosine(T=50)


def _texts(fig) -> str:
    """Every title and suptitle of a figure, joined."""
    titles = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
    return " ".join(titles)


@pytest.mark.parametrize("x0", [torch.zeros(3, 1, 8, 8), torch.zeros(1, 8, 8), toy_2d("moons", n=50)])
def test_slider_spans_every_step_and_redraws(x0, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, *args, **kwargs: shown.append(obj))
    widget = noising_slider(x0, S, t=5)
    slider = widget.children[0]
    assert (slider.min, slider.max, slider.value) == (0, S.T - 1, 5)
    assert "t=5 " in _texts(shown[-1])  # the first drawing, at the slider's start
    slider.value = S.T - 1  # redraws through the same q_sample, with the caption of the new step
    widget.update()
    assert f"t={S.T - 1} " in _texts(shown[-1]) and f"ᾱ_t={S.alpha_bars[-1].item():.3f}" in _texts(shown[-1])


def test_slider_rejects_non_images():
    with pytest.raises(ValueError, match="x0 must have shape"):
        noising_slider(torch.zeros(4, 5), S)
