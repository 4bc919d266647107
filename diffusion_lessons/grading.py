"""Grading submitted notebooks, assuming a submission may try to cheat or to do harm.

    diffusion-lessons grade submissions/*.ipynb [--chapter NAME] [--timeout 600] [--memory 4] [--csv grades.csv]

For each submission the grader

1. reads it (and every other submission) before anything runs, and checks it is a valid
   notebook; then takes its chapter from the teacher: ``--chapter``, or a chapter name of
   book.toml in the file name (``alice_01_markov_noising.ipynb``), never from the
   submission's own metadata. The exercises are those of the chapter's *lesson* notebook:
   every ``check_<exercise>(fn)`` call whose ``fn`` a solution cell defines;
2. draws each exercise's inputs with a secret seed, in its own process
   (``exercises.make_cases``), and writes them into a fresh temporary folder together with
   a copy of the submission and of the package;
3. starts the submission's *kernel*: a separate Python process (``python -I -B``) working in
   that folder, in a session of its own, with a memory cap (``RLIMIT_DATA``). It runs the
   submission's code cells one by one with IPython (magics and ``display`` work), under a
   time limit for all of them together, counted from its start; a cell that raises does not
   stop it. Then it calls each exercise's function on the grader's inputs
   (``exercises.run_cases``, its own time limit per exercise) and saves what came back as
   plain tensors and numbers (``exercises.encode``);
4. kills the kernel's process group at the end, and any process it started that escaped
   the group (Linux: the grader is a "child subreaper", so escaped processes become its
   children and are killed too);
5. checks that the submission changed none of the package's files, book.toml, the lesson
   notebooks or the other submissions; a changed file is restored from the copy the grader
   read before the run, reported, and the submission scores zero;
6. reads the results back (``torch.load(..., weights_only=True)``: data, never code) and
   judges them with the checkers it imported before any submission ran
   (``exercises.judge``): the expected answers never enter the kernel, and nothing the
   submission does in its own process can change a verdict;
7. reports, per exercise: passed, failed, not implemented, error, missing (no such
   function), timeout or tampered, with the checker's message, each on one sanitised line.

What a grader on the teacher's own machine can and cannot promise. The kernel runs as the
teacher's user, so it can read and write whatever the teacher can. The grader detects and
reverts changes to the course's own files (above), stops runaway time and memory, and
leaves no process of a submission running (on Linux; on macOS there is no subreaper, so a
process that starts its own session escapes). It cannot stop a submission from writing
elsewhere (the virtual environment's other packages, the home folder), from reading files
(the lesson notebooks hold the solutions), from using the network, from killing the grader
itself, or from using more memory in several processes (the cap is per process). Grade
untrusted work in a container with a read-only file system and no network (docs/teaching.md):

    docker build -t diffusion-grader -f docs/grader.Dockerfile .
    docker run --rm --network none --read-only --tmpfs /tmp --memory 8g --pids-limit 512 \\
        -v "$PWD/submissions:/subs:ro" -v "$PWD/out:/out" diffusion-grader \\
        sh -c 'diffusion-lessons grade /subs/*.ipynb --csv /out/grades.csv'
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import io
import json
import os
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unicodedata
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import torch
from nbformat import NotebookNode

from . import exercises as ex
from .book import Book, Chapter, load_book
from .runtime import kernel_env, write_atomic
from .student import Exercise, find_exercises

__all__ = ["CHECK_SECONDS", "MEMORY_GIB", "STATUSES", "Exercise", "ExerciseResult", "Grade", "clean_text",
           "find_exercises", "grade_submission", "grade_submissions", "grades_table", "write_csv"]

STATUSES = ("passed", "failed", "not implemented", "error", "missing", "timeout", "tampered")
CHECK_SECONDS = ex.TIME_LIMIT  # time for one exercise's function on all its cases, as in the notebook's checkers
MEMORY_GIB = 4.0  # memory cap of one kernel (RLIMIT_DATA); every lesson needs under 1.5 GiB (docs/teaching.md)
GRACE_SECONDS = 3.0  # how long past a time limit the grader waits for the kernel to interrupt itself
SUBMISSION_MAX_BYTES = 64 * 2**20  # a notebook larger than this is not read
RUNS_MAX_BYTES = 64 * 2**20  # nor is a results file larger than this
MESSAGE_MAX = 1000  # characters of one message in the CSV (the table shows fewer)
_CHANNEL_MAX_LINE = 64 * 2**10  # a longer line on the kernel's channel is dropped
_CELL_ERRORS_MAX = 200  # cell errors kept per submission


@dataclass(frozen=True)
class ExerciseResult:
    """The verdict on one exercise of one submission.

    Guide: docs/teaching.md
    """

    exercise: Exercise
    status: str  # one of STATUSES
    message: str  # the checker's words, or why it could not run

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class Grade:
    """One submission's grade: a verdict per exercise, its cell errors, time and notes.

    Guide: docs/teaching.md
    """

    submission: Path  # as the teacher named it
    chapter: str | None  # e.g. "01_markov_noising"; None if none was found (see ``error``)
    results: tuple[ExerciseResult, ...]
    cell_errors: tuple[str, ...]  # "cell 12: NameError: ..." for each cell of the submission that raised
    seconds: float  # wall time to run and judge it
    note: str = ""  # e.g. that the time limit was reached, or that its metadata names another chapter
    error: str = ""  # why it was not graded (not a notebook, no chapter); then ``results`` is empty
    tampered: tuple[str, ...] = ()  # files outside its folder that it changed (restored); its score is 0
    memory_gib: float = 0.0  # the kernel's peak data memory as sampled (what ``--memory`` caps); Linux only

    @property
    def score(self) -> int:
        return 0 if self.tampered else sum(r.passed for r in self.results)

    @property
    def total(self) -> int:
        return len(self.results)


class GradingError(ValueError):
    """A submission that cannot be graded (not a notebook, no chapter); the message is one line."""


# ------------------------------------------------------------------ reading the submissions
@dataclass
class _Submission:
    path: Path
    raw: bytes = b""  # the file as read before anything ran
    key: tuple = ()  # its stat key (_key) as read
    nb: NotebookNode | None = None
    chapter: Chapter | None = None
    note: str = ""
    error: str = ""


def _chapter_of(path: Path, nb: NotebookNode, book: Book, chapter: str | None) -> tuple[Chapter, str]:
    """The chapter to grade ``path`` on, from the teacher (``chapter``, else the file name), and a note
    if the submission's own metadata names another one."""
    if chapter is not None:
        found = next(c for c in book.notebooks if c.name == chapter)
    else:
        matches = [c for c in book.notebooks if c.name in path.name]
        if not matches:
            raise GradingError(f"no chapter of book.toml in the file name {path.name!r}: name it like "
                               f"alice_{book.chapters[0].name}.ipynb, or pass --chapter")
        if len(matches) > 1:
            raise GradingError(f"the file name {path.name!r} names several chapters "
                               f"({', '.join(c.name for c in matches)}): pass --chapter")
        found = matches[0]
    meta = nb.metadata.get("diffusion_lessons", {})
    recorded = meta.get("chapter") if isinstance(meta, dict) else None
    note = "" if recorded in (None, "", found.name) else f"its metadata says chapter {str(recorded)!r}"
    return found, note


