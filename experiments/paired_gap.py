"""How far MGNet is behind FF-Net on the test split, and how sure the test split is of it.

    python experiments/paired_gap.py                       # the shipped pair, whole test split
    python experiments/paired_gap.py --ff=RUN/ff/final.keras --mgnet=RUN/mgnet/final.keras \
        --name=NAME

Both models classify the same test images (the data set's fixed test canvases, seed 0 as
evaluate.py's). For each glimpse count t, the gap FF-Net minus MGNet after t glimpses in
top-1 points, with
- a paired bootstrap 95% interval over the test images (the images resampled, both
  models' answers on each kept together; --resamples draws), and
- McNemar's exact test: of the images exactly one of the two gets right, how many each
  gets, and the two-sided binomial p-value of a split that uneven if neither were better.
Two accuracies on the same 10,000 images differ by about a third of a point from the
images alone, so a gap read off one test split is only this sure. The figures go to
--store_dir (small, to commit) and are printed.
"""

import json
import math
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402

DATASET = "translated_fashion_mnist"
CHECKPOINTS = os.path.join(common.REPO, "checkpoints")
FLAGS = flags.FLAGS


def define_flags():
    """The command line's flags, defined only when run as a script (the tests import
    this module beside train.py, whose flags share names)."""
    flags.DEFINE_string("ff", os.path.join(CHECKPOINTS, f"{DATASET}_ff.keras"), "FF-Net .keras file.")
    flags.DEFINE_string("mgnet", os.path.join(CHECKPOINTS, f"{DATASET}_mgnet.keras"), "MGNet .keras file.")
    flags.DEFINE_string("name", "shipped", "Name of the pair in the store.")
    flags.DEFINE_string("dataset", DATASET, "Data set of both models.")
    flags.DEFINE_string("data_dir", None, "The data set's files (default: see docs).")
    flags.DEFINE_integer("examples", None, "Test images, from the first (default: the whole split).")
    flags.DEFINE_integer("seed", 0, "Seed of the test canvases (as evaluate.py's) and of the bootstrap.")
    flags.DEFINE_integer("resamples", 10000, "Bootstrap draws.")
    flags.DEFINE_integer("batch_size", 250, "Images per batch.")
    flags.DEFINE_string(
        "store_dir",
        os.path.join(common.REPO, "experiments", "results", "paired_gap"),
        "Where <name>.json goes.",
    )


def mcnemar_exact(ff_only, mgnet_only):
    """Two-sided exact McNemar p-value: under "neither model is better" each of the
    `ff_only + mgnet_only` discordant images is FF-Net's with probability 1/2."""
    n = ff_only + mgnet_only
    if n == 0:
        return 1.0
    k = min(ff_only, mgnet_only)
    # Integers throughout: 2**n overflows a float past n = 1023 discordant images.
    tail = sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)
    return min(1.0, 2.0 * tail)


def paired_gap(ff_correct, mgnet_correct, resamples, seed, level=0.95):
    """The gap in top-1 points (FF-Net minus MGNet) on the same images, its paired
    bootstrap interval and McNemar's test. `ff_correct`, `mgnet_correct`: booleans, one
    per image, in the same order."""
    import numpy as np  # noqa: PLC0415

    ff_correct = np.asarray(ff_correct, bool)
    mgnet_correct = np.asarray(mgnet_correct, bool)
    if ff_correct.shape != mgnet_correct.shape or ff_correct.ndim != 1 or not ff_correct.size:
        raise ValueError(
            "Expected one answer per image from each model, the same images. Received "
            f"shapes {ff_correct.shape} and {mgnet_correct.shape}"
        )
    n = ff_correct.size
    ff_only = int(np.sum(ff_correct & ~mgnet_correct))
    mgnet_only = int(np.sum(mgnet_correct & ~ff_correct))
    # An image contributes +1 (FF-Net only right), -1 (MGNet only) or 0 to the gap, so
    # a resample of the images is a multinomial draw of those three counts.
    draws = np.random.default_rng(seed).multinomial(
        n, [ff_only / n, mgnet_only / n, 1.0 - (ff_only + mgnet_only) / n], size=resamples
    )
    gaps = 100.0 * (draws[:, 0] - draws[:, 1]) / n
    low, high = np.quantile(gaps, [(1 - level) / 2, (1 + level) / 2])
    return {
        "ff_top1": 100.0 * float(ff_correct.mean()),
        "mgnet_top1": 100.0 * float(mgnet_correct.mean()),
        "gap_points": 100.0 * (ff_only - mgnet_only) / n,
        "interval_points": [float(low), float(high)],
        "ff_only_right": ff_only,
        "mgnet_only_right": mgnet_only,
        "mcnemar_p": mcnemar_exact(ff_only, mgnet_only),
        "images": n,
    }


