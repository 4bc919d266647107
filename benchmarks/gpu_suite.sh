#!/usr/bin/env bash
# The GPU suite (issue 12): everything worth running the moment a GPU machine is at hand, in one command.
#
#     bash benchmarks/gpu_suite.sh [--dry-run] [--out DIR] [--tar PATH] [--wheels DIR] [--budget-s N]
#
# Steps (each on its own time budget, each recorded whatever the others do):
#   cuda_tests              python -m pytest -m cuda tests/  (the tests a CPU skips)
#   train_mnist             the shipped MNIST model at full size (8000 steps, batch 128), beside cuda_tests
#   export_mnist            its EMA weights + card (python -m diffusion_lessons.pretrained), loaded back with
#                           pretrained(), sampled (DPM-Solver++ 20 steps, guidance 3) and scored by the classifier
#   throughput_eager        train_throughput.py, cifar and mnist, ours vs diffusers' twin, bf16
#   throughput_eager_ema    cifar with torch's AveragedModel EMA (--ema averaged-model), against train()'s
#   throughput_compile      cifar and mnist with --compile
#   train_emoji             lesson 10's text-to-emoji DiT at its "large" size (256 tokens, ~23M parameters), 500
#                           steps of batch 256: images/s and the loss (benchmarks/train_emoji.py)
#   throughput_cudagraphs   cifar with --compile-mode reduce-overhead, if time is left
# Outputs, written as each step ends, under --out (default benchmarks/results/gpu_suite/<UTC time>):
# STEP.json and STEP.log per step, summary.json (machine, torch, commit, each step's status and seconds),
# and with --tar PATH a .tar.gz of it all (checkpoints left out), rewritten after every step.
# Exit status: 0 when no step failed or ran out of time (skipped for a missing GPU or diffusers is fine),
# 1 otherwise.
#
# Python: $PYTHON, else the first of `python`, `python3` on PATH that imports torch. The repository
# needs no install: its root goes on PYTHONPATH. Wheels in --wheels (default .whl/, from
# benchmarks/gpu_wheels.sh) whose packages are not importable are installed into a temporary folder
# first (nothing can be downloaded there).
# The whole run keeps within --budget-s (default 540 s: 9 minutes); a step that would start with less
# than 15 s left is skipped. GIT_COMMIT=<sha> names the commit where the tree has no .git.
#
# --dry-run: every step on the CPU at toy sizes (20 training steps of batch 16, throughput at batch 2 with
# 2 steps, the compiled steps traced with the aot_eager backend), so tests/test_gpu_suite.py can run it.
set -uo pipefail
{  # read whole before it runs: editing this file during a run cannot change that run
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dry=0 out="" tar="" wheels="$root/.whl" budget=""
while (($#)); do
    case "$1" in
        --dry-run) dry=1 ;;
        --out) out="$2"; shift ;;
        --tar) tar="$2"; shift ;;
        --wheels) wheels="$2"; shift ;;
        --budget-s) budget="$2"; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_suite.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
PY="${PYTHON:-}"
if [ -z "$PY" ]; then  # the first of python, python3 on PATH that has torch
    for candidate in python python3; do
        if command -v "$candidate" > /dev/null && "$candidate" -c 'import torch' 2> /dev/null; then
            PY="$(command -v "$candidate")"; break
        fi
    done
fi
[ -n "$PY" ] || { echo "gpu_suite.sh: no python (or python3) with torch on PATH; set PYTHON" >&2; exit 2; }
budget="${budget:-$([ $dry = 1 ] && echo 900 || echo 540)}"
start=$(date +%s)
deadline=$((start + budget))
out="${out:-$root/benchmarks/results/gpu_suite/$(date -u +%Y-%m-%dT%H%M%SZ)}"
mkdir -p "$out" && out="$(cd "$out" && pwd)" || exit 2
if [ -n "$tar" ]; then mkdir -p "$(dirname "$tar")" && tar="$(cd "$(dirname "$tar")" && pwd)/$(basename "$tar")"; fi
cd "$root" || exit 2
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export GIT_COMMIT="${GIT_COMMIT:-$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)}"

# --- the helper that writes the JSON ------------------------------------------------------------------
helper="$(mktemp "${TMPDIR:-/tmp}/gpu_suite_helper.XXXXXX")"
site=""
trap 'rm -rf "$helper" ${site:+"$site"}' EXIT  # the helper and the wheels' temporary install
cat > "$helper" <<'PYEOF'
"""JSON for gpu_suite.sh: init (summary.json), record (STEP.json + summary.json), export (the MNIST model)."""
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

STEPS = ["cuda_tests", "train_mnist", "export_mnist", "throughput_eager", "throughput_eager_ema",
         "throughput_compile", "train_emoji", "throughput_cudagraphs"]