def _read_submission(path: Path, book: Book, chapter: str | None) -> _Submission:
    sub = _Submission(path)
    try:
        with open(path, "rb") as f:
            sub.raw = f.read(SUBMISSION_MAX_BYTES + 1)
            key = _key(os.stat(f.fileno()))
        if len(sub.raw) > SUBMISSION_MAX_BYTES:
            raise GradingError(f"larger than {SUBMISSION_MAX_BYTES // 2**20} MiB: not read")
        sub.key = key  # read whole: watched, and restored from these bytes if another submission changes it
        sub.nb = nbformat.reads(sub.raw.decode("utf-8"), as_version=4)
        nbformat.validate(sub.nb)
        sub.chapter, sub.note = _chapter_of(path, sub.nb, book, chapter)
    except GradingError as e:
        sub.error = str(e)
    except OSError as e:
        sub.error = f"cannot read it: {e.strerror or e}"
    except Exception as e:  # not UTF-8, not JSON, not a valid notebook
        sub.error = f"not a valid notebook: {type(e).__name__}: {e}"
    return sub


# ------------------------------------------------------------------ the course's files, watched
@dataclass(frozen=True)
class _Entry:
    """A watched path as the grader last read it."""

    kind: str  # "file", "dir", "link" or "other"
    key: tuple  # (mode, size, mtime, ctime, inode, device): the same key, the same file
    data: bytes = b""  # a file's bytes, to compare and to restore it; a link's target, encoded


def _key(info: os.stat_result) -> tuple:
    # ctime changes with every write and cannot be set back by a process that is not root
    return info.st_mode, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev


def _kind(info: os.stat_result) -> str:
    mode = info.st_mode
    return "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


