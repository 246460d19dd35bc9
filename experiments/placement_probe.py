"""What a trained MGNet loses to where it puts its glimpses: the same model, with its
glimpses 2..T moved by an oracle onto each item's true box, on translated Fashion-MNIST.

    python experiments/placement_probe.py                     # MGNet seed 1 of eq. 4's placement (30 epochs), whole test split
    python experiments/placement_probe.py --model=checkpoints/translated_fashion_mnist_mgnet.keras --examples=2000

No training: each condition runs the model's own glimpse loop (`MGNet.glimpse_step`)
and replaces only the (s, x, y) that the localization network proposes for glimpses
2..T:
- learned: the model as it is (the check that this loop is the model's);
- box centre: the model's own size s, centred on the item's box;
- box s=S: the window of side S on the box centre (every glimpse 2..T the same);
- box s=S, error E px: the same, moved by a random centre error whose median length is
  E px (drawn once per image, as `glimpse_oracle.py` draws it).
Beside the global classifier's top-1 after each glimpse it measures the glimpse
classifier on glimpse 2 (the backbone and its head alone), top-1 by the model's own
centre error, and whether that error is a per-class offset or random. Last, how much
of where the item lies the backbone's features hold (a linear readout of the offset of
a misplaced glimpse 2) against how much the localization network uses (its glimpse 3).

If moving the glimpses onto the box gains little, the gap to FF-Net is in what the
backbone recognizes, not in where it looks now; `glimpse_oracle.py` gives what the same
backbone recognizes when trained on well-placed glimpses. The figures go between the
probe markers of docs/results.md and to --store_dir (small, to commit).
"""

import json
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402
from glimpse_oracle import sigma_for_median  # noqa: E402

DATASET = "translated_fashion_mnist"
CANVAS = 112
BEGIN, END = "<!-- probe:begin -->", "<!-- probe:end -->"
# name: (what it is, s or None for the model's own, median centre error px[, "second":
# glimpse 2 only, the localization network's from glimpse 3 on])
CONDITIONS = {
    "learned": ("the model's own glimpses", None, None),
    "box_centre": ("the model's own s, centred on the item's box", None, 0.0),
    "box_s0.25": ("s = 0.25 (the item's 28 px), centred on the box", 0.25, 0.0),
    "box_s0.30": ("s = 0.30, centred on the box", 0.30, 0.0),
    "box_s0.25_err3.5": ("s = 0.25, median centre error 3.5 px", 0.25, 3.5),
    "box_s0.25_err7": ("s = 0.25, median centre error 7 px", 0.25, 7.0),
    # Glimpse 2 alone moved: how much of the accuracy after 3 glimpses waits on where the
    # first view (the whole canvas at 1/M) sends glimpse 2.
    "second_box_centre": (
        "glimpse 2 only: the model's own s, centred on the box; glimpses 3.. the model's",
        None, 0.0, "second_centre",
    ),
    "second_box_s0.25": (
        "glimpse 2 only: s = 0.25, centred on the box; glimpses 3.. the model's",
        0.25, 0.0, "second",
    ),
}
FLAGS = flags.FLAGS


def define_flags():
    """The command line's flags, defined only when run as a script (the tests import
    this module beside train.py, whose flags share names)."""
    flags.DEFINE_string(
        "model",
        os.path.join(
            common.REPO,
            "experiments",
            "results",
            "localization_ablation",
            "absolute_30ep_seed1",  # the study's MGNet seed 1 before the spatial placement
            "final.keras",
        ),
        "The trained MGNet (.keras) to probe.",
    )
    flags.DEFINE_string("name", None, "Name of the probe in the store and table (default: from --model).")
    flags.DEFINE_integer("examples", None, "Test images, from the first (default: the whole split).")
    flags.DEFINE_integer("seed", 0, "Seed of the test canvases (as evaluate.py's) and of the errors.")
    flags.DEFINE_integer("batch_size", 250, "Images per batch.")
    flags.DEFINE_string("data_dir", None, "Fashion-MNIST IDX files (default: see docs).")
    flags.DEFINE_string("results", os.path.join(common.REPO, "docs", "results.md"), "Markdown file to fill in.")
    flags.DEFINE_string(
        "store_dir",
        os.path.join(common.REPO, "experiments", "results", "placement_probe"),
        "Each probe's figures (to commit).",
    )


def centres_px(boxes):
    """(N, 2) (row, column) pixel centres of (top, left, bottom, right) boxes."""
    import numpy as np  # noqa: PLC0415

    boxes = np.asarray(boxes, np.float64)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], -1)