def correct_per_glimpse(model, dataset):
    """(images, T) booleans: the model's top-1 after each glimpse is the label."""
    from mgnet_tf import evaluation  # noqa: PLC0415

    predicted = evaluation.predict(model, dataset, progress=False)
    return predicted["probabilities"].argmax(-1) == predicted["labels"][:, None]


def main(argv):
    del argv
    import keras  # noqa: PLC0415

    import mgnet_tf  # noqa: F401, PLC0415  (registers the layers)
    import pipelines  # noqa: PLC0415

    models = {}
    for flag in ("ff", "mgnet"):
        path = getattr(FLAGS, flag)
        if not os.path.isfile(path):
            raise app.UsageError(f"--{flag}={path!r}: no such file; expected a trained .keras model")
        models[flag] = keras.models.load_model(path, compile=False)
    if models["ff"].num_glimpses != 1 or models["mgnet"].num_glimpses < 2:
        raise app.UsageError(
            f"--ff={FLAGS.ff!r} must have 1 glimpse and --mgnet={FLAGS.mgnet!r} 2 or more; "
            f"they have {models['ff'].num_glimpses} and {models['mgnet'].num_glimpses}"
        )
    count = FLAGS.examples or pipelines.num_examples(FLAGS.dataset, "test", FLAGS.data_dir)
    dataset = pipelines.build_dataset(FLAGS.dataset, "test", FLAGS.data_dir, FLAGS.batch_size, seed=FLAGS.seed)
    dataset = dataset.unbatch().take(count).batch(FLAGS.batch_size)
    ff = correct_per_glimpse(models["ff"], dataset)[:, 0]
    mgnet = correct_per_glimpse(models["mgnet"], dataset)
    per_glimpse = [
        paired_gap(ff, mgnet[:, t], FLAGS.resamples, FLAGS.seed) for t in range(mgnet.shape[1])
    ]
    record = {
        "ff": os.path.relpath(os.path.abspath(FLAGS.ff), common.REPO),
        "mgnet": os.path.relpath(os.path.abspath(FLAGS.mgnet), common.REPO),
        "test_examples": count,
        "seed": FLAGS.seed,
        "resamples": FLAGS.resamples,
        "commit": common.commit(),
        "machine": common.machine(),
        "after_glimpses": per_glimpse,
    }
    os.makedirs(FLAGS.store_dir, exist_ok=True)
    with open(os.path.join(FLAGS.store_dir, f"{FLAGS.name}.json"), "w") as f:
        json.dump(record, f, indent=1)
    print(f"FF-Net {record['ff']} against MGNet {record['mgnet']}, {count} test images")
    print("| glimpses | FF-Net % | MGNet % | gap, points (95% interval) | only FF-Net right / only MGNet right | McNemar p |")
    print("|---|---|---|---|---|---|")
    for t, row in enumerate(per_glimpse, 1):
        low, high = row["interval_points"]
        print(
            f"| {t} | {row['ff_top1']:.2f} | {row['mgnet_top1']:.2f} | {row['gap_points']:.2f} "
            f"({low:.2f} to {high:.2f}) | {row['ff_only_right']} / {row['mgnet_only_right']} "
            f"| {row['mcnemar_p']:.2g} |"
        )


if __name__ == "__main__":
    define_flags()
    app.run(main)
