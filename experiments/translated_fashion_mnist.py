"""The paper's Appendix B study on translated Fashion-MNIST: FF-Net vs MGNet.

    python experiments/translated_fashion_mnist.py            # 7.5-50 h on 2 CPU cores (below)
    python experiments/translated_fashion_mnist.py --quick    # a few-minute smoke run

Trains six models with the same epochs (the preset's 60: until validation accuracy stops rising),
schedule and batch (the data set's preset, presets.py and docs/training.md), on the
training split, choosing nothing on the test split:

- ff, ff_noise: FF-Net, the vanilla CNN on the whole 112x112 canvas
  (--num_glimpses=1 --downsample=1), clean and with Gaussian noise 0.3 (GT-MNIST protocol);
- mgnet, mgnet_noise: MGNet, the same CNN on T=5 glimpses of 28x28 (M=4);
- ff_seed1, mgnet_seed1 (--extra_seeds): the clean pair again with another seed, for
  the seed spread.

A run may add flags of its own (RUN_FLAGS, with the reason; the report names them under
Table 4): FF-Net seed 1 trains with --global_clipnorm=1, as unclipped it diverges at
the one-cycle's peak.

Then evaluates each final model on the test split with evaluate.py: accuracy and MFLOPs
after each glimpse, where the glimpses look (mean s, centre error and IoU with the
item's box), the dynamic exit, FGSM and PGD (eps 4/255 and 8/255), the 15 corruptions x
5 severities generated on the fly, and glimpse pictures (the extra seeds: accuracy and
localization only). It prints the tables, writes them between the markers of
docs/results.md (the text around them is kept), copies a few glimpse pictures to
docs/images/results/ and the four seed-0 models, without optimizer state, to
checkpoints/.

A candidate recipe runs the same study with train.py flags added to every run, in its
own store and without publishing anything (its report goes to runs/study_<name>), e.g.
the official code's schedule and weight decay on the clean seed-0 pair:

    python experiments/translated_fashion_mnist.py --recipe_name=official_schedule \
        --recipe_flags=--warmup_fraction=0.2 --recipe_flags=--cycle_momentum \
        --recipe_flags=--weight_decay_mode=coupled --recipe_flags=--weight_decay=1e-4 \
        --train_only=mgnet,ff

Its --store_unfinished needs --recipe_name (the store is the candidate's:
experiments/results/translated_fashion_mnist_<epochs>ep_<name>).

Every stage is skipped when its output exists, so an interrupted study resumes where it
stopped; --overwrite starts again. Runs and reports go to --output_dir. Each finished
training run (config, metrics, model without optimizer: under 1 MB) and each report is
also kept in --store_dir (experiments/results/translated_fashion_mnist_<epochs>ep; a
candidate recipe's ..._<epochs>ep_<name>), which is
meant to be committed: the study takes longer than one working session, and a later
invocation on another machine restores what is stored instead of training it again.
A run still training is kept too, from its last finished epoch, with
--store_unfinished (run it beside the study before a session ends, then commit the
store); the study on another machine resumes that run from there.

On the 2-core development machine (2026-12-01) an FF-Net epoch takes 630-830 s and an
MGNet epoch 150-200 s: each 30-epoch FF-Net run takes about 5.5 h, each MGNet run 1.5 h;
on a 2-core AMD EPYC with AVX-512 (2026-12-02) 95-115 s and 45-65 s: at the preset's
60 epochs about 100 min per FF-Net run and 50 per MGNet run, 7.5 h for the six
(on the first machine 39-51 h).
"""

import glob
import json
import os
import re
import shutil
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import presets  # noqa: E402
from training import checkpoints  # noqa: E402
from common import (  # noqa: E402
    REPO,
    command_line,
    commit,
    log,
    machine,
    run,
    train_args,
    versions,
    without_optimizer,
    write_between_markers,
)