def box_params(boxes, image_size=CANVAS):
    """(N, 2) window centres (x, y) in the sampler's [-1, 1] units of each box's centre.

    `boxes` are (top, left, bottom, right) pixels (`mgnet_tf.localization`); the inverse
    of `localization.glimpse_boxes`, so a window of any size there has the box's centre.
    """
    return (centres_px(boxes)[:, ::-1] - 0.5) / (image_size - 1) * 2.0 - 1.0


def make_runner(model):
    """A compiled glimpse loop whose glimpses 2..T follow `mode`:

    mode "learned": the localization network's params; "centre": its s with `oracle`'s
    (x, y); "oracle": `oracle` (s, x, y); "second": `oracle` for glimpse 2 only, the
    localization network's from glimpse 3 on; "second_centre": its s with `oracle`'s
    (x, y) for glimpse 2 only. Returns logits (B, T, K), glimpse logits
    (B, T, K) and the params used (B, T, 3).
    """
    import tensorflow as tf  # noqa: PLC0415

    @tf.function(reduce_retracing=True)
    def run(images, oracle, mode):
        normalized = model.normalize(images)
        params = model.first_glimpse_params(tf.shape(images)[0])
        tokens, logits, glimpse_logits, used = None, [], [], []
        for step in range(model.num_glimpses):
            out = model.glimpse_step(normalized, tokens, params, training=False)
            tokens = out["tokens"]
            logits.append(out["logits"])
            glimpse_logits.append(out["glimpse_logits"])
            used.append(params)
            if step + 1 < model.num_glimpses:
                learned = model.next_glimpse_params(out, params)
                if mode == "learned" or (mode in ("second", "second_centre") and step > 0):
                    params = learned
                elif mode in ("centre", "second_centre"):
                    params = tf.concat([learned[:, :1], oracle[:, 1:]], axis=1)
                else:
                    params = oracle
        return tf.stack(logits, 1), tf.stack(glimpse_logits, 1), tf.stack(used, 1)

    return run


def probe(model, dataset, boxes, seed):
    """Every condition's figures on `dataset` (batches of images, labels in order) whose
    items have `boxes`."""
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from mgnet_tf import localization  # noqa: PLC0415

    run = make_runner(model)
    centres = box_params(boxes)
    results = {}
    for name, (description, scale, error_px, *only) in CONDITIONS.items():
        rng = np.random.default_rng(seed)
        correct, glimpse_correct, params_used, labels_all, start = [], [], [], [], 0
        for images, labels in dataset:
            batch = int(images.shape[0])
            centre = centres[start : start + batch]
            if error_px:
                centre = centre + rng.standard_normal(centre.shape) * (
                    sigma_for_median(error_px) * 2.0 / (CANVAS - 1)
                )
            oracle = np.concatenate([np.full((batch, 1), scale or 0.0), centre], 1)
            if only:
                mode = only[0]
            else:
                mode = "learned" if error_px is None else ("centre" if scale is None else "oracle")
            logits, glimpse_logits, used = run(images, tf.constant(oracle, tf.float32), mode)
            y = labels.numpy()[:, None]
            correct.append(logits.numpy().argmax(-1) == y)
            glimpse_correct.append(glimpse_logits.numpy().argmax(-1) == y)
            params_used.append(used.numpy())
            labels_all.append(labels.numpy())
            start += batch
        correct = np.concatenate(correct)
        params_used = np.concatenate(params_used)
        labels_all = np.concatenate(labels_all)
        report = localization.localization_report(params_used, boxes[: len(correct)], CANVAS)
        entry = {
            "description": description,
            "top1_per_glimpse": correct.mean(0).tolist(),
            "glimpse_classifier_top1_glimpse2": float(np.concatenate(glimpse_correct)[:, 1].mean()),
            "median_center_error_px": report["median_center_error_px"],
            "median_iou": report["median_iou"],
            "mean_scale": report["mean_scale"],
        }
        if name == "learned":
            entry.update(error_structure(params_used, boxes[: len(correct)], labels_all, correct))
        results[name] = entry
    return results


