import pytest
import torch

from diffusion_lessons import NoiseSchedule, toy_2d
from diffusion_lessons.widgets import noising_slider

pytest.importorskip("ipywidgets")
S = NoiseSchedule.cosine(T=50)


@pytest.mark.parametrize("x0", [torch.zeros(3, 1, 8, 8), torch.zeros(1, 8, 8), toy_2d("moons", n=50)])
def test_slider_spans_every_step_and_redraws(x0):
    widget = noising_slider(x0, S, t=5)
    slider = widget.children[0]
    assert (slider.min, slider.max, slider.value) == (0, S.T - 1, 5)
    slider.value = S.T - 1  # redraws through the same q_sample; must not raise
    widget.update()
    assert widget.result is None


def test_slider_rejects_non_images():
    with pytest.raises(ValueError, match="x0 must be a tensor of shape"):
        noising_slider(torch.zeros(4, 5), S)
