"""Helpers shared by the experiment scripts: running a stage, describing the machine
and the code, and filling a marked part of a Markdown file."""

import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(message):
    print(f"[experiment {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(script, args, stage, timings):
    command = [sys.executable, os.path.join(REPO, script), *args]
    log(f"{stage}: {' '.join(command[1:])}")
    start = time.time()
    result = subprocess.run(command, cwd=REPO)
    timings[stage] = time.time() - start
    if result.returncode:
        raise SystemExit(f"{stage} failed (exit {result.returncode}): {' '.join(command)}")


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
        memory = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{os.cpu_count()} x {cpu}{memory}, {platform.system()} {platform.release()}"


def versions():
    code = "import tensorflow as tf, keras; print(tf.__version__, keras.__version__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    ).stdout.split()
    return f"Python {platform.python_version()}, TensorFlow {out[0]}, Keras {out[1]}" if len(out) == 2 else f"Python {platform.python_version()}"


def commit():
    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head + (" (with uncommitted changes)" if dirty else "")


def command_line():
    """The command that started this process, as a user would type it."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    return " ".join(["python", script, *sys.argv[1:]])


def write_between_markers(path, begin, end, body):
    """Replaces the text between `begin` and `end` in `path` with `body` (appends
    the marked block when the markers are missing); the rest of the file is kept.
    Written atomically. Returns the marked block as written."""
    generated = f"{begin}\n<!-- Written by {os.path.relpath(os.path.abspath(sys.argv[0]), REPO)}; edits between these markers are replaced. -->\n\n{body}\n{end}"
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + generated + rest.split(end, 1)[1]
    else:
        text = (text or "# Results\n\n") + generated + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return generated


def train_args(dataset, model_dir, epochs, seed, extra=(), data_dir=None, smoke_steps=None):
    """train.py's arguments for one run of an experiment.

    Args:
        dataset, model_dir, epochs, seed: train.py's flags of the same names.
        extra: Further flags, e.g. the change an ablation run makes.
        data_dir: train.py's --data_dir, if given.
        smoke_steps: For smoke runs: steps per epoch (validation then takes 2).
    """
    args = [
        f"--dataset={dataset}",
        f"--model_dir={model_dir}",
        f"--epochs={epochs}",
        f"--seed={seed}",
        *extra,
    ]
    if data_dir:
        args.append(f"--data_dir={data_dir}")
    if smoke_steps:
        args += [f"--steps_per_epoch={smoke_steps}", "--validation_steps=2"]
    return args


def without_optimizer(source, target):
    """Saves the model in `source` to `target` without its optimizer state."""
    code = (
        "import sys, keras, mgnet_tf\n"
        "model = keras.saving.load_model(sys.argv[1], compile=False)\n"
        "model.save(sys.argv[2])\n"
    )
    tmp = os.path.join(os.path.dirname(target), ".tmp-" + os.path.basename(target))
    subprocess.run(
        [sys.executable, "-c", code, source, tmp],
        cwd=REPO,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    os.replace(tmp, target)