class _Watch:
    """The course's own files (the package, book.toml, the lesson notebooks) and the submissions: kept in
    memory as they were before each run, so that a change made during the run is found and undone.

    A file is read again only if its size, times or inode changed; a file that grew or appeared is never
    read at all (a submission cannot make the grader read a huge file).
    """

    def __init__(self, folders: Sequence[Path], files: Sequence[Path], known: dict[Path, tuple[tuple, bytes]]):
        self.folders, self.files = list(folders), list(files)
        self.entries: dict[Path, _Entry] = {p: _Entry("file", key, data) for p, (key, data) in known.items()}

    def _paths(self) -> list[Path]:
        paths = list(self.files)
        for folder in self.folders:
            paths.append(folder)
            for top, dirs, names in os.walk(folder):  # links are not followed
                paths += [Path(top, name) for name in dirs + names]
        return paths

    def baseline(self) -> None:
        """Read what changed since the last baseline (everything, the first time): the state to restore."""
        entries = {}
        for path in self._paths():
            try:
                info = os.lstat(path)
                old = self.entries.get(path)
                if old is not None and old.key == _key(info):
                    entries[path] = old
                elif _kind(info) == "file":
                    entries[path] = _Entry("file", _key(info), path.read_bytes())
                else:
                    target = os.readlink(path).encode() if _kind(info) == "link" else b""
                    entries[path] = _Entry(_kind(info), _key(info), target)
            except OSError:
                continue
        self.entries = entries

    def changed(self) -> list[Path]:
        """The watched paths that differ from the baseline: changed, gone, or new."""
        found = []
        for path in self._paths():
            old = self.entries.get(path)
            try:
                info = os.lstat(path)
                if old is None:
                    found.append(path)  # new
                elif old.key != _key(info) and (old.kind, old.key[:2]) != (_kind(info), _key(info)[:2]):
                    found.append(path)  # another kind, mode or size
                elif old.key != _key(info) and old.kind == "file" and path.read_bytes() != old.data:
                    found.append(path)  # same size, other bytes
                elif old.key != _key(info) and old.kind == "link" and os.readlink(path).encode() != old.data:
                    found.append(path)
            except OSError:
                found.append(path)
        present = set(self._paths())
        return sorted(set(found) | {p for p in self.entries if p not in present})

    def restore(self, changed: list[Path]) -> list[str]:
        """Put every changed path back as the baseline had it; returns what could not be restored."""
        failed = []
        for path in sorted(changed, key=lambda p: len(p.parts), reverse=True):  # what appeared, deepest first
            if path not in self.entries:
                try:
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                except OSError as e:
                    failed.append(f"{path}: {e.strerror or e}")
        for path in sorted((p for p in changed if p in self.entries), key=lambda p: len(p.parts)):  # folders first
            entry = self.entries[path]
            try:
                if path.is_symlink() or (path.is_dir() and entry.kind != "dir"):
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                elif os.path.lexists(path) and not path.is_dir() and entry.kind == "dir":
                    path.unlink()
                if entry.kind == "dir":
                    path.mkdir(parents=True, exist_ok=True)
                elif entry.kind == "link":
                    os.symlink(entry.data.decode(), path)
                elif entry.kind == "file":
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with open(path, "wb") as f:
                        f.write(entry.data)
                    os.utime(path, ns=(entry.key[2], entry.key[2]))
                if entry.kind != "link":
                    os.chmod(path, stat.S_IMODE(entry.key[0]))
            except OSError as e:
                failed.append(f"{path}: {e.strerror or e}")
        return failed


def _quarantine(changed: list[Path], limit: int = 16 * 2**20, total: int = 64 * 2**20) -> Path:
    """Copy the changed files as the submission left them (up to ``limit`` bytes each, ``total`` in all) into a
    new folder: evidence, and a way back should a person, not the submission, have edited the course."""
    folder = Path(tempfile.mkdtemp(prefix="dl_grade_modified_"))
    for n, path in enumerate(changed[:100]):
        with contextlib.suppress(OSError):
            size = os.lstat(path).st_size
            if path.is_file() and not path.is_symlink() and size <= min(limit, total):
                shutil.copyfile(path, folder / f"{n:03d}_{path.name}")
                total -= size
    (folder / "paths.txt").write_text("".join(f"{n:03d} {path}\n" for n, path in enumerate(changed)))
    return folder


# ------------------------------------------------------------------ processes a submission leaves behind
_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37  # linux/prctl.h


