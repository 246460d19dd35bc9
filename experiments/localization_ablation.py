"""Which training recipe lets MGNet learn where to look: short ablations on translated
Fashion-MNIST.

    python experiments/localization_ablation.py                 # every run, ~15 min each on 2 CPU cores
    python experiments/localization_ablation.py --runs=base,gs1 --epochs=4

Each run is `train.py` on the `translated_fashion_mnist` preset with the same seed and
epochs and one change (or the official code's whole recipe), then `evaluate.py` on the
first --test_examples test images. Where the glimpses look comes from train.py's
validation logs (metrics.csv: `val_scale_t`, `val_iou_t`, `val_center_error_t`) and from
evaluate.py's `localization` section on the test images. The table goes between the
ablation markers of docs/results.md and to <output_dir>/ablation.json. A finished stage
is kept, so an interrupted invocation resumes where it stopped.
"""

import csv
import json
import os
import shutil
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

DATASET = "translated_fashion_mnist"
OFFICIAL = [
    "--glimpse_loss_from=2",
    "--initializer=torch",
    "--attention_bias",
    "--weight_decay=1e-4",
    "--weight_decay_mode=coupled",
    "--mean=0.1307",
    "--std=0.3081",
    "--size_penalty_mode=confident_last",
]
# name: (what differs, train.py flags). Round 1 changed one thing at a time from the
# preset of that time, whose glimpse loss covered every glimpse (--glimpse_loss_from=1);
# its winner, the official glimpse loss from glimpse 2, is today's preset (`loss2`).
# Round 2 changes one thing at a time from today's preset.
# Rounds 1-3 ran against the preset of their day: normalization 0.5/0.5 and Keras'
# initializers. Pinned here so that a rerun is the same run whatever the preset now says
# (a run's own flags come later and win).
# Rounds 1-4 also ran with the size penalty of their day: weight 0.1 on every learned
# glimpse, through the re-scaling; and with eq. 4's placement and one localization head
# (the preset's spatial placement, 2026-12-02, and its first localization head with the
# lookahead loss, 2026-12-04, came later). An --extra_runs run gives its own.
ROUND_BASE = [
    "--mean=0.5",
    "--std=0.5",
    "--initializer=keras",
    "--size_penalty=0.1",
    "--size_penalty_mode=all",
    "--size_penalty_rescaled",
    "--placement=absolute",
    "--nofirst_localization",
    "--lookahead=0",
    "--lookahead_start=0",
]
PAPER_LOSS = ["--glimpse_loss_from=1"]
NORM_INIT = ["--mean=0.1307", "--std=0.3081", "--initializer=torch"]
RUNS = {
    # Round 1
    "base": ("round 1 base: glimpse loss on glimpses 1..T (eq. 8), s = 0.02", PAPER_LOSS),
    "gs1": ("base, s = 1 (the official default)", PAPER_LOSS + ["--grad_scale=1"]),
    "gs0.2": ("base, s = 0.2", PAPER_LOSS + ["--grad_scale=0.2"]),
    "penalty1": ("base, size penalty weight 1 instead of 0.1", PAPER_LOSS + ["--size_penalty=1"]),
    "loss2": ("base, glimpse loss on glimpses 2..T (official): today's preset", []),
    # Round 2: one change from today's preset
    "official": (
        "the official code's main.py defaults: loss2 with all of round 2, s = 1, no "
        "size penalty, lr 0.1, batch 256",
        OFFICIAL
        + ["--grad_scale=1", "--size_penalty=0", "--learning_rate=0.1", "--batch_size=256"],
    ),
    "torch_init": ("loss2, Kaiming-normal heads, PyTorch's conv init (official)", ["--initializer=torch"]),
    "attn_bias": ("loss2, attention projection biases (official)", ["--attention_bias"]),
    "coupled_wd": ("loss2, coupled weight decay 1e-4 (official)", ["--weight_decay=1e-4", "--weight_decay_mode=coupled"]),
    "norm": ("loss2, MNIST mean/std 0.1307/0.3081 (official)", ["--mean=0.1307", "--std=0.3081"]),
    "no_penalty": ("loss2, no size penalty (official default)", ["--size_penalty=0"]),
    "confident_last": (
        "loss2, size penalty on the last glimpse of confident examples (official form)",
        ["--size_penalty_mode=confident_last"],
    ),
    # Round 3: the two round-2 changes that helped most, together, without and with
    # a strong size penalty in the official form (every round-2 run kept s at a_max).
    "norm_init": ("loss2, norm + torch_init", NORM_INIT),
    "norm_init_penalty1": (
        "loss2, norm + torch_init, size penalty 1 on the last glimpse of confident examples",
        NORM_INIT + ["--size_penalty_mode=confident_last", "--size_penalty=1"],
    ),
    "norm_init_cwd": (
        "loss2, norm + torch_init + coupled weight decay 1e-4",
        NORM_INIT + ["--weight_decay=1e-4", "--weight_decay_mode=coupled"],
    ),
    # Round 4: how fast the localization layer learns. With eq. 5's s = 0.02 after the
    # sigmoid, the layer's own weights learn 50 times slower than the rest, and the
    # size penalty's gradient is scaled the same way; the glimpse centre error was
    # still falling after 4 epochs in every round-3 run.
    "norm_init_rescale_input": (
        "norm_init, s = 0.02 on the localization layer's input: the layer learns at the full rate",
        NORM_INIT + ["--rescale_at=input"],
    ),
    "norm_init_gs0.1": ("norm_init, s = 0.1", NORM_INIT + ["--grad_scale=0.1"]),
    # The size penalty's gradient without eq. 5's factor s = 0.02 (50 times stronger
    # than through it), the classification gradients still re-scaled.
    "norm_init_free_penalty": (
        "norm_init, size penalty 0.1 on the last glimpse of confident examples, its "
        "gradient not re-scaled",
        NORM_INIT
        + ["--size_penalty_mode=confident_last", "--size_penalty=0.1", "--nosize_penalty_rescaled"],
    ),
    "norm_init_free_penalty_all": (
        "norm_init, size penalty 0.1 on every learned glimpse (the paper's form), its "
        "gradient not re-scaled",
        NORM_INIT + ["--size_penalty=0.1", "--nosize_penalty_rescaled"],
    ),
}
BEGIN, END = "<!-- ablation:begin -->", "<!-- ablation:end -->"