DATASET = "translated_fashion_mnist"

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "output_dir", os.path.join(REPO, "runs", "study"), "Runs and reports go here."
)
flags.DEFINE_integer(
    "epochs",
    presets.PRESETS[DATASET]["epochs"],
    "Training epochs of every model (default: the preset's).",
)
flags.DEFINE_integer("seed", 0, "Seed of the shipped runs and of every evaluation.")
flags.DEFINE_list(
    "extra_seeds", ["1"], "More seeds of the clean FF-Net and MGNet (the seed spread)."
)
flags.DEFINE_string(
    "store_dir",
    None,
    "Finished runs (config, metrics, model without optimizer) and reports are kept "
    "here, small enough to commit; a later invocation on any machine resumes from it "
    "(default: experiments/results/translated_fashion_mnist_<epochs>ep, one store per "
    "training length; a candidate recipe's: ..._<epochs>ep_<recipe_name>).",
)
flags.DEFINE_list(
    "train_only",
    [],
    "Train (or restore) only these runs, store them and stop: a session too short for "
    "the whole study trains what fits (an MGNet epoch takes about a quarter of an FF-Net epoch's time).",
)
flags.DEFINE_bool(
    "store_unfinished",
    False,
    "Keep each unfinished training run's resume state (its last finished epoch) in "
    "--store_dir/<run>/unfinished and stop: commit it before a session ends, and the "
    "study on any machine resumes the run from that epoch.",
)
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
flags.DEFINE_multi_string(
    "recipe_flags",
    [],
    "A candidate recipe: train.py flags added to every run (the model's and the run's "
    "own flags still win); repeat for more. Settings of the preset only (numbers, "
    "strings, booleans; not --epochs). Needs --recipe_name.",
)
flags.DEFINE_string(
    "recipe_name",
    None,
    "The candidate recipe's name: its store is experiments/results/"
    "translated_fashion_mnist_<epochs>ep_<name>, its runs go to --output_dir (default "
    "runs/study_<name>) and its report, pictures and models beside them: --results, "
    "--images_dir and --checkpoints_dir are not used. --store_unfinished of a candidate "
    "needs its name.",
)

MODELS = {
    "ff": {"label": "FF-Net", "flags": ["--num_glimpses=1", "--downsample=1"]},
    "mgnet": {"label": "MGNet", "flags": []},
    "ff_noise": {
        "label": "FF-Net",
        "flags": ["--num_glimpses=1", "--downsample=1", "--noise_std=0.3"],
    },
    "mgnet_noise": {"label": "MGNet", "flags": ["--noise_std=0.3"]},
}
# A run that departs from its model's recipe, with the flags it adds and why; the
# report names it beside its figures. FF-Net seed 1 diverges unclipped at the
# one-cycle's peak (epoch 9: training loss 0.35 -> 1.60 -> 2.30, accuracy at chance,
# reproduced step for step from scratch; the run is kept in the store as
# ff_seed1-diverged), so it trains with the global gradient norm clipped at 1.
RUN_FLAGS = {
    "ff_seed1": {
        "flags": ["--global_clipnorm=1.0"],
        "why": "unclipped, it diverges at the one-cycle's peak (epoch 9)",
    },
}
STORED_FILES = ("config.json", "metrics.csv", "final.keras")
# What train.py resumes an interrupted run from (docs/training.md); best.keras is not
# kept, so after a resume elsewhere it is the best of the resumed epochs (the study
# uses final.keras).
RESUME_FILES = (
    "config.json",
    "metrics.csv",
    os.path.join("backup", checkpoints.BACKUP_WEIGHTS),
    os.path.join("backup", checkpoints.TRAINING_METADATA),
)
UNFINISHED = "unfinished"


def runs():
    """{run name: (model, seed)}: the shipped clean pair, the clean pair again with
    each extra seed, then the shipped noisy pair (the order they train in)."""
    named = {name: (name, FLAGS.seed) for name in ("ff", "mgnet")}
    for seed in FLAGS.extra_seeds:
        for name in ("ff", "mgnet"):
            named[f"{name}_seed{int(seed)}"] = (name, int(seed))
    # The noisy pair last: the clean pair and its seed spread come first.
    named.update({name: (name, FLAGS.seed) for name in MODELS if name not in named})
    return named
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


def run_flags(model, name=None):
    """train.py's flags for run `name` of `model`: a candidate recipe's
    (--recipe_flags), the model's, then the run's own (RUN_FLAGS; None or a name
    without any: none); a later flag wins."""
    return (
        list(FLAGS.recipe_flags)
        + MODELS[model]["flags"]
        + RUN_FLAGS.get(name, {}).get("flags", [])
    )