def _set_subreaper(on: bool) -> bool | None:
    """Make this process a child subreaper (Linux): orphans below it become its children, not init's.

    Returns the previous setting, or None where prctl is not available (macOS, Windows).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        previous = ctypes.c_int(0)
        if libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(previous), 0, 0, 0) != 0:
            return None
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
            return None
        return bool(previous.value)
    except (OSError, AttributeError):
        return None


def _children(zombies: bool = True) -> dict[int, int]:
    """This process's children: pid -> start time (clock ticks since boot), read from /proc (Linux);
    ``zombies=False`` leaves out those that have ended but are not reaped yet."""
    me, found = os.getpid(), {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2:].split()  # after "pid (command)": the command may hold spaces
            # fields[0] is the state (Z: ended), fields[1] the parent, fields[19] the start time
            if len(fields) > 19 and int(fields[1]) == me and (zombies or fields[0] != "Z"):
                found[int(entry.name)] = int(fields[19])
    return found


def _end_strays(keep: dict[int, int], seconds: float = 10.0) -> int:
    """SIGKILL every child of this process not in ``keep`` (by pid and start time), and reap it; again and
    again, since the children of a killed process become ours in turn. Returns how many were still running."""
    killed: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        running = {pid for pid, start in _children(zombies=False).items() if keep.get(pid) != start}
        strays = {pid for pid, start in _children().items() if keep.get(pid) != start}
        if not strays:
            break
        killed |= running
        for pid in strays:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in strays:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
    return len(killed)


def _kernel_memory(pid: int) -> float:
    """The process's data memory now (VmData, what RLIMIT_DATA caps), in GiB; 0 where /proc is not there."""
    try:
        with open(f"/proc/{pid}/status") as f:
            line = next(line for line in f if line.startswith("VmData:"))
        return int(line.split()[1]) / 2**20
    except (OSError, StopIteration, ValueError, IndexError):
        return 0.0


# ------------------------------------------------------------------ the kernel
# What runs in the submission's process, as ``python -I -B -c _HARNESS FD``: everything it needs
# (the job, the inputs) is read, and the memory cap set, before the first cell runs. From then on
# nothing in this process is trusted: it only runs, and the grader judges what comes back.
_HARNESS = r'''
import json, os, resource, signal, sys, time

os.set_inheritable(int(sys.argv[1]), False)  # a program the submission starts does not get the channel
channel = os.fdopen(int(sys.argv[1]), "w", buffering=1)  # one JSON object a line, to the grader


def tell(**message):
    try:
        channel.write(json.dumps(message) + "\n")
    except Exception:  # the submission closed the channel: the grader sees the results files alone
        pass


with open("job.json") as f:
    job = json.load(f)
cap = int(job["memory_bytes"])
resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))  # here, not in a preexec_fn: the grader has threads
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
sys.path.insert(0, job["package_path"])  # the copy of the package in this folder; -I left out PYTHONPATH

import torch
from diffusion_lessons import exercises as ex
cases = {e["key"]: ex.decode(torch.load(os.path.join("cases", e["key"] + ".pt"), weights_only=True))
         for e in job["exercises"]}

from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

config = Config()
config.HistoryManager.enabled = False  # no history database in the teacher's home
shell = InteractiveShell.instance(config=config)


class CellTimeout(BaseException):
    pass


armed = False  # True only while a cell runs: the alarm never fires into the harness's own lines


def expire(signum, frame):
    if armed:
        raise CellTimeout("time limit reached")


def describe(error):
    try:
        return (type(error).__name__ + ": " + str(error))[:2000]
    except Exception:
        return type(error).__name__


signal.signal(signal.SIGALRM, expire)
interrupted = None
for index, source in job["cells"]:
    if time.monotonic() >= job["deadline"]:
        interrupted = index
        break
    error = None
    try:
        try:
            signal.signal(signal.SIGALRM, expire)  # again: the last cell may have replaced it
            armed = True
            signal.setitimer(signal.ITIMER_REAL, max(0.01, job["deadline"] - time.monotonic()), 0.5)  # every 0.5 s
            result = shell.run_cell(source, store_history=False)
            error = result.error_before_exec or result.error_in_exec
        finally:
            armed = False
    except CellTimeout as e:  # raised outside the cell's code, or in the finally before it disarmed
        error = e
    if isinstance(error, CellTimeout):
        interrupted = index
        break
    if error is not None:
        tell(cell=index, error=describe(error))
signal.setitimer(signal.ITIMER_REAL, 0)
tell(cells="done", interrupted=interrupted)

os.makedirs("runs", exist_ok=True)
for e in job["exercises"]:
    key, fn = e["key"], shell.user_ns.get(e["function"])
    if not callable(fn):
        tell(missing=key)
        continue
    tell(begin=key)
    try:
        runs = ex.run_cases(e["name"], fn, cases[key], seconds=job["check_seconds"])
        torch.save(ex.encode(runs), os.path.join("runs", key + ".pt.part"))
        os.replace(os.path.join("runs", key + ".pt.part"), os.path.join("runs", key + ".pt"))
        tell(end=key)
    except BaseException as error:
        tell(failed=key, error=describe(error))
tell(done=True)
sys.stdout.flush()
os._exit(0)  # not sys.exit: no atexit handler or thread of the submission's runs after this
'''


