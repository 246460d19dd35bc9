"""The paper's Appendix B study on translated Fashion-MNIST: FF-Net vs MGNet.

    python experiments/translated_fashion_mnist.py            # about 1.5 h on 2 CPU cores
    python experiments/translated_fashion_mnist.py --quick    # a 2-minute smoke run

Trains four models with the same epochs, schedule, batch and seed (the data set's
preset, docs/training.md), on the training split, choosing nothing on the test split:

- ff, ff_noise: FF-Net, the vanilla CNN on the whole 112x112 canvas
  (--glimpses=1 --downsample=1), clean and with Gaussian noise 0.3 (GT-MNIST protocol);
- mgnet, mgnet_noise: MGNet, the same CNN on T=5 glimpses of 28x28 (M=4), the paper's
  alpha=0.6 and s=0.02, glimpse-size penalty 0.1.

Then evaluates each final model on the test split with evaluate.py: accuracy and MFLOPs
after each glimpse, the dynamic exit, FGSM and PGD (eps 4/255 and 8/255), the 15
corruptions x 5 severities generated on the fly, and glimpse pictures. It prints the
tables, writes them between the markers of docs/results.md (the text around them is
kept), copies a few glimpse pictures to docs/images/results/ and the four models, without
optimizer state, to checkpoints/.

Every stage is skipped when its output exists, so an interrupted study resumes where it
stopped; --overwrite starts again. Runs and reports go to --output_dir.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = "translated_fashion_mnist"

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "output_dir", os.path.join(REPO, "runs", "study"), "Runs and reports go here."
)
flags.DEFINE_integer("epochs", 8, "Training epochs of every model.")
flags.DEFINE_integer("seed", 0, "Seed of every run and evaluation.")
flags.DEFINE_integer("attack_examples", 500, "Test images attacked per model.")
flags.DEFINE_integer("corruption_examples", 500, "Test images per corruption/severity.")
flags.DEFINE_list("pgd_steps", "1,2,3,5,7,10,15,20", "PGD step counts.")
flags.DEFINE_list("eps", "4,8", "Attack radii, in 1/255 pixel units.")
flags.DEFINE_string("data_dir", None, "Fashion-MNIST IDX files (default: see docs).")
flags.DEFINE_string(
    "results", os.path.join(REPO, "docs", "results.md"), "Markdown file to fill in."
)
flags.DEFINE_string(
    "images_dir",
    os.path.join(REPO, "docs", "images", "results"),
    "Where the chosen glimpse pictures and plots are copied.",
)
flags.DEFINE_string(
    "checkpoints_dir", os.path.join(REPO, "checkpoints"), "Where the models go."
)
flags.DEFINE_bool(
    "quick", False, "Smoke run: a few steps and examples; publishes nothing."
)
flags.DEFINE_bool("overwrite", False, "Start again, replacing earlier runs.")

MODELS = {
    "ff": {"label": "FF-Net", "flags": ["--glimpses=1", "--downsample=1"]},
    "mgnet": {"label": "MGNet", "flags": []},
    "ff_noise": {
        "label": "FF-Net",
        "flags": ["--glimpses=1", "--downsample=1", "--noise_std=0.3"],
    },
    "mgnet_noise": {"label": "MGNet", "flags": ["--noise_std=0.3"]},
}
# The paper's Table 4 (MNIST, not Fashion-MNIST): MFLOPs and top-1 %.
PAPER = {
    "clean": {"ff": (67.950, 99.48), "mgnet": [(3.471, 84.37), (7.011, 99.31), (10.619, 99.54)]},
    "noise": {
        "ff": (67.950, 99.10),
        "mgnet": [(3.471, 63.19), (7.011, 97.88), (10.619, 98.87), (14.296, 99.02), (18.042, 99.07)],
    },
}
CLASSES = [
    "T-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def log(message):
    print(f"[study {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(script, args, stage, timings):
    command = [sys.executable, os.path.join(REPO, script), *args]
    log(f"{stage}: {' '.join(command[1:])}")
    start = time.time()
    result = subprocess.run(command, cwd=REPO)
    timings[stage] = time.time() - start
    if result.returncode:
        raise SystemExit(f"{stage} failed (exit {result.returncode}): {' '.join(command)}")


def train(name, timings):
    model_dir = os.path.join(FLAGS.output_dir, name)
    if os.path.exists(os.path.join(model_dir, "final.keras")):
        log(f"train {name}: {model_dir}/final.keras exists, kept")
        timings[f"train {name}"] = None
        return model_dir
    args = [
        f"--dataset={DATASET}",
        f"--model_dir={model_dir}",
        f"--epochs={FLAGS.epochs}",
        f"--seed={FLAGS.seed}",
        *MODELS[name]["flags"],
    ]
    if FLAGS.data_dir:
        args.append(f"--data_dir={FLAGS.data_dir}")
    if FLAGS.quick:
        args += ["--steps_per_epoch=3", "--validation_steps=2"]
    run("train.py", args, f"train {name}", timings)
    return model_dir


def evaluate(name, model_dir, report, args, timings):
    """evaluate.py into <model_dir>/eval/<report>; kept when it exists."""
    output = os.path.join(model_dir, "eval", report)
    path = os.path.join(output, "evaluation.json")
    if not os.path.exists(path):
        common = [
            f"--model_dir={model_dir}",
            f"--output_dir={output}",
            f"--seed={FLAGS.seed}",
            "--overwrite",
        ]
        if FLAGS.quick:
            common += ["--max_examples=16", "--latency_repeats=2"]
        run("evaluate.py", common + args, f"evaluate {name} {report}", timings)
    else:
        timings[f"evaluate {name} {report}"] = None
    with open(path) as f:
        return json.load(f)


def evaluate_model(name, model_dir, timings):
    noisy = name.endswith("_noise")
    mgnet = name.startswith("mgnet")
    results = {
        "clean": evaluate(
            name,
            model_dir,
            "clean",
            ["--latency_repeats=20"] + (["--visualize=64"] if mgnet else []),
            timings,
        )
    }
    if noisy:
        return results
    limit = [f"--max_examples={FLAGS.attack_examples}", "--latency_repeats=0"]
    for eps in FLAGS.eps:
        for attack in ("fgsm", "pgd"):
            results[f"{attack}_{eps}"] = evaluate(
                name,
                model_dir,
                f"{attack}_{eps}",
                [
                    f"--attack={attack}",
                    f"--eps={int(eps) / 255}",
                    f"--steps={','.join(FLAGS.pgd_steps)}",
                    f"--attack_examples={FLAGS.attack_examples}",
                    *limit,
                ],
                timings,
            )
    results["corruptions"] = evaluate(
        name,
        model_dir,
        "corruptions",
        [
            "--corruptions=all",
            f"--corruption_examples={FLAGS.corruption_examples}",
            f"--max_examples={FLAGS.corruption_examples}",
            "--latency_repeats=0",
        ],
        timings,
    )
    return results


def pct(x):
    return f"{100 * x:.2f}"


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


def table4(results, variant):
    suffix = "_noise" if variant == "noise" else ""
    ff = results["ff" + suffix]["clean"]["clean"]
    mg = results["mgnet" + suffix]["clean"]["clean"]
    paper = PAPER[variant]
    rows = [
        "| Structure | MFLOPs | top-1 % (ours, Fashion-MNIST) | MFLOPs (paper) | top-1 % (paper, MNIST) |",
        "|---|---:|---:|---:|---:|",
        f"| FF-Net | {ff['mflops'][0]:.3f} | {pct(ff['accuracy'][0])} | {paper['ff'][0]:.3f} | {paper['ff'][1]:.2f} |",
    ]
    for t, (mflops, accuracy) in enumerate(zip(mg["mflops"], mg["accuracy"])):
        ref = paper["mgnet"][t] if t < len(paper["mgnet"]) else None
        ref_cells = f"{ref[0]:.3f} | {ref[1]:.2f}" if ref else "- | -"
        rows.append(
            f"| MGNet {t + 1}-glimpse | {mflops:.3f} | {pct(accuracy)} | {ref_cells} |"
        )
    return "\n".join(rows)


def dynamic_table(results, name):
    mg = results[name]["clean"]["clean"]
    rows = [
        "| confidence threshold | mean glimpses | mean MFLOPs | top-1 % |",
        "|---:|---:|---:|---:|",
    ]
    for d in mg["dynamic_exit"]:
        rows.append(
            f"| {d['threshold']:.2f} | {d['mean_glimpses']:.2f} | {d['mean_mflops']:.2f} | {pct(d['accuracy'])} |"
        )
    return "\n".join(rows)


def attack_table(results):
    header = "| attack | steps |"
    rule = "|---|---:|"
    for eps in FLAGS.eps:
        header += f" FF-Net eps {eps}/255 | MGNet eps {eps}/255 |"
        rule += "---:|---:|"
    rows = [header, rule]
    first = results["ff"][f"pgd_{FLAGS.eps[0]}"]["attack"]
    clean = "| none | 0 |"
    for eps in FLAGS.eps:
        for name in ("ff", "mgnet"):
            clean += f" {pct(results[name][f'pgd_{eps}']['attack']['clean_accuracy'])} |"
    rows.append(clean)
    fgsm = "| FGSM | 1 |"
    for eps in FLAGS.eps:
        for name in ("ff", "mgnet"):
            fgsm += f" {pct(results[name][f'fgsm_{eps}']['attack']['accuracy'][0])} |"
    rows.append(fgsm)
    for i, steps in enumerate(first["steps"]):
        row = f"| PGD | {steps} |"
        for eps in FLAGS.eps:
            for name in ("ff", "mgnet"):
                row += f" {pct(results[name][f'pgd_{eps}']['attack']['accuracy'][i])} |"
        rows.append(row)
    return "\n".join(rows)


def corruption_table(results):
    ff = results["ff"]["corruptions"]["corruptions"]
    mg = results["mgnet"]["corruptions"]["corruptions"]
    steps = len(mg["mean_accuracy"])
    header = "| corruption | FF-Net | " + " | ".join(
        f"MGNet {t + 1}g" for t in range(steps)
    ) + " |"
    rows = [header, "|---|---:|" + "---:|" * steps]
    for name in ff["accuracy"]:
        rows.append(
            f"| {name} | {pct(ff['accuracy'][name][-1])} | "
            + " | ".join(pct(a) for a in mg["accuracy"][name])
            + " |"
        )
    ff_clean = results["ff"]["corruptions"]["clean"]["accuracy"]
    mg_clean = results["mgnet"]["corruptions"]["clean"]["accuracy"]
    rows.append(
        f"| none (same images) | {pct(ff_clean[-1])} | "
        + " | ".join(pct(a) for a in mg_clean)
        + " |"
    )
    rows.append(
        f"| **mean of 15 x 5** | **{pct(ff['mean_accuracy'][-1])}** | "
        + " | ".join(f"**{pct(a)}**" for a in mg["mean_accuracy"])
        + " |"
    )
    return "\n".join(rows)


def latency_line(results, name):
    clean = results[name]["clean"]["clean"]
    latency = clean.get("latency_ms_batch1")
    if not latency:
        return ""
    return ", ".join(f"{ms:.2f}" for ms in latency)


def choose_pictures(results, name, destination, count=3):
    """Copies `count` pictures MGNet got right after the last glimpse and `count` it
    got wrong; returns their markdown."""
    details = results[name]["clean"].get("picture_predictions", [])
    right = [d for d in details if d["predictions"][-1] == d["label"]][:count]
    wrong = [d for d in details if d["predictions"][-1] != d["label"]][:count]
    lines = []
    os.makedirs(destination, exist_ok=True)
    for kind, chosen in (("right", right), ("wrong", wrong)):
        for d in chosen:
            target = f"{name}_{kind}_{os.path.basename(d['path'])}"
            shutil.copyfile(d["path"], os.path.join(destination, target))
            predictions = ", ".join(CLASSES[p] for p in d["predictions"])
            lines.append(
                f"| ![]({os.path.relpath(os.path.join(destination, target), os.path.dirname(FLAGS.results))}) "
                f"| {kind} | {CLASSES[d['label']]} | {predictions} |"
            )
    if not lines:
        return ""
    return "\n".join(
        ["| glimpses (green: right after that glimpse, red: wrong) | final | label | prediction after each glimpse |", "|---|---|---:|---|"]
        + lines
    )


def plots(results, destination):
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    os.makedirs(destination, exist_ok=True)
    paths = {}
    figure, axes = pyplot.subplots(1, 2, figsize=(9, 3.5))
    for ax, variant, suffix in zip(axes, ("clean", "noise 0.3"), ("", "_noise")):
        ff = results["ff" + suffix]["clean"]["clean"]
        mg = results["mgnet" + suffix]["clean"]["clean"]
        ax.plot(mg["mflops"], [100 * a for a in mg["accuracy"]], "o-", label="MGNet, t glimpses")
        dyn = mg["dynamic_exit"]
        ax.plot([d["mean_mflops"] for d in dyn], [100 * d["accuracy"] for d in dyn], "s--", label="MGNet, dynamic exit")
        ax.plot(ff["mflops"], [100 * ff["accuracy"][0]], "k*", markersize=12, label="FF-Net")
        ax.set(xlabel="MFLOPs per image", ylabel="top-1 %", title=f"Translated Fashion-MNIST, {variant}")
        ax.legend(fontsize=8)
    figure.tight_layout()
    paths["exit"] = os.path.join(destination, "early_exit.png")
    figure.savefig(paths["exit"], dpi=100)
    pyplot.close(figure)

    figure, axes = pyplot.subplots(1, len(FLAGS.eps), figsize=(4.5 * len(FLAGS.eps), 3.5))
    for ax, eps in zip(list(axes) if len(FLAGS.eps) > 1 else [axes], FLAGS.eps):
        for name, style in (("ff", "k^-"), ("mgnet", "o-")):
            attack = results[name][f"pgd_{eps}"]["attack"]
            ax.plot(
                [0] + attack["steps"],
                [100 * a for a in [attack["clean_accuracy"]] + attack["accuracy"]],
                style,
                label=MODELS[name]["label"],
            )
        ax.set(xlabel="PGD steps", ylabel="top-1 %", title=f"PGD, eps {eps}/255", ylim=(0, 100))
        ax.legend()
    figure.tight_layout()
    paths["attack"] = os.path.join(destination, "pgd.png")
    figure.savefig(paths["attack"], dpi=100)
    pyplot.close(figure)
    return paths


def report(results, timings, total, command, revision):
    destination = FLAGS.images_dir
    pictures = plots(results, destination)
    rel = lambda p: os.path.relpath(p, os.path.dirname(FLAGS.results))  # noqa: E731
    train_minutes = sum(v or 0 for k, v in timings.items() if k.startswith("train")) / 60
    kept = [k for k, v in timings.items() if v is None]
    lines = [
        BEGIN,
        "<!-- Written by experiments/translated_fashion_mnist.py; edits between these markers are replaced. -->",
        "",
        f"- Command: `{command}`",
        f"- Commit: {revision}; finished {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {machine()}; {versions()}",
        f"- Wall time of this invocation: {total / 60:.1f} min, of which training {train_minutes:.1f} min"
        + (f" ({len(kept)} stages done by an earlier invocation were kept and are not counted)" if kept else ""),
        f"- Every model: {FLAGS.epochs} epochs, preset `{DATASET}` (SGD momentum 0.9, one-cycle to 0.05, batch 128, seed {FLAGS.seed}); "
        "trained on the first 55,000 training images, validated on the other 5,000, tested on the 10,000 test images with fixed positions (and noise).",
        "",
        "Stage wall times (s): "
        + ", ".join(f"{k} {'kept' if v is None else f'{v:.0f}'}" for k, v in timings.items()),
        "",
        "### Table 4 format: translated Fashion-MNIST (clean)",
        "",
        table4(results, "clean"),
        "",
        "### Table 4 format: Gaussian-noise translated Fashion-MNIST (std 0.3)",
        "",
        table4(results, "noise"),
        "",
        "Batch-1 CPU latency after 1..T glimpses (ms, median of 20, `evaluate.py`): "
        f"FF-Net {latency_line(results, 'ff')}; MGNet {latency_line(results, 'mgnet')}.",
        "",
        "### Dynamic early exit (stop at the first glimpse whose top probability reaches the threshold)",
        "",
        "Clean:",
        "",
        dynamic_table(results, "mgnet"),
        "",
        "Noise 0.3:",
        "",
        dynamic_table(results, "mgnet_noise"),
        "",
        f"![accuracy against MFLOPs]({rel(pictures['exit'])})",
        "",
        f"### Adversarial attacks (first {results['ff'][f'pgd_{FLAGS.eps[0]}']['attack']['num_examples']} test images, white box, "
        "L-inf in [0, 1] pixel space, PGD step 1/255, MGNet attacked through all 5 glimpses and scored after the last)",
        "",
        attack_table(results),
        "",
        f"![PGD]({rel(pictures['attack'])})",
        "",
        f"### Corruptions (15 corruptions x 5 severities generated on the fly with imagecorruptions, first {results['ff']['corruptions']['clean']['num_examples']} test images each; top-1 % averaged over severities)",
        "",
        corruption_table(results),
        "",
        "### Glimpse pictures (test images; the first 64, three right and three wrong)",
        "",
        "Clean:",
        "",
        choose_pictures(results, "mgnet", destination),
        "",
        "Noise 0.3:",
        "",
        choose_pictures(results, "mgnet_noise", destination),
        "",
        END,
    ]
    generated = "\n".join(lines)
    text = ""
    if os.path.exists(FLAGS.results):
        with open(FLAGS.results) as f:
            text = f.read()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + generated + rest.split(END, 1)[1]
    else:
        text = (text or "# Results\n\n") + generated + "\n"
    tmp = FLAGS.results + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, FLAGS.results)
    return generated


def ship(results, run_dirs):
    """Copies each final model without its optimizer state to --checkpoints_dir."""
    os.makedirs(FLAGS.checkpoints_dir, exist_ok=True)
    code = (
        "import sys, keras, mgnet_tf\n"
        "model = keras.saving.load_model(sys.argv[1], compile=False)\n"
        "model.save(sys.argv[2])\n"
    )
    for name, model_dir in run_dirs.items():
        target = os.path.join(FLAGS.checkpoints_dir, f"{DATASET}_{name}.keras")
        tmp = os.path.join(FLAGS.checkpoints_dir, f".tmp-{name}.keras")
        subprocess.run(
            [sys.executable, "-c", code, os.path.join(model_dir, "final.keras"), tmp],
            cwd=REPO,
            check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        os.replace(tmp, target)
        log(f"shipped {target} ({os.path.getsize(target) / 1e6:.2f} MB)")


def main(argv):
    del argv
    command = " ".join(
        ["python", os.path.relpath(os.path.abspath(sys.argv[0]), REPO), *sys.argv[1:]]
    )
    if FLAGS.quick:
        # A smoke run publishes nothing into the repository.
        FLAGS.output_dir = FLAGS.output_dir.rstrip("/") + "-quick"
        FLAGS.results = os.path.join(FLAGS.output_dir, "results.md")
        FLAGS.images_dir = os.path.join(FLAGS.output_dir, "images")
        FLAGS.checkpoints_dir = os.path.join(FLAGS.output_dir, "checkpoints")
        FLAGS.epochs = 1
        FLAGS.attack_examples = FLAGS.corruption_examples = 16
    if FLAGS.overwrite and os.path.exists(FLAGS.output_dir):
        shutil.rmtree(FLAGS.output_dir)
    start = time.time()
    revision = commit()  # the code that ran, before anything is written
    timings = {}
    run_dirs = {name: train(name, timings) for name in MODELS}
    results = {name: evaluate_model(name, d, timings) for name, d in run_dirs.items()}
    ship(results, run_dirs)
    total = time.time() - start
    generated = report(results, timings, total, command, revision)
    print(generated)
    log(f"done in {total / 60:.1f} min; results in {FLAGS.results}")


if __name__ == "__main__":
    app.run(main)