def recipe(model, epochs=None, name=None):
    """The settings run `name` of `model` trains with: the preset with the study's
    --epochs (`epochs`; None: the preset's), then the candidate recipe's flags, the
    model's and the run's own (RUN_FLAGS)."""
    settings = presets.preset(DATASET)
    if epochs is not None:
        settings["epochs"] = epochs
    for flag in run_flags(model, name):
        key, value = parse_flag(flag, settings)
        settings[key] = value
    return settings


# absl's spellings of a boolean flag's value.
TRUE, FALSE = ("1", "true", "t", "yes", "y"), ("0", "false", "f", "no", "n")


def parse_flag(flag, settings):
    """(key, value) of train.py flag `flag` ("--key=value", "--key" or "--nokey") for
    a recipe whose settings are `settings`; ValueError for a flag that is no preset
    setting or whose value the study cannot compare with a run's config (lists, and
    settings whose default is None)."""
    if not flag.startswith("--"):
        raise ValueError(f"{flag!r} is not a flag: expected --name=value, --name or --noname")
    key, value = flag[2:].split("=", 1) if "=" in flag else (flag[2:], None)
    if value is None:  # --name / --noname: a boolean
        key, value = (key[2:], False) if key.startswith("no") and key[2:] in settings else (key, True)
        if not isinstance(settings.get(key), bool):
            raise ValueError(f"{flag!r}: --{key} is not a boolean setting of the preset")
        return key, value
    if key not in settings:
        raise ValueError(f"{flag!r}: --{key} is no setting of the preset")
    if isinstance(settings[key], bool):
        if value.lower() not in TRUE + FALSE:
            raise ValueError(f"{flag!r}: expected a boolean, one of {TRUE + FALSE}")
        return key, value.lower() in TRUE
    if isinstance(settings[key], (int, float)):
        return key, type(settings[key])(float(value))
    if isinstance(settings[key], str):
        return key, value
    raise ValueError(
        f"{flag!r}: --{key} (preset value {settings[key]!r}) cannot be compared with a "
        "run's config by the study; give the study's recipe only numbers, strings and booleans"
    )


def recipe_label():
    """What the study's runs are held to: the preset, or the candidate recipe."""
    if FLAGS.recipe_name:
        return f"preset with candidate recipe {FLAGS.recipe_name!r} ({' '.join(FLAGS.recipe_flags)})"
    return "preset"


def default_store(epochs, recipe_name=None):
    """The committed store of the study at `epochs` epochs (of the candidate recipe
    `recipe_name`; None: the preset)."""
    suffix = f"_{recipe_name}" if recipe_name else ""
    return os.path.join(REPO, "experiments", "results", f"{DATASET}_{epochs}ep{suffix}")


def stale_settings(config_path, model, epochs=None, name=None):
    """The recipe settings in which the run of `config_path` (run `name` of `model`)
    differs from today's (`recipe`: the preset, or the candidate recipe), as
    'key=theirs (preset: ours)'. A setting the run does not record
    (an option added since) counts as COMMON's value, the default it was added with;
    a run of one glimpse ignores the localization's settings (it has none)."""
    with open(config_path) as f:
        saved = json.load(f)
    ours = recipe(model, epochs, name)
    skip = presets.unused_settings(ours)

    def same(a, b):
        if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
            return a is not None and b is not None and len(a) == len(b) and all(
                same(x, y) for x, y in zip(a, b)
            )
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
        return a == b

    return [
        f"{key}={saved.get(key, presets.COMMON.get(key))!r} (preset: {value!r})"
        for key, value in sorted(ours.items())
        if key not in skip
        and not same(saved.get(key, presets.COMMON.get(key)), value)
    ]


def check_recipe(name, model, directory):
    """Refuses a finished or stored run trained with another recipe than today's."""
    config_path = os.path.join(directory, "config.json")
    if not os.path.exists(config_path):
        return
    stale = stale_settings(config_path, model, FLAGS.epochs, name)
    if stale:
        raise app.UsageError(
            f"{directory} holds run {name} trained with another recipe than today's "
            f"{recipe_label()}: {', '.join(stale)}. Move it aside (e.g. rename the directory to "
            f"{os.path.basename(os.path.normpath(directory))}-<recipe>; --overwrite "
            "only replaces the runs in --output_dir, not the store) so that the study "
            "trains it again"
        )


