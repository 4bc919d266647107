import pytest
import torch

from diffusion_lessons.runtime import budget, default_device, is_smoke


def test_budget_switch(monkeypatch):
    monkeypatch.delenv("DIFFUSION_LESSONS_BUDGET", raising=False)
    assert not is_smoke() and budget(2000, 50) == 2000
    monkeypatch.setenv("DIFFUSION_LESSONS_BUDGET", "smoke")
    assert is_smoke() and budget(2000, 50) == 50
    monkeypatch.setenv("DIFFUSION_LESSONS_BUDGET", "fast")
    with pytest.raises(ValueError, match="must be 'learner' or 'smoke'"):
        budget(1, 2)


def test_default_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert default_device() == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")


def test_cpu_name_names_the_processor():
    from diffusion_lessons.runtime import cpu_name

    name = cpu_name()
    assert isinstance(name, str) and name.strip() and "\n" not in name