def write(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {"results": data}
    except (OSError, ValueError):
        return {}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def machine() -> dict:
    import torch

    info = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "gpu": None, "nvidia_smi": None}
    try:
        from diffusion_lessons.runtime import cpu_name
        info["cpu"] = cpu_name()
    except Exception as e:  # the suite records what it can
        info["cpu"] = f"unknown ({type(e).__name__})"
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    for name in ("diffusers", "mlxtend"):
        try:
            info[name] = __import__(name).__version__
        except Exception:
            info[name] = None
    return info


def init(out: Path, dry_run: str, budget: str) -> None:
    write(out / "summary.json", {
        "suite": "benchmarks/gpu_suite.sh", "dry_run": dry_run == "1", "started": now(), "finished": None,
        "git_commit": os.environ.get("GIT_COMMIT", "unknown"), "budget_s": int(budget), "machine": machine(),
        "steps": [{"name": n, "status": "pending"} for n in STEPS]})


def pytest_counts(xml: Path) -> dict:
    """tests, failures, errors, skipped from pytest's JUnit XML; the names of what failed, the skip reasons."""
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failed_tests"], reasons = [], set()
    for case in suite.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed_tests"].append(name)
        skip = case.find("skipped")
        if skip is not None:
            reasons.add(skip.get("message", ""))
    counts["skip_reasons"] = sorted(reasons)
    return counts


def record(out: Path, name: str, rc: str, seconds: str, budget: str, log: str, *command: str) -> None:
    path = out / f"{name}.json"
    data = load(path)  # what the step wrote itself (train_throughput.py --json, the export), if anything
    rc_int = int(rc)
    status = "ok" if rc_int == 0 else "timeout" if rc_int in (124, 137) else "failed"
    if rc_int == -1:
        status = f"skipped: {command[0]}"
        command = ()
    if name == "cuda_tests" and (out / "cuda_tests.xml").is_file():
        data["pytest"] = counts = pytest_counts(out / "cuda_tests.xml")
        if status == "ok" and counts["tests"] and counts["skipped"] == counts["tests"]:
            status = "skipped: " + "; ".join(counts["skip_reasons"] or ["every test skipped"])
    if rc_int == 5 and name == "cuda_tests":
        status = "failed: no test is marked cuda"
    step = {"status": status, "rc": None if rc_int == -1 else rc_int, "seconds": round(float(seconds), 1),
            "budget_s": int(budget), "log": log or None, "command": " ".join(command) or None, "ended": now()}
    data["suite_step"] = step
    write(path, data)
    summary_path = out / "summary.json"
    summary = load(summary_path)
    for entry in summary.get("steps", []):
        if entry["name"] == name:
            entry.clear()
            entry.update(name=name, json=path.name, **{k: step[k] for k in ("status", "seconds", "rc", "budget_s")})
    summary["updated"] = now()
    write(summary_path, summary)
    print(f"[gpu_suite] {name}: {status} in {step['seconds']:.0f} s (budget {budget} s)", flush=True)


def finish(out: Path) -> int:
    summary = load(out / "summary.json")
    optional = {"throughput_cudagraphs"}  # run in the time left over: no time left is no failure
    bad = [s["name"] for s in summary["steps"] if s["status"] == "timeout" or s["status"].startswith("failed")
           or (s["status"].startswith("skipped: out of time") and s["name"] not in optional)]
    summary.update(finished=now(), failed_steps=bad)
    write(out / "summary.json", summary)
    for s in summary["steps"]:
        print(f"  {s['name']:<22} {s['status']}" + (f"  ({s['seconds']:.0f} s)" if "seconds" in s else ""))
    return 1 if bad else 0