def train(name, timings):
    model, seed = runs()[name]
    model_dir = os.path.join(FLAGS.output_dir, name)
    stored = os.path.join(FLAGS.store_dir, name)
    for directory in (model_dir, stored, os.path.join(stored, UNFINISHED)):
        check_recipe(name, model, directory)
    in_store = all(os.path.exists(os.path.join(stored, f)) for f in STORED_FILES)
    if not os.path.exists(os.path.join(model_dir, "final.keras")) and in_store:
        os.makedirs(model_dir, exist_ok=True)
        for f in STORED_FILES:
            shutil.copyfile(os.path.join(stored, f), os.path.join(model_dir, f))
        log(f"train {name}: restored from {stored}")
    unfinished = os.path.join(stored, UNFINISHED)
    if (
        not os.path.exists(os.path.join(model_dir, "final.keras"))
        and not os.path.exists(os.path.join(model_dir, "backup"))
        and os.path.exists(unfinished)
    ):
        for f in RESUME_FILES:
            os.makedirs(os.path.dirname(os.path.join(model_dir, f)), exist_ok=True)
            shutil.copyfile(os.path.join(unfinished, f), os.path.join(model_dir, f))
        log(f"train {name}: resumes after epoch {_epoch(model_dir)}, restored from {unfinished}")
    if os.path.exists(os.path.join(model_dir, "final.keras")):
        log(f"train {name}: {model_dir}/final.keras exists, kept")
        timings[f"train {name}"] = None
        if not in_store:
            store_run(name, model_dir)  # finished, but not stored (e.g. stopped before)
        return model_dir
    args = train_args(
        DATASET,
        model_dir,
        FLAGS.epochs,
        seed,
        run_flags(model, name),
        FLAGS.data_dir,
        smoke_steps=3 if FLAGS.quick else None,
    )
    run("train.py", args, f"train {name}", timings)
    store_run(name, model_dir)
    return model_dir


def store_run(name, model_dir):
    """Keeps a finished run in --store_dir: its config, metrics and the model
    without optimizer state (about 0.75 MB), to commit."""
    stored = os.path.join(FLAGS.store_dir, name)
    os.makedirs(stored, exist_ok=True)
    for f in ("config.json", "metrics.csv"):
        shutil.copyfile(os.path.join(model_dir, f), os.path.join(stored, f))
    without_optimizer(os.path.join(model_dir, "final.keras"), os.path.join(stored, "final.keras"))
    shutil.rmtree(os.path.join(stored, UNFINISHED), ignore_errors=True)
    log(f"stored {name} in {stored}; commit it to keep it across machines")


def _epoch(model_dir):
    """The last epoch backed up in `model_dir` (0 without a backup)."""
    return checkpoints.completed_epochs(os.path.join(model_dir, "backup"))