def offset_readout(features, offsets, fitted, ridge=1e-2):
    """A ridge regression from glimpse features to the item's offset in the glimpse,
    fitted on the first `fitted` rows and applied to the rest.

    Args:
        features: (N, D) backbone features of glimpses.
        offsets: (N, 2) the offset to read, px (in `refinement`: the glimpse's centre
            minus the item's).
        fitted: rows to fit on.
        ridge: L2 weight (the bias is not penalized).

    Returns:
        (N - fitted, 2) the offsets the readout gives for the other rows.
    """
    import numpy as np  # noqa: PLC0415

    design = np.concatenate([features, np.ones((len(features), 1))], 1).astype(np.float64)
    penalty = ridge * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0
    train = design[:fitted]
    weights = np.linalg.solve(train.T @ train + penalty, train.T @ np.asarray(offsets[:fitted], np.float64))
    return design[fitted:] @ weights


def refinement(model, dataset, boxes, seed, offset_px=10.0, held_out=0.25):
    """How much of where the item lies a glimpse's features hold, against how much of it
    the localization network uses.

    Glimpse 2 is put at s = 0.25 (the item's size) with its centre moved off the box's
    by an offset uniform in [-offset_px, offset_px] per axis; the model proposes glimpse
    3 from there as it would from its own glimpse 2. A ridge regression from glimpse 2's
    backbone features to the offset, fitted on the first images, corrects glimpse 2's
    centre on the `held_out` rest. Returns median centre errors (px) on those: glimpse
    2 (the offset alone), glimpse 2 corrected by the readout, and the model's glimpse 3.
    """
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from mgnet_tf import localization  # noqa: PLC0415

    run = make_runner(model)
    centres = box_params(boxes)
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-offset_px, offset_px, (len(boxes), 2))  # (x, y) px
    features, used, start = [], [], 0
    for images, _ in dataset:
        batch = int(images.shape[0])
        # The item's centre sits at -offset from the glimpse's.
        centre = centres[start : start + batch] + offsets[start : start + batch] * 2.0 / (CANVAS - 1)
        oracle = tf.constant(np.concatenate([np.full((batch, 1), 0.25), centre], 1), tf.float32)
        used.append(run(images, oracle, "second")[2].numpy())
        glimpse = model.sampler(model.normalize(images), oracle)
        features.append(np.asarray(model.backbone(glimpse, training=False)))
        start += batch
    features, used = np.concatenate(features), np.concatenate(used)
    fitted = int(round(len(features) * (1.0 - held_out)))
    rest = slice(fitted, len(features))
    corrected = offsets[rest] - offset_readout(features, offsets, fitted)
    third = localization.glimpse_boxes(used[rest, 2], CANVAS)
    third_error = centres_px(third) - centres_px(boxes[: len(features)][rest])
    return {
        "offset_px": offset_px,
        "fitted_images": fitted,
        "held_out_images": len(features) - fitted,
        "median_error_glimpse2_px": float(np.median(np.hypot(*offsets[rest].T))),
        "median_error_readout_px": float(np.median(np.hypot(*corrected.T))),
        "median_error_glimpse3_px": float(np.median(np.hypot(*third_error.T))),
        "mean_scale_glimpse3": float(used[rest, 2, 0].mean()),
    }


def error_structure(params, boxes, labels, correct, step=2, bins=(0, 4, 8, 14, 1e9)):
    """At glimpse `step` + 1: top-1 by the glimpse's own centre error, and the error
    split into per-class mean offsets and what varies within a class."""
    import numpy as np  # noqa: PLC0415

    from mgnet_tf import localization  # noqa: PLC0415

    windows = localization.glimpse_boxes(params[:, step], CANVAS)
    error = centres_px(windows) - centres_px(boxes)
    distance = np.hypot(error[:, 0], error[:, 1])
    by_error = []
    for low, high in zip(bins[:-1], bins[1:]):
        chosen = (distance >= low) & (distance < high)
        if chosen.any():
            by_error.append(
                {"from_px": low, "to_px": None if high >= 1e9 else high, "share": float(chosen.mean()),
                 "top1": float(correct[chosen, step].mean())}
            )
    class_means = np.stack([error[labels == c].mean(0) for c in np.unique(labels)])
    within = np.concatenate([error[labels == c] - class_means[i] for i, c in enumerate(np.unique(labels))])
    return {
        "error_glimpse": step + 1,
        "top1_by_own_error": by_error,
        "class_offset_rms_px": float(np.sqrt(np.mean(np.sum(class_means**2, 1)))),
        "within_class_rms_px": float(np.sqrt(np.mean(np.sum(within**2, 1)))),
    }


