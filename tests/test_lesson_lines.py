"""Every public function and class points back to where the course teaches it (STYLE.md, rule 8):
a ``Lesson: notebooks/NN_name.ipynb`` line, or for the teachers' tools ``Guide: docs/teaching.md``,
naming a file that exists."""

import importlib
import inspect
import pkgutil
import re

import pytest

import diffusion_lessons

MODULES = [m.name for m in pkgutil.iter_modules(diffusion_lessons.__path__) if m.name != "cli"]
POINTER = re.compile(r"^(Lesson|Guide): ((?:notebooks|docs)/\S+\.(?:ipynb|md))$", re.MULTILINE)


def _public(module_name: str) -> list[tuple[str, object]]:
    module = importlib.import_module(f"diffusion_lessons.{module_name}")
    assert hasattr(module, "__all__"), f"{module_name} has no __all__"
    return [(name, obj) for name in module.__all__
            if (inspect.isfunction(obj := getattr(module, name)) or inspect.isclass(obj))
            and obj.__module__ == module.__name__]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_function_and_class_names_its_lesson(module_name, root):
    missing, wrong = [], []
    for name, obj in _public(module_name):
        found = POINTER.findall(inspect.getdoc(obj) or "")
        if not found:
            missing.append(name)
        wrong += [f"{name}: {path}" for kind, path in found
                  if not (root / path).is_file() or (kind == "Lesson") != path.startswith("notebooks/")]
    assert not missing, f"no Lesson:/Guide: line in the docstring of {missing}"
    assert not wrong, f"a Lesson:/Guide: line names no existing file: {wrong}"


def test_the_check_can_fail(root):
    assert POINTER.findall("Lesson: notebooks/01_markov_noising.ipynb")
    assert not POINTER.findall("see lesson 1")
    assert not (root / "notebooks/99_nope.ipynb").is_file()
