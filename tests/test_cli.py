import subprocess
import sys

from diffusion_lessons.cli import main


def test_lessons_lists_the_chapters(root, capsys, monkeypatch):
    monkeypatch.chdir(root)
    assert main(["lessons"]) == 0
    out = capsys.readouterr().out
    assert "Diffusion Lessons" in out and "01_markov_noising.ipynb" in out and "min on CPU" in out


def test_quiz_hides_answers_unless_asked(capsys):
    assert main(["quiz", "01_markov_noising"]) == 0
    hidden = capsys.readouterr().out
    assert "**Q1**" in hidden and "*Answer:*" not in hidden
    assert main(["quiz", "01_markov_noising", "--answers"]) == 0
    assert "*Answer:*" in capsys.readouterr().out


def test_errors_are_clear(capsys):
    assert main(["quiz", "nope"]) == 2
    assert "error: name must be one of" in capsys.readouterr().err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "diffusion_lessons.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "lessons" in out.stdout