def table(name, results):
    steps = len(results["learned"]["top1_per_glimpse"])
    lines = [
        f"| {name}: glimpses 2..{steps} | test top-1 % after 1..{steps} "
        "| glimpse classifier on glimpse 2 % | mean s, glimpse 3 | median centre error px, glimpse 3 |",
        "|---|---|---|---|---|",
    ]
    for entry in results.values():
        lines.append(
            f"| {entry['description']} | "
            + " / ".join(f"{100 * a:.2f}" for a in entry["top1_per_glimpse"])
            + f" | {100 * entry['glimpse_classifier_top1_glimpse2']:.2f}"
            f" | {entry['mean_scale'][2]:.3f} | {entry['median_center_error_px'][2]:.1f} |"
        )
    learned = results["learned"]
    lines.append("")
    lines.append(
        f"The model's own centre error at glimpse {learned['error_glimpse']}: per-class mean "
        f"offsets {learned['class_offset_rms_px']:.1f} px rms, the rest within classes "
        f"{learned['within_class_rms_px']:.1f} px rms; top-1 by that error: "
        + ", ".join(
            f"{b['from_px']:g}-{b['to_px'] if b['to_px'] is not None else 'more':} px "
            f"({100 * b['share']:.0f}% of images) {100 * b['top1']:.1f}%"
            for b in learned["top1_by_own_error"]
        )
        + "."
    )
    return "\n".join(lines)


def refinement_line(refined):
    return (
        f"Position in the features: glimpse 2 put {refined['median_error_glimpse2_px']:.1f} px "
        f"(median) off the item's centre (uniform within +-{refined['offset_px']:g} px per axis, "
        f"s = 0.25); a linear readout of its backbone features (fitted on {refined['fitted_images']} "
        f"images) brings it to {refined['median_error_readout_px']:.1f} px on the other "
        f"{refined['held_out_images']}; the model's localization network puts glimpse 3 "
        f"{refined['median_error_glimpse3_px']:.1f} px off (mean s {refined['mean_scale_glimpse3']:.2f})."
    )


def main(argv):
    del argv
    import keras  # noqa: PLC0415

    import mgnet_tf  # noqa: F401, PLC0415  (registers the layers)
    import pipelines  # noqa: PLC0415

    if not os.path.isfile(FLAGS.model):
        raise app.UsageError(f"--model={FLAGS.model!r}: no such file; expected a trained MGNet .keras file")
    model = keras.models.load_model(FLAGS.model, compile=False)
    if getattr(model, "num_glimpses", 1) < 2 or model.image_size != CANVAS:
        raise app.UsageError(
            f"--model={FLAGS.model!r}: expected an MGNet with 2 or more glimpses on "
            f"{CANVAS} px translated Fashion-MNIST canvases"
        )
    count = FLAGS.examples or pipelines.num_examples(DATASET, "test", FLAGS.data_dir)
    dataset = pipelines.build_dataset(DATASET, "test", FLAGS.data_dir, FLAGS.batch_size, seed=FLAGS.seed)
    dataset = dataset.unbatch().take(count).batch(FLAGS.batch_size)
    boxes = pipelines.object_boxes(DATASET, "test", count, FLAGS.seed)
    results = probe(model, dataset, boxes, FLAGS.seed)
    # Glimpse 3 must exist to be compared with the readout.
    refined = refinement(model, dataset, boxes, FLAGS.seed) if model.num_glimpses >= 3 else None
    name = FLAGS.name or os.path.basename(os.path.dirname(os.path.abspath(FLAGS.model)))
    record = {
        "model": os.path.relpath(os.path.abspath(FLAGS.model), common.REPO),
        "test_examples": count,
        "seed": FLAGS.seed,
        "commit": common.commit(),
        "machine": common.machine(),
        "conditions": results,
        "refinement": refined,
    }
    os.makedirs(FLAGS.store_dir, exist_ok=True)
    with open(os.path.join(FLAGS.store_dir, f"{name}.json"), "w") as f:
        json.dump(record, f, indent=1)
    body = "\n".join(
        [
            f"- Command: `{common.command_line()}`",
            f"- Model `{record['model']}`, the first {count} test images (seed {FLAGS.seed}), "
            f"commit {record['commit']}, {record['machine']}; {common.versions()}",
            "",
            table(name, results),
            *(["", refinement_line(refined)] if refined else []),
        ]
    )
    print(body)
    if FLAGS.results:
        common.write_between_markers(FLAGS.results, BEGIN, END, body)


if __name__ == "__main__":
    define_flags()
    app.run(main)