@dataclass
class _KernelRun:
    """What the grader saw of one kernel: messages on its channel, and how it ended."""

    cell_errors: list[str] = field(default_factory=list)
    cells_done: bool = False
    interrupted: int | None = None  # the cell at which the kernel stopped itself at the time limit
    missing: set[str] = field(default_factory=set)
    begun: dict[str, float] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    last_event: float = 0.0  # time.monotonic() of the last message that moved the checks on
    killed_in: str = ""  # "cells" or an exercise's key: where the grader had to kill it for time
    exit_code: int | None = None
    memory_gib: float = 0.0


def _on_message(run: _KernelRun, message: object, keys: list[str], now: float) -> None:
    """Record one message from the kernel. The kernel is untrusted: anything malformed is ignored, and a
    forged message can only end its own checks sooner (the grader's deadlines never grow)."""
    if not isinstance(message, dict):
        return
    if "cell" in message and not run.cells_done and len(run.cell_errors) < _CELL_ERRORS_MAX:
        if isinstance(message["cell"], int):
            run.cell_errors.append(f"cell {message['cell'] + 1}: {str(message.get('error'))[:2000]}")
    elif message.get("cells") == "done" and not run.cells_done:
        run.cells_done, run.last_event = True, now
        run.interrupted = message.get("interrupted") if isinstance(message.get("interrupted"), int) else None
    elif run.cells_done:
        for key in ("missing", "begin", "end", "failed"):
            exercise = message.get(key)
            if isinstance(exercise, str) and exercise in keys:
                run.last_event = now
                if key == "missing":
                    run.missing.add(exercise)
                elif key == "begin":
                    run.begun.setdefault(exercise, now)
                elif key == "end":
                    run.ended.add(exercise)
                else:
                    run.failed[exercise] = str(message.get("error"))[:2000]


def _deadline(run: _KernelRun, keys: list[str], start: float, timeout: float, check_seconds: float) -> float:
    """When the grader kills the kernel: the cells' limit, then each exercise's, each plus a grace period;
    never later than all of them together."""
    latest = start + timeout + len(keys) * check_seconds + (len(keys) + 1) * GRACE_SECONDS
    if not run.cells_done:
        return min(latest, start + timeout + GRACE_SECONDS)
    running = [k for k in keys if k in run.begun and k not in run.ended and k not in run.failed]
    if running:
        return min(latest, run.begun[running[0]] + check_seconds + GRACE_SECONDS)
    return min(latest, run.last_event + check_seconds + GRACE_SECONDS)  # between checks: the next should begin


def _run_kernel(workdir: Path, env: dict[str, str], keys: list[str], start: float, timeout: float,
                check_seconds: float) -> _KernelRun:
    """Start the kernel in ``workdir``, follow its channel until it exits or runs out of time, and kill its
    process group. (Its escaped processes are the caller's to end.)"""
    read_fd, write_fd = os.pipe()
    try:
        kernel = subprocess.Popen([sys.executable, "-I", "-B", "-c", _HARNESS, str(write_fd)], cwd=workdir, env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  pass_fds=(write_fd,), start_new_session=True)
    finally:
        os.close(write_fd)
    run, buffer, drop = _KernelRun(), b"", False
    os.set_blocking(read_fd, False)
    try:
        while True:
            now = time.monotonic()
            run.memory_gib = max(run.memory_gib, _kernel_memory(kernel.pid))
            if kernel.poll() is not None:
                chunks = []  # what it wrote before it exited
                with contextlib.suppress(BlockingIOError, OSError):
                    while chunk := os.read(read_fd, 1 << 16):
                        chunks.append(chunk)
                data = b"".join(chunks)
            else:
                deadline = _deadline(run, keys, start, timeout, check_seconds)
                if now >= deadline:
                    run.killed_in = "cells" if not run.cells_done else next(
                        (k for k in keys if k in run.begun and k not in run.ended and k not in run.failed), "checks")
                    break
                ready, _, _ = select.select([read_fd], [], [], min(0.5, deadline - now))
                data = b""
                if ready:
                    try:
                        data = os.read(read_fd, 1 << 16)
                    except BlockingIOError:
                        continue
                    if not data:  # the channel closed: wait for the process itself
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            kernel.wait(timeout=max(0.0, min(0.5, deadline - now)))
                        continue
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not drop:
                    with contextlib.suppress(ValueError, RecursionError):
                        _on_message(run, json.loads(line), keys, time.monotonic())
                drop = False
            if len(buffer) > _CHANNEL_MAX_LINE:
                buffer, drop = b"", True
            if kernel.poll() is not None and not data:
                break
    finally:
        os.close(read_fd)
        with contextlib.suppress(OSError):
            os.killpg(kernel.pid, signal.SIGKILL)  # its whole group; the group outlives a dead leader
        run.exit_code = kernel.wait()
    return run