def store_unfinished():
    """--store_unfinished: copies the resume state of each run that is backed up
    but not finished into --store_dir/<run>/unfinished (replacing an older one).
    Safe beside the training run: the copy is retried if an epoch ends during it."""
    kept = []
    for name in runs():
        model_dir = os.path.join(FLAGS.output_dir, name)
        epoch = _epoch(model_dir)
        if not epoch or os.path.exists(os.path.join(model_dir, "final.keras")):
            continue
        target = os.path.join(FLAGS.store_dir, name, UNFINISHED)
        partial = target + ".partial"
        weights = os.path.join(model_dir, "backup", checkpoints.BACKUP_WEIGHTS)
        for _ in range(3):
            before = os.stat(weights)
            shutil.rmtree(partial, ignore_errors=True)
            for f in RESUME_FILES:
                os.makedirs(os.path.dirname(os.path.join(partial, f)), exist_ok=True)
                shutil.copyfile(os.path.join(model_dir, f), os.path.join(partial, f))
            after = os.stat(weights)
            # No backup was written during the copy (train.py renames new weights,
            # then a new record, into place): the weights and the record are one
            # epoch's.
            same = (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
            if same and _epoch(partial) == epoch == _epoch(model_dir):
                break
            epoch = _epoch(model_dir)
        else:
            raise RuntimeError(f"{model_dir}: its backup kept changing while copied")
        shutil.rmtree(target, ignore_errors=True)
        os.rename(partial, target)
        kept.append(name)
        log(f"stored {name} after epoch {_epoch(target)} in {target}; commit it to resume it on any machine")
    if not kept:
        log(f"no unfinished run in {FLAGS.output_dir}")


def evaluate(name, model_dir, report, args, timings):
    """evaluate.py into <model_dir>/eval/<report>; kept when it exists. Reports other
    than "clean" (which also draws the pictures, and is quick) are kept in
    --store_dir too and restored from there."""
    output = os.path.join(model_dir, "eval", report)
    path = os.path.join(output, "evaluation.json")
    stored = os.path.join(FLAGS.store_dir, name, "eval", f"{report}.json")
    if not os.path.exists(path) and report != "clean" and os.path.exists(stored):
        os.makedirs(output, exist_ok=True)
        shutil.copyfile(stored, path)
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
    if not os.path.exists(stored):
        os.makedirs(os.path.dirname(stored), exist_ok=True)
        shutil.copyfile(path, stored)
    with open(path) as f:
        return json.load(f)


def evaluate_model(name, model_dir, timings):
    noisy = name.endswith("_noise")
    mgnet = name.startswith("mgnet")
    if name not in MODELS:  # an extra seed: clean accuracy and localization only
        return {"clean": evaluate(name, model_dir, "clean", ["--latency_repeats=0"], timings)}
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


def seed_cells(results, name, index):
    """Top-1 % of `name` after glimpse `index`: the shipped seed, then the mean and
    range over every seed run of it."""
    values = [
        results[run_name]["clean"]["clean"]["accuracy"][index]
        for run_name, (model, _) in runs().items()
        if model == name and run_name in results
    ]
    if len(values) == 1:
        return f"{pct(values[0])} | -"
    mean = sum(values) / len(values)
    return f"{pct(values[0])} | {pct(mean)} ({pct(min(values))}-{pct(max(values))})"


def table4(results, variant):
    suffix = "_noise" if variant == "noise" else ""
    ff = results["ff" + suffix]["clean"]["clean"]
    mg = results["mgnet" + suffix]["clean"]["clean"]
    paper = PAPER[variant]
    seeds = 1 + (len(FLAGS.extra_seeds) if not suffix else 0)
    rows = [
        "| Structure | MFLOPs | top-1 % (ours, Fashion-MNIST; shipped seed) "
        f"| mean of {seeds} seed(s) (range) | MFLOPs (paper) | top-1 % (paper, MNIST) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| FF-Net | {ff['mflops'][0]:.3f} | {seed_cells(results, 'ff' + suffix, 0)} | {paper['ff'][0]:.3f} | {paper['ff'][1]:.2f} |",
    ]
    for t, mflops in enumerate(mg["mflops"]):
        ref = paper["mgnet"][t] if t < len(paper["mgnet"]) else None
        ref_cells = f"{ref[0]:.3f} | {ref[1]:.2f}" if ref else "- | -"
        rows.append(
            f"| MGNet {t + 1}-glimpse | {mflops:.3f} | {seed_cells(results, 'mgnet' + suffix, t)} | {ref_cells} |"
        )
    for name, (model, seed) in runs().items():
        if name in RUN_FLAGS and name in results and model in ("ff" + suffix, "mgnet" + suffix):
            rows.append(
                f"\n{MODELS[model]['label']} seed {seed} trains with "
                f"`{' '.join(RUN_FLAGS[name]['flags'])}`: {RUN_FLAGS[name]['why']}."
            )
    return "\n".join(rows)


def localization_table(results):
    """Where each MGNet run's glimpses look on the test images."""
    rows = [
        "| run | glimpse | mean s | s 10th-90th pct | median centre error px | median IoU | IoU >= 0.5 |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, (model, seed) in runs().items():
        if not model.startswith("mgnet") or name not in results:
            continue
        where = results[name]["clean"]["clean"]["localization"]
        for t, scale in enumerate(where["mean_scale"]):
            low, _, high = where["scale_quantiles"][t]
            rows.append(
                f"| {name} (seed {seed}) | {t + 1} | {scale:.3f} | {low:.2f}-{high:.2f} "
                f"| {where['median_center_error_px'][t]:.1f} | {where['median_iou'][t]:.2f} "
                f"| {pct(where['iou_at_least_0.5'][t])} % |"
            )
    return "\n".join(rows)


def class_table(results, glimpses=(3, 5)):
    """Top-1 % per class of the clean FF-Net and of MGNet after `glimpses`, each the
    mean over the model's seed runs, with MGNet's difference and its share of the gap
    (where MGNet's points go)."""

    def mean_per_class(model, t):
        runs_of = [n for n, (m, _) in runs().items() if m == model and n in results]
        per_run = [results[n]["clean"]["clean"]["per_class"]["accuracy"] for n in runs_of]
        return [sum(r[k][t] for r in per_run) / len(per_run) for k in range(len(CLASSES))], len(runs_of)

    ff, ff_seeds = mean_per_class("ff", 0)
    mg = {t: mean_per_class("mgnet", t - 1)[0] for t in glimpses}
    mg_seeds = mean_per_class("mgnet", 0)[1]
    counts = results["ff"]["clean"]["clean"]["per_class"]["count"]
    total = sum(counts)
    first = glimpses[0]
    gap = sum(c * (m - f) for c, m, f in zip(counts, mg[first], ff)) / total
    header = " | ".join(f"MGNet, {t} glimpses (diff)" for t in glimpses)
    rows = [
        f"| class | images | FF-Net (mean of {ff_seeds}) | {header} "
        f"| share of the gap after {first} glimpses (mean of {mg_seeds}) |",
        "|---|---:|---:|" + "---:|" * len(glimpses) + "---:|",
    ]
    for k, name in enumerate(CLASSES):
        cells = " | ".join(f"{pct(mg[t][k])} ({round(100 * (mg[t][k] - ff[k]), 2) + 0.0:+.2f})" for t in glimpses)
        share = f"{round(100 * counts[k] * (mg[first][k] - ff[k]) / total / gap) + 0} %" if gap else "-"
        rows.append(f"| {name} | {counts[k]} | {pct(ff[k])} | {cells} | {share} |")
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
    targets = {
        f"{name}_{kind}_{os.path.basename(d['path'])}"
        for kind, chosen in (("right", right), ("wrong", wrong))
        for d in chosen
    }
    # Pictures an earlier run chose and this one does not would stay behind unlinked.
    for kind in ("right", "wrong"):
        for stale in glob.glob(os.path.join(destination, f"{name}_{kind}_example_*.png")):
            if os.path.basename(stale) not in targets:
                os.remove(stale)
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
    preset = recipe("mgnet", FLAGS.epochs)
    kept = [k for k, v in timings.items() if v is None]
    lines = [
        f"- Command: `{command}`",
        f"- Commit: {revision}; finished {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {machine()}; {versions()}",
        f"- Wall time of this invocation: {total / 60:.1f} min, of which training {train_minutes:.1f} min"
        + (f" ({len(kept)} stages done by an earlier invocation were kept and are not counted)" if kept else ""),
        f"- Every model: {FLAGS.epochs} epochs, {recipe_label()} `{DATASET}` (presets.py: SGD momentum {preset['momentum']}"
        f"{' cycled 0.95-0.85' if preset['cycle_momentum'] else ''}, warm-up {preset['warmup_fraction']}, "
        f"one-cycle to {preset['learning_rate']}, batch {preset['batch_size']}, s = {preset['grad_scale']}, "
        f"glimpse loss from glimpse {preset['glimpse_loss_from']}, size penalty {preset['size_penalty']} ({preset['size_penalty_mode']}), "
        f"{preset['weight_decay_mode']} weight decay {preset['weight_decay']}, {preset['initializer']} initialization); "
        f"seed {FLAGS.seed} for the shipped models, and seeds {', '.join(FLAGS.extra_seeds) or 'none'} for the clean pair's spread; "
        "trained on the first 55,000 training images, validated on the other 5,000, tested on the 10,000 test images with fixed positions (and noise).",
        "",
        "Stage wall times (s): "
        + ", ".join(f"{k} {'kept' if v is None else f'{v:.0f}'}" for k, v in timings.items()),
        "",
        "### Table 4 format: translated Fashion-MNIST (clean)",
        "",
        table4(results, "clean"),
        "",
        "### Where the glimpses look (test images; s is the glimpse side over the image side, 0.25 = the 28 px item)",
        "",
        localization_table(results),
        "",
        "### Where MGNet loses against FF-Net: top-1 % per class (clean test images, mean over seeds)",
        "",
        class_table(results),
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
    ]
    return write_between_markers(FLAGS.results, BEGIN, END, "\n".join(lines))


def ship(results, run_dirs):
    """Copies each shipped final model without its optimizer state to
    --checkpoints_dir."""
    os.makedirs(FLAGS.checkpoints_dir, exist_ok=True)
    for name in MODELS:
        target = os.path.join(FLAGS.checkpoints_dir, f"{DATASET}_{name}.keras")
        without_optimizer(os.path.join(run_dirs[name], "final.keras"), target)
        log(f"shipped {target} ({os.path.getsize(target) / 1e6:.2f} MB)")


def configure():
    """Checks the candidate recipe and points the study's outputs where its mode
    says: a candidate (--recipe_name) and a smoke run (--quick) publish nothing into
    the repository (their report, pictures and models stay beside their runs)."""
    if FLAGS.recipe_flags and not FLAGS.recipe_name:
        raise app.UsageError(
            "--recipe_flags needs --recipe_name: a candidate recipe has its own store "
            f"(received --recipe_flags={FLAGS.recipe_flags})"
        )
    if FLAGS.recipe_name and not (FLAGS.recipe_flags or FLAGS.store_unfinished):
        raise app.UsageError(
            f"--recipe_name={FLAGS.recipe_name!r} needs the candidate's --recipe_flags "
            "(only --store_unfinished does without them)"
        )
    if FLAGS.recipe_name:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", FLAGS.recipe_name):
            raise app.UsageError(
                f"--recipe_name={FLAGS.recipe_name!r}: expected letters, digits, '_' "
                "or '-' (it names a directory)"
            )
        for flag in FLAGS.recipe_flags:
            try:
                key, _ = parse_flag(flag, presets.preset(DATASET))
            except ValueError as error:
                raise app.UsageError(f"--recipe_flags: {error}") from None
            if key == "epochs":
                raise app.UsageError("--recipe_flags: give the epochs with the study's --epochs")
        if not FLAGS["output_dir"].present:
            FLAGS.output_dir = os.path.join(REPO, "runs", f"study_{FLAGS.recipe_name}")
    if FLAGS.store_dir is None:
        FLAGS.store_dir = default_store(FLAGS.epochs, FLAGS.recipe_name)
    if FLAGS.quick:
        FLAGS.output_dir = FLAGS.output_dir.rstrip("/") + "-quick"
        FLAGS.store_dir = os.path.join(FLAGS.output_dir, "store")
        if not FLAGS["epochs"].present:
            FLAGS.epochs = 1
        FLAGS.attack_examples = FLAGS.corruption_examples = 16
    if FLAGS.quick or FLAGS.recipe_name:
        FLAGS.results = os.path.join(FLAGS.output_dir, "results.md")
        FLAGS.images_dir = os.path.join(FLAGS.output_dir, "images")
        FLAGS.checkpoints_dir = os.path.join(FLAGS.output_dir, "checkpoints")


def main(argv):
    del argv
    command = command_line()
    configure()
    if FLAGS.overwrite and os.path.exists(FLAGS.output_dir):
        shutil.rmtree(FLAGS.output_dir)
    start = time.time()
    revision = commit()  # the code that ran, before anything is written
    timings = {}
    if FLAGS.store_unfinished:
        store_unfinished()
        return
    if FLAGS.train_only:
        unknown = sorted(set(FLAGS.train_only) - set(runs()))
        if unknown:
            raise app.UsageError(f"--train_only: {unknown} are not among {list(runs())}")
        for name in FLAGS.train_only:
            train(name, timings)
        log(f"trained {FLAGS.train_only}; commit {FLAGS.store_dir} to keep them")
        return
    run_dirs = {name: train(name, timings) for name in runs()}
    results = {name: evaluate_model(name, d, timings) for name, d in run_dirs.items()}
    ship(results, run_dirs)
    total = time.time() - start
    generated = report(results, timings, total, command, revision)
    print(generated)
    log(f"done in {total / 60:.1f} min; results in {FLAGS.results}")


if __name__ == "__main__":
    app.run(main)