FLAGS = flags.FLAGS
# gs1 and official diverge in their first epoch (docs/results.md; their epochs are
# kept in experiments/results/localization_ablation/*-diverged): not run by default.
DIVERGED = ("gs1", "official")
flags.DEFINE_list(
    "runs",
    [name for name in RUNS if name not in DIVERGED],
    f"Runs to train, of {list(RUNS)}.",
)
flags.DEFINE_multi_string(
    "extra_runs",
    [],
    "name=flag flag ...: a run beyond RUNS (a combination); repeat the flag for more "
    "(a flag value may hold commas, e.g. --global_loss_weights=0,1,1,1,1).",
)
flags.DEFINE_integer("epochs", 4, "Training epochs of every run.")
flags.DEFINE_integer("seed", 0, "Seed of every run.")
flags.DEFINE_integer("test_examples", 2000, "Test images evaluated per run.")
flags.DEFINE_string("output_dir", os.path.join(common.REPO, "runs", "ablation"), "Runs go here.")
flags.DEFINE_string("data_dir", None, "Fashion-MNIST IDX files (default: see docs).")
flags.DEFINE_string("results", os.path.join(common.REPO, "docs", "results.md"), "Markdown file to fill in.")
flags.DEFINE_integer("steps_per_epoch", None, "Smoke runs: steps per epoch.")
flags.DEFINE_string(
    "store_dir",
    os.path.join(common.REPO, "experiments", "results", "localization_ablation"),
    "Each finished run's config, metrics and test report (small, to commit); a run "
    "found here is not trained again.",
)


def last_row(model_dir):
    with open(os.path.join(model_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))[-1]