def _read_runs(path: Path) -> object:
    """A results file as plain data: a regular file, no larger than ``RUNS_MAX_BYTES``, a zip archive with
    nothing compressed (no zip bomb), loaded with ``weights_only=True`` (no code runs)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > RUNS_MAX_BYTES:
            raise ValueError("not a regular file of a reasonable size")
        data = f.read(RUNS_MAX_BYTES + 1)
    if len(data) > RUNS_MAX_BYTES:
        raise ValueError("too large")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = archive.infolist()
        if any(e.compress_type != zipfile.ZIP_STORED for e in entries) or \
                sum(e.file_size for e in entries) > RUNS_MAX_BYTES:
            raise ValueError("compressed or too large")
    return torch.load(io.BytesIO(data), weights_only=True)


def _verdict(exercise: Exercise, key: str, cases: list[tuple] | None, workdir: Path, run: _KernelRun,
             check_seconds: float) -> ExerciseResult:
    """One exercise's result: judged from its results file, else why there is none."""
    name = exercise.name
    if cases is None:
        return ExerciseResult(exercise, "error", f"diffusion_lessons.exercises has no checker for {name}")
    path = workdir / "runs" / f"{key}.pt"
    if os.path.lexists(path):
        try:
            runs = ex.decode(_read_runs(path))
        except Exception as e:
            return ExerciseResult(exercise, "failed", f"the function's results could not be read back "
                                                      f"({type(e).__name__})")
        result = ex.judge(name, cases, runs)
        status = result.status if result.status in STATUSES else "failed"
        return ExerciseResult(exercise, status, result.message)
    if key in run.missing:
        return ExerciseResult(exercise, "missing", f"the notebook defines no function {exercise.function}")
    if run.killed_in == key:
        return ExerciseResult(exercise, "timeout", f"the function ran past the check's limit of {check_seconds:g} s "
                                                   "and could not be interrupted")
    if run.killed_in:
        where = "its cells" if run.killed_in == "cells" else "an earlier check"
        return ExerciseResult(exercise, "timeout", f"not checked: {where} ran past the time limit and could not be "
                                                   "interrupted")
    if key in run.failed:
        return ExerciseResult(exercise, "error", f"the grader could not run it: {run.failed[key]}")
    return ExerciseResult(exercise, "error", "not checked: the kernel ended before this check (exit code "
                                             f"{run.exit_code}: out of memory, a crash, or the submission ended it)")


def _remove_tree(path: Path) -> None:
    """``shutil.rmtree``, also where the submission took away its own write permission."""
    def retry(function, target, _):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
            function(target)

    shutil.rmtree(path, onexc=retry) if sys.version_info >= (3, 12) else shutil.rmtree(path, onerror=retry)


# ------------------------------------------------------------------ grading
def _installed_package() -> Path:
    """The diffusion_lessons folder this grader runs from: the kernels get a copy of it, and it is watched."""
    return Path(ex.__file__).resolve().parent