def export(out: Path, dry_run: str, train_command: str) -> None:
    """Export the trained model with a card, load it back with pretrained(), sample and score it."""
    import torch

    import diffusion_lessons as dl
    from diffusion_lessons import metrics
    from diffusion_lessons.sampling import dpm_solver_sample
    from diffusion_lessons.training import load_checkpoint
    from diffusion_lessons.unet import UNet, UNetConfig

    ckpt_path = out / "train_mnist" / "checkpoint.pt"
    if not ckpt_path.is_file():
        sys.exit(f"no checkpoint at {ckpt_path}: train_mnist wrote none")
    trained = load(out / "train_mnist.json")
    info = machine()
    card = {
        "command": train_command.replace(str(out), "OUT").replace(sys.executable, "python"),
        "export": "python -m diffusion_lessons.pretrained OUT/train_mnist/checkpoint.pt OUT/mnist_unet.pt "
                  "OUT/mnist_card.json --weights ema",
        "machine": f"{info['gpu'] or 'CPU ' + str(info.get('cpu'))}, torch {info['torch']}"
                   + (f", CUDA {info['cuda']}" if info["gpu"] else ""),
        "date": now(),
        "made_by": "benchmarks/gpu_suite.sh" + (" --dry-run (toy size: not a model to ship)" if dry_run == "1" else ""),
        "git_commit": os.environ.get("GIT_COMMIT", "unknown"),
        "training_status": trained.get("suite_step", {}).get("status"),
        "training_wall_time_min": round(trained.get("suite_step", {}).get("seconds", float("nan")) / 60, 2),
        "training_note": "trained while the suite's CUDA tests ran beside it on the same machine",
        "final_loss": trained.get("final_loss"), "images_per_second": trained.get("images_per_second"),
    }
    (out / "mnist_card.json").write_text(json.dumps(card, indent=2) + "\n")
    subprocess.run([sys.executable, "-m", "diffusion_lessons.pretrained", str(ckpt_path), str(out / "mnist_unet.pt"),
                    str(out / "mnist_card.json"), "--weights", "ema"], check=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    p = dl.pretrained(out / "mnist_unet.pt", device=device)
    ckpt = load_checkpoint(ckpt_path)
    raw = UNet(UNetConfig(**ckpt.model_config))
    raw.load_state_dict(ckpt.model)
    raw = raw.eval().requires_grad_(False).to(device)
    n = 10 if dry_run == "1" else 500
    y = torch.arange(n, device=device) % 10
    scores = {}
    for weights, model in (("ema", p.model), ("raw", raw)):
        x_T = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
        images = dpm_solver_sample(model, x_T, p.schedule, steps=20, y=y, guidance=3.0).cpu()
        scores[weights] = {"label_agreement_guidance_3": metrics.label_agreement(images, y.cpu())}
        if weights == "ema":
            from diffusion_lessons.plotting import image_grid
            image_grid(images[:50], ncols=10, col_labels=[f"asked {d}" for d in range(10)],
                       title="exported EMA weights: DPM-Solver++(2M) 20 steps, guidance 3").savefig(
                out / "mnist_samples.png", dpi=80)
    data = {"weights": "mnist_unet.pt", "megabytes": round((out / "mnist_unet.pt").stat().st_size / 1e6, 2),
            "steps": ckpt.step, "parameters": sum(t.numel() for t in p.model.parameters()), "card": p.card,
            "eval": {"sampler": f"DPM-Solver++(2M), 20 steps, guidance 3, N={n} labels arange(N) % 10, seed 0",
                     **scores}}
    write(out / "export_mnist.json", data)
    print(json.dumps(data["eval"], indent=2))


if __name__ == "__main__":
    command, out, *rest = sys.argv[1:]
    if command == "init":
        init(Path(out), *rest)
    elif command == "record":
        record(Path(out), *rest)
    elif command == "finish":
        sys.exit(finish(Path(out)))
    elif command == "export":
        export(Path(out), *rest)
PYEOF

# --- the machinery: run a step on its budget, record it, refresh the tarball --------------------------
update_tar() {  # the whole output folder but checkpoints, replaced atomically: a stopped run keeps the last
    [ -n "$tar" ] || return 0
    local tmp="$tar.$BASHPID.tmp"
    tar -czf "$tmp" -C "$(dirname "$out")" --exclude='checkpoint.pt' --exclude='*.tmp' \
        --exclude="$(basename "$tar")" "$(basename "$out")" 2>/dev/null && mv -f "$tmp" "$tar"
}
record() { "$PY" "$helper" record "$out" "$@"; update_tar; }
skip_step() { record "$1" -1 0 0 "" "$2"; }
run_step() {  # run_step NAME BUDGET_S COMMAND...: at most BUDGET_S seconds, and never past the deadline
    local name="$1" want="$2"; shift 2
    local left=$((deadline - $(date +%s)))
    local limit=$((want < left ? want : left))
    if ((limit < 15)); then skip_step "$name" "out of time (${left} s left of --budget-s $budget)"; return; fi
    echo "[gpu_suite] $name: up to ${limit} s: $*"
    local t0 t1 rc
    t0=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    record "$name" "$rc" "$(awk "BEGIN {print $t1 - $t0}")" "$limit" "$name.log" "$@"
}

# --- set-up: wheels for what is missing, then the machine into summary.json ---------------------------
if [ -n "$wheels" ] && compgen -G "$wheels/*.whl" > /dev/null; then
    missing=()
    for w in "$wheels"/*.whl; do
        pkg="$(basename "$w")"; pkg="${pkg%%-*}"
        "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)' "$pkg" \
            || missing+=("$w")
    done
    if ((${#missing[@]})); then
        site="$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite_site.XXXXXX")"
        echo "[gpu_suite] installing ${missing[*]##*/} into $site"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
            "${missing[@]}" > "$out/setup.log" 2>&1 && export PYTHONPATH="$PYTHONPATH:$site" \
            || echo "[gpu_suite] wheel install failed: see $out/setup.log"
    fi