def run_one(name, train_flags, timings):
    """Trains and evaluates one run, or takes its figures from --store_dir."""
    stored = os.path.join(FLAGS.store_dir, name)
    if os.path.exists(os.path.join(stored, "evaluation.json")):
        common.log(f"{name}: figures kept in {stored}")
        with open(os.path.join(stored, "evaluation.json")) as f:
            clean = json.load(f)["clean"]
        return {"validation": last_row(stored), "test": clean}
    model_dir = os.path.join(FLAGS.output_dir, name)
    if not os.path.exists(os.path.join(model_dir, "final.keras")):
        args = common.train_args(
            DATASET,
            model_dir,
            FLAGS.epochs,
            FLAGS.seed,
            ROUND_BASE + list(train_flags),
            FLAGS.data_dir,
            smoke_steps=FLAGS.steps_per_epoch,
        )
        common.run("train.py", args, f"train {name}", timings)
    output = os.path.join(model_dir, "eval", "test")
    path = os.path.join(output, "evaluation.json")
    if not os.path.exists(path):
        common.run(
            "evaluate.py",
            [
                f"--model_dir={model_dir}",
                f"--output_dir={output}",
                f"--max_examples={FLAGS.test_examples}",
                "--latency_repeats=0",
                "--visualize=8",
                "--overwrite",
            ],
            f"evaluate {name}",
            timings,
        )
    if not FLAGS.steps_per_epoch:  # keep what a later session needs, small, to commit
        os.makedirs(stored, exist_ok=True)
        for source in ("config.json", "metrics.csv", os.path.join("eval", "test", "evaluation.json")):
            shutil.copyfile(os.path.join(model_dir, source), os.path.join(stored, os.path.basename(source)))
        # and the model (without optimizer state), for pictures and later evaluations
        common.without_optimizer(os.path.join(model_dir, "final.keras"), os.path.join(stored, "final.keras"))
    with open(path) as f:
        clean = json.load(f)["clean"]
    return {"validation": last_row(model_dir), "test": clean}


def table(results, descriptions):
    def cells(values, scale=1.0, digits=2):
        return " / ".join(f"{scale * v:.{digits}f}" for v in values)

    lines = [
        "| run | what differs | val top-1 % after 1..5 | test top-1 % after 1..5 "
        "| test mean s per glimpse | test median centre error px | test median IoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        val = r["validation"]
        steps = len(r["test"]["accuracy"])
        where = r["test"]["localization"]
        lines.append(
            f"| {name} | {descriptions[name]} "
            f"| {cells([float(val[f'val_acc_{t}']) for t in range(1, steps + 1)], 100, 1)} "
            f"| {cells(r['test']['accuracy'], 100, 1)} | {cells(where['mean_scale'])} "
            f"| {cells(where['median_center_error_px'], 1, 1)} | {cells(where['median_iou'])} |"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    runs = {name: RUNS[name] for name in FLAGS.runs}
    for spec in FLAGS.extra_runs:
        name, _, flag_text = spec.partition("=")
        runs[name] = (flag_text, flag_text.split())
    unknown = [n for n in FLAGS.runs if n not in RUNS]
    if unknown:
        raise app.UsageError(f"--runs: {unknown} are not in {list(RUNS)}")
    timings = {}
    results = {}
    os.makedirs(FLAGS.output_dir, exist_ok=True)  # ablation.json goes there
    for name, (_, train_flags) in runs.items():
        results[name] = run_one(name, train_flags, timings)
        with open(os.path.join(FLAGS.output_dir, "ablation.json"), "w") as f:
            json.dump(results, f, indent=1)
    body = "\n".join(
        [
            f"- Command: `{common.command_line()}`",
            f"- Commit: {common.commit()}; machine: {common.machine()}; {common.versions()}",
            f"- Every run: {FLAGS.epochs} epochs, seed {FLAGS.seed}; validation figures "
            f"after the last epoch (train.py's metrics.csv), test figures on the first "
            f"{FLAGS.test_examples} test images (evaluate.py).",
            "",
            table(results, {name: text for name, (text, _) in runs.items()}),
        ]
    )
    print(body)
    if not FLAGS.steps_per_epoch:
        common.write_between_markers(FLAGS.results, BEGIN, END, body)


if __name__ == "__main__":
    app.run(main)