def grade_submissions(
    paths: Sequence[str | Path],
    book: Book | None = None,
    *,
    chapter: str | None = None,  # grade every submission as this chapter; default: from each file name
    timeout: float = 600.0,  # seconds for one submission's cells, all together, from its kernel's start
    check_seconds: float = CHECK_SECONDS,  # seconds for one exercise's function on all its inputs
    memory_gib: float = MEMORY_GIB,  # memory cap of one kernel process (RLIMIT_DATA)
    budget: str = "smoke",  # the lessons' budget in the kernel: "smoke" (short runs, as in CI) or "learner"
    package: str | Path | None = None,  # the diffusion_lessons folder the kernels copy (default: this one)
    on_start: Callable[[Path], None] | None = None,  # called before each submission runs (progress)
) -> list[Grade]:
    """Grade each submission in turn, one kernel at a time; see the module's docstring for the steps.

    Every submission is read before any of them runs, and the exercises' checkers were imported
    before too, so no submission can change what another is graded on or with.

    Guide: docs/teaching.md
    """
    book = load_book() if book is None else book
    if chapter is not None and chapter not in {c.name for c in book.notebooks}:
        raise ValueError(f"chapter must be one of {[c.name for c in book.notebooks]}, got {chapter!r}")
    for name, value in [("timeout", timeout), ("check_seconds", check_seconds), ("memory_gib", memory_gib)]:
        if not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if budget not in ("smoke", "learner"):
        raise ValueError(f"budget must be 'smoke' or 'learner', got {budget!r}")
    package = _installed_package() if package is None else Path(package).resolve()
    if not (package / "exercises.py").is_file():
        raise ValueError(f"package must be the diffusion_lessons folder, got {package}")

    submissions = [_read_submission(Path(p), book, chapter) for p in paths]  # all of them, before any runs
    lessons = {c.name: find_exercises(nbformat.read(book.root / c.notebook, as_version=4))
               for c in {s.chapter for s in submissions if s.chapter is not None}}
    readable = [s for s in submissions if s.key]
    watched_files = list(dict.fromkeys(p.resolve() for p in [book.root / "book.toml",
                                                              *(book.root / c.notebook for c in book.notebooks),
                                                              *(s.path for s in readable)]))
    watch = _Watch([package], watched_files, {s.path.resolve(): (s.key, s.raw) for s in readable})
    previous = _set_subreaper(True)
    try:
        grades = []
        for sub in submissions:
            if on_start is not None:
                on_start(sub.path)
            if sub.error or sub.chapter is None:
                grades.append(Grade(sub.path, None, (), (), 0.0, sub.note, sub.error or "no chapter"))
                continue
            grades.append(_grade_one(sub, lessons[sub.chapter.name], package, watch, timeout=timeout,
                                     check_seconds=check_seconds, memory_gib=memory_gib, budget=budget))
    finally:
        if previous is not None:
            _set_subreaper(previous)
    return grades


