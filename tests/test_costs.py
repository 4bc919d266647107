import math

import pytest

from diffusion_lessons.costs import LARGE_MODELS, course_training_runs, energy_wh
from diffusion_lessons.pretrained import PRETRAINED, WEIGHTS_DIR, pretrained


def test_every_shipped_weights_file_has_its_training_run():
    runs = {r.name: r for r in course_training_runs()}
    assert set(runs) == {p.name for p in WEIGHTS_DIR.glob("*.pt")}  # a new weights file must say what it cost
    assert all(r.seconds > 0 and r.parameters > 0 and r.machine for r in runs.values())
    for name, file in PRETRAINED.items():  # the cards' parameter counts are the models' own
        model = pretrained(name).model
        assert runs[file].parameters == sum(p.numel() for p in model.parameters()), name
    assert runs["mnist_unet.pt"].seconds == pytest.approx(83.3 * 60)  # the card's 83.3 minutes


def test_energy_is_time_times_power():
    assert energy_wh(3600, 15) == 15 and energy_wh(90, 40) == pytest.approx(1.0) and energy_wh(0, 15) == 0


@pytest.mark.parametrize("seconds, watts, name", [(-1, 15, "seconds"), (10, math.nan, "watts"), ("1 h", 15, "seconds"),
                                                  (10, math.inf, "watts")])
def test_energy_rejects_what_is_not_a_time_or_a_power(seconds, watts, name):
    with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
        energy_wh(seconds, watts)


def test_large_models_carry_their_sources():
    assert all(m.source and m.parameters > 1e8 for m in LARGE_MODELS)
    sd = LARGE_MODELS[0]
    assert sd.gpu_hours * sd.gpu_watts / 1e6 == pytest.approx(37.5)  # MWh: the lesson's figure