fi
"$PY" "$helper" init "$out" "$dry" "$budget" || { echo "gpu_suite.sh: $PY cannot import torch?" >&2; exit 2; }
has_diffusers() { "$PY" -c 'import diffusers' > /dev/null 2>&1; }

if ((dry)); then
    export OMP_NUM_THREADS=1  # one thread per process: the two branches share a small, often busy CPU
    size=(--steps 20 --batch-size 16 --device cpu)
    tp=(--device cpu --batch 2 --steps 2 --warmup 1 --repeats 1 --threads 1)
    eager=(--configs cifar mnist) eager_ema=(--configs mnist-small) compiled=(--configs mnist-small)
    trace=(--compile-backend aot_eager)  # traces the compiled path without generating code: seconds, not minutes
    emoji=(--size small --steps 3 --batch-size 16 --device cpu --threads 1)
    b_tests=300 b_train=300 b_export=300 b_eager=300 b_ema=300 b_compile=300 b_emoji=300 b_graphs=300
else
    size=(--steps 8000 --batch-size 128 --device cuda)
    tp=() eager=(--configs cifar mnist) eager_ema=(--configs cifar) compiled=(--configs cifar mnist) trace=()
    emoji=(--size large --steps 500 --batch-size 256 --device cuda)
    b_tests=170 b_train=150 b_export=40 b_eager=60 b_ema=30 b_compile=150 b_emoji=120 b_graphs=600  # graphs: the rest
fi
train_cmd=("$PY" -m diffusion_lessons.cli train --dataset mnist5k --split train --class-cond "${size[@]}"
    --lr 1e-3 --warmup-steps 500 --ema-decay 0.999 --ema-power 0.75 --p-uncond 0.15 --base-channels 16
    --channel-mults 1,2,4 --num-res-blocks 1 --dropout 0.1 --checkpoint-every 500 --log-every 50 --no-progress
    --out "$out/train_mnist")

# 1 and 3 side by side: the tests time nothing, and the small model's training leaves the GPU mostly idle.
(
    run_step train_mnist "$b_train" "${train_cmd[@]}"
    if [ -f "$out/train_mnist/summary.json" ]; then  # the CLI's own summary: loss, images/s
        "$PY" -c 'import json, sys; a, b = sys.argv[1:]; d = json.load(open(b)); d.update(json.load(open(a)))
json.dump(d, open(b, "w"), indent=2)' "$out/train_mnist/summary.json" "$out/train_mnist.json"
    fi
    run_step export_mnist "$b_export" "$PY" "$helper" export "$out" "$dry" "${train_cmd[*]}"
) &
train_pid=$!
run_step cuda_tests "$b_tests" "$PY" -m pytest -m cuda -q -p no:cacheprovider --durations=10 \
    --junitxml="$out/cuda_tests.xml" tests/
wait "$train_pid"

# 2: throughput, ours against diffusers' twin; the GPU to itself from here on.
throughput() {  # throughput NAME BUDGET ARGS...
    local name="$1" want="$2"; shift 2
    if ! has_diffusers; then skip_step "$name" "diffusers missing (bash benchmarks/gpu_wheels.sh)"; return; fi
    run_step "$name" "$want" "$PY" benchmarks/train_throughput.py "${tp[@]}" "$@" --json "$out/$name.json"
}
throughput throughput_eager "$b_eager" "${eager[@]}"
throughput throughput_eager_ema "$b_ema" "${eager_ema[@]}" --ema averaged-model
throughput throughput_compile "$b_compile" "${compiled[@]}" --compile --warmup "$( ((dry)) && echo 1 || echo 5)" \
    --repeats "$( ((dry)) && echo 1 || echo 3)" "${trace[@]}"
run_step train_emoji "$b_emoji" "$PY" benchmarks/train_emoji.py "${emoji[@]}" --out "$out/train_emoji" \
    --json "$out/train_emoji.json"
throughput throughput_cudagraphs "$b_graphs" "${compiled[@]:0:2}" --compile --compile-mode reduce-overhead \
    --warmup "$( ((dry)) && echo 1 || echo 5)" --repeats "$( ((dry)) && echo 1 || echo 3)" "${trace[@]}"

"$PY" "$helper" finish "$out"
status=$?
update_tar
echo "[gpu_suite] results in $out${tar:+ and $tar}; $(($(date +%s) - start)) s in all"
exit "$status"
}