def _grade_one(sub: _Submission, exercises: list[Exercise], package: Path, watch: _Watch, *,
               timeout: float, check_seconds: float, memory_gib: float, budget: str) -> Grade:
    """Run one submission in its own folder and kernel, end its processes, check the course's files, judge."""
    began = time.monotonic()
    keys = [f"{n}_{e.name}" for n, e in enumerate(exercises)]  # a lesson may check one exercise twice
    # drawn here, with a secret seed: the kernel gets the inputs, never the answers
    cases = {k: ex.make_cases(e.name, secrets.randbits(63)) if e.name in ex.EXERCISES else None
             for k, e in zip(keys, exercises, strict=True)}
    planned = [(k, e) for k, e in zip(keys, exercises, strict=True) if cases[k] is not None]
    watch.baseline()  # after the grader's own imports: it writes none of these files from here
    workdir = Path(tempfile.mkdtemp(prefix="dl_grade_"))
    try:
        (workdir / "submission.ipynb").write_bytes(sub.raw)
        shutil.copytree(package, workdir / "lib" / "diffusion_lessons")
        (workdir / "cases").mkdir()
        for k, _ in planned:
            torch.save(ex.encode(cases[k]), workdir / "cases" / f"{k}.pt")
        start = time.monotonic()
        job = {"cells": [[i, c.source] for i, c in enumerate(sub.nb.cells) if c.cell_type == "code"],
               "exercises": [{"key": k, "name": e.name, "function": e.function} for k, e in planned],
               "deadline": start + timeout, "check_seconds": check_seconds,
               "memory_bytes": int(memory_gib * 2**30), "package_path": str(workdir / "lib")}
        (workdir / "job.json").write_text(json.dumps(job))
        keep = _children()
        run = _run_kernel(workdir, kernel_env(budget), [k for k, _ in planned], start, timeout, check_seconds)
        strays = _end_strays(keep)
        changed = watch.changed()
        evidence = _quarantine(changed) if changed else None
        unrestored = watch.restore(changed)
        results = tuple(_verdict(e, k, cases[k], workdir, run, check_seconds)
                        for k, e in zip(keys, exercises, strict=True))
    finally:
        _remove_tree(workdir)
    notes = [sub.note] if sub.note else []
    if run.interrupted is not None:
        notes.append(f"the time limit of {timeout:g} s was reached in cell {run.interrupted + 1}")
    elif run.killed_in == "cells":
        notes.append(f"the time limit of {timeout:g} s was reached and the kernel had to be killed")
    if strays:
        notes.append(f"{strays} process(es) it started were still running: killed")
    if changed:
        shown = ", ".join(str(p) for p in changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        notes.append(f"it modified {shown}: restored (its versions kept in {evidence}), and its marks are withdrawn")
        results = tuple(ExerciseResult(r.exercise, "tampered", f"the submission modified {shown} (restored)")
                        for r in results)
    if unrestored:
        notes.append(f"COULD NOT RESTORE {'; '.join(unrestored)}")
    return Grade(sub.path, sub.chapter.name, results, tuple(run.cell_errors), time.monotonic() - began,
                 "; ".join(notes), tampered=tuple(str(p) for p in changed), memory_gib=run.memory_gib)


def grade_submission(path: str | Path, book: Book | None = None, timeout: float = 600.0, budget: str = "smoke",
                     **options: object) -> Grade:
    """Grade one submission: ``grade_submissions([path], ...)[0]`` (same options).

    Guide: docs/teaching.md
    """
    return grade_submissions([path], book, timeout=timeout, budget=budget, **options)[0]


# ------------------------------------------------------------------ reporting
def clean_text(text: object, limit: int = MESSAGE_MAX) -> str:
    """One printable line of at most ``limit`` characters: control, format (e.g. bidi overrides) and
    separator characters become spaces, runs of spaces one space. A submission's words cannot forge a row.

    Guide: docs/teaching.md
    """
    chars = (" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in str(text))
    line = " ".join("".join(chars).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


_SHORT = {"passed": "pass", "failed": "FAIL", "not implemented": "FAIL: not done", "error": "FAIL: error",
          "missing": "FAIL: missing", "timeout": "FAIL: timeout", "tampered": "FAIL: tampered"}


def grades_table(grades: list[Grade], width: int = 70) -> str:
    """A plain-text table: one row per exercise of each submission, then its score; every cell one line.

    Guide: docs/teaching.md
    """
    rows = [("submission", "exercise (function)", "result", "why")]
    for g in grades:
        name = clean_text(g.submission, 200)
        if g.error:
            rows.append((name, "(not graded)", "", clean_text(g.error, width)))
            continue
        if not g.results:
            rows.append((name, "(no exercises found)", "", clean_text(g.chapter or "", width)))
        for n, r in enumerate(g.results):
            rows.append((name if n == 0 else "", clean_text(r.exercise, 100), _SHORT.get(r.status, "FAIL"),
                         "" if r.passed else clean_text(r.message, width)))
        extra = f", {g.memory_gib:.1f} GiB" if g.memory_gib else ""
        extra += f"; {len(g.cell_errors)} cell(s) raised" if g.cell_errors else ""
        extra += f"; {g.note}" if g.note else ""
        rows.append(("", "score", f"{g.score}/{g.total}", clean_text(f"{g.seconds:.0f} s{extra}", 2 * width)))
        rows += [("", "", "TAMPERED", clean_text(f"modified {path} (restored)", 300)) for path in g.tampered]
        for error in g.cell_errors[:3]:
            rows.append(("", "", "", clean_text(error, width)))
        if len(g.cell_errors) > 3:
            rows.append(("", "", "", f"... and {len(g.cell_errors) - 3} more"))
    widths = [max(len(row[k]) for row in rows) for k in range(3)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 3)
    return "\n".join(line.rstrip() for line in lines)


def _csv_field(value: object) -> str:
    """A CSV field: one clean line, and not a formula a spreadsheet would run (=, +, -, @ first)."""
    text = clean_text(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def write_csv(grades: list[Grade], path: str | Path) -> None:
    """One row per exercise of each submission (one row for a submission not graded), for a spreadsheet.

    Guide: docs/teaching.md
    """
    out = io.StringIO(newline="")
    rows = csv.writer(out)
    rows.writerow(["submission", "chapter", "exercise", "function", "status", "passed", "message"])
    for g in grades:
        if g.error:
            rows.writerow([_csv_field(g.submission), "", "", "", "not graded", 0, _csv_field(g.error)])
        for r in g.results:
            rows.writerow([_csv_field(g.submission), g.chapter or "", r.exercise.name, r.exercise.function, r.status,
                           int(r.passed and not g.tampered), _csv_field(r.message)])
    write_atomic(path, lambda f: f.write(out.getvalue().encode("utf-8")))
