"""Anytime inference on a trained pair: MGNet's per-image early exit against FF-Net, at
batch 1, in each runtime, on real images.

    python bench/anytime.py                    # the shipped translated Fashion-MNIST pair
    python bench/anytime.py --ff=runs/ff/final.keras --mgnet=runs/mgnet/final.keras \
        --runtimes=litert --examples=1000 --json

1. The threshold: on the first --validation_examples images of the validation split, the
   lowest confidence threshold (of a grid) whose dynamic-exit top-1 stays within
   --max_drop points of --reference: MGNet with all glimpses (default) or FF-Net
   (`--reference=ff`, the exit at FF-Net's accuracy); with --confidence, within it at
   that confidence (an upper bound on the drop). Nothing is chosen on the test split.
2. Accuracy on the test split (the whole split, or the first --accuracy_examples images)
   and on the timed images: FF-Net, MGNet after all glimpses, MGNet with the dynamic exit
   at that threshold, and its mean glimpses.
3. Latency per image at batch 1, image by image, FF-Net and MGNet interleaved, in each
   runtime: `function` (tf.function), `xla` (tf.function with XLA) and `litert` (the
   export's LiteRT files, XNNPACK). MGNet's dynamic exit runs as a served model runs it:
   the SavedModel's early-exit graph (`serving_early_exit`, which stops computing once
   the image is confident) and LiteRT's step file (`mgnet_tf.litert.Runner.early_exit`).
   Each timed call follows --warm_calls untimed calls of the same model on the same
   image, so that every model is timed with its weights in the processor's cache (as a
   server running it alone), whichever model ran before it.
   Means and medians over the test images; the dynamic exit's predictions are checked
   against the rule applied offline. --sweep adds more thresholds, each timed in the
   same interleaved loop and reported with its top-1 on the validation and test images.
"""

import json
import os
import platform
import statistics
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from bench import trained_pair  # noqa: E402
from mgnet_tf.early_exit import calibrate_threshold, dynamic_exit  # noqa: E402

flags.DEFINE_integer("examples", 500, "Test images timed and evaluated.")
flags.DEFINE_integer("validation_examples", 2000, "Validation images for the threshold.")
flags.DEFINE_float("max_drop", 0.5, "Top-1 points the dynamic exit may lose against --reference.")
flags.DEFINE_enum(
    "reference",
    "mgnet_all",
    ["mgnet_all", "ff"],
    "What the threshold keeps the exit within --max_drop of, on the validation images: MGNet with "
    "all glimpses, or FF-Net (the exit at FF-Net's accuracy).",
)
flags.DEFINE_integer(
    "accuracy_examples", 0, "Test images for the top-1 figures (0: the whole split); timing uses --examples."
)
flags.DEFINE_list("runtimes", ["function", "xla", "litert"], "function (tf), xla, litert.")
flags.DEFINE_integer("litert_threads", os.cpu_count(), "LiteRT (XNNPACK) threads.")
flags.DEFINE_enum(
    "litert_quantize",
    "none",
    ["none", "float16", "dynamic_range"],
    "Weights of both models' LiteRT files (--format=litert --quantize). The top-1 figures stay "
    "the Keras models'; the served exit's agreement with them is reported per runtime.",
)
flags.DEFINE_integer("warmup", 5, "Untimed images first, per runtime.")
flags.DEFINE_integer(
    "warm_calls",
    1,
    "Untimed calls of the same model on the same image right before each timed one, so that "
    "each is timed with its own weights in the cache (as a server running that model alone), "
    "not after the other models evicted them. 0: back to back.",
)
flags.DEFINE_float(
    "confidence",
    None,
    "With it (e.g. 0.95), a threshold qualifies only where the upper confidence bound of its drop "
    "is within --max_drop (mgnet_tf.early_exit.calibrate_threshold): the promise then holds on new "
    "images, not only on the validation images it was chosen on.",
)
flags.register_validator(
    "confidence", lambda value: value is None or 0 < value < 1, "--confidence: expected a probability in (0, 1), e.g. 0.95"
)
flags.DEFINE_list(
    "sweep", [], "More thresholds to time the exit at, side by side with the chosen one (e.g. 0.95,0.97,1)."
)
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
FLAGS = flags.FLAGS


def _top1(probabilities, labels):
    return float(np.mean(probabilities.argmax(-1) == labels))


def _runtime_calls(runtime, ff_net, mgnet, scratch):
    """(ff(image) -> probabilities, mgnet_exit(image, threshold) -> (probabilities,
    glimpses), mgnet_all(image) -> probabilities) in `runtime`, each on one
    (1, S, S, C) image."""
    if runtime == "litert":
        from mgnet_tf import litert  # noqa: PLC0415

        runners = {}
        for name in ("ff", "mgnet"):  # --ff and --mgnet
            trained_pair.export_litert(getattr(FLAGS, name), os.path.join(scratch, name), FLAGS.litert_quantize)
            runners[name] = litert.Runner(os.path.join(scratch, name), FLAGS.litert_threads)
        return (
            lambda x: runners["ff"].run(x)["probabilities_per_glimpse"][0, -1],
            lambda x, threshold: runners["mgnet"].early_exit(x, threshold),
            lambda x: runners["mgnet"].run(x)["probabilities_per_glimpse"][0, -1],
        )
    from mgnet_tf.export import _Serving  # noqa: PLC0415

    xla = runtime == "xla"
    serving = _Serving(mgnet)
    spec = [tf.TensorSpec((1, mgnet.image_size, mgnet.image_size, mgnet.channels), tf.float32)]
    ff = tf.function(lambda x: tf.nn.softmax(ff_net(x)["logits"])[0, -1], input_signature=spec, jit_compile=xla)
    every = tf.function(lambda x: tf.nn.softmax(mgnet(x)["logits"])[0, -1], input_signature=spec, jit_compile=xla)

    def early(x, threshold):
        out = serving.early_exit(x, threshold, prepared=True)
        return out["probabilities"][0], out["glimpses"][0]

    exit_ = tf.function(early, input_signature=[*spec, tf.TensorSpec((), tf.float32)], jit_compile=xla)

    def exit_call(x, threshold):
        probabilities, glimpses = exit_(x, tf.constant(threshold, tf.float32))
        return probabilities.numpy(), int(glimpses)

    return (lambda x: ff(x).numpy(), exit_call, lambda x: every(x).numpy())


def time_runtime(runtime, ff_net, mgnet, thresholds, images, scratch):
    """Per-image times and predictions; the exit's under the keys `mgnet_exit` (the
    first threshold) and `mgnet_exit_{threshold}` (the others)."""
    ff, exit_call, every = _runtime_calls(runtime, ff_net, mgnet, scratch)
    names = ["mgnet_exit"] + [f"mgnet_exit_{t}" for t in thresholds[1:]]
    for image in images[: FLAGS.warmup]:
        ff(image[None]), every(image[None])
        for threshold in thresholds:
            exit_call(image[None], threshold)
    times = {"ff": [], **{name: [] for name in names}, "mgnet_all": []}
    predictions = {"ff": [], **{name: [] for name in names}, **{f"glimpses_{name}": [] for name in names}}
    def timed(call, *args):
        return trained_pair.timed(call, *args, warm_calls=FLAGS.warm_calls)

    for image in images:
        x = image[None]
        p, seconds = timed(ff, x)
        times["ff"].append(seconds)
        predictions["ff"].append(int(np.argmax(p)))
        for name, threshold in zip(names, thresholds):
            (p, used), seconds = timed(exit_call, x, threshold)
            times[name].append(seconds)
            predictions[name].append(int(np.argmax(p)))
            predictions[f"glimpses_{name}"].append(used)
        times["mgnet_all"].append(timed(every, x)[1])
    summary = {
        f"{name}_{stat}_ms": 1000 * fn(values)
        for name, values in times.items()
        for stat, fn in (("mean", statistics.mean), ("median", statistics.median))
    }
    return summary, predictions


def _sweep_thresholds(values):
    """--sweep's values as floats >= 0 (the exit rule's range), or a flag error."""
    thresholds = []
    for value in values:
        try:
            threshold = float(value)
        except ValueError:
            threshold = -1.0
        if not threshold >= 0:
            raise app.UsageError(
                f"--sweep: {value!r} is not a threshold; expected numbers >= 0 (1 or more: every glimpse)"
            )
        thresholds.append(threshold)
    return thresholds


def main(argv):
    del argv
    ff_net, mgnet = trained_pair.load()
    size = mgnet.image_size
    val_images, val_labels = trained_pair.arrays("validation", FLAGS.validation_examples, size)
    val_probabilities = trained_pair.probabilities(mgnet, val_images)
    reference = None
    if FLAGS.reference == "ff":  # image by image: a paired comparison
        reference = trained_pair.probabilities(ff_net, val_images)[:, -1].argmax(-1) == val_labels
    threshold = calibrate_threshold(
        val_probabilities, val_labels, FLAGS.max_drop, reference, confidence=FLAGS.confidence
    )
    count = max(FLAGS.examples, FLAGS.accuracy_examples) if FLAGS.accuracy_examples else None
    all_images, all_labels = trained_pair.arrays("test", count, size)
    probabilities = trained_pair.probabilities(mgnet, all_images)
    offline_all, glimpses_all = (v.numpy() for v in dynamic_exit(probabilities, threshold))
    ff_probabilities = trained_pair.probabilities(ff_net, all_images)
    images, labels = all_images[: FLAGS.examples], all_labels[: FLAGS.examples]
    offline, glimpses = offline_all[: FLAGS.examples], glimpses_all[: FLAGS.examples]
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}",
        "warm_calls": FLAGS.warm_calls,
        "litert_quantize": FLAGS.litert_quantize,
        "ff": FLAGS.ff,
        "mgnet": FLAGS.mgnet,
        "threshold": threshold,
        "threshold_chosen_on": (
            f"first {len(val_labels)} validation images, within {FLAGS.max_drop} points of "
            + ("MGNet with all glimpses" if reference is None else f"FF-Net ({100 * reference.mean():.2f}%)")
            + ("" if FLAGS.confidence is None else f" with {FLAGS.confidence:.0%} confidence")
        ),
        "confidence": FLAGS.confidence,
        "test_examples": len(labels),
        "top1": {
            "ff": _top1(ff_probabilities[: FLAGS.examples, -1], labels),
            "mgnet_all": _top1(probabilities[: FLAGS.examples, -1], labels),
            "mgnet_exit": float(np.mean(offline == labels)),
        },
        "mean_glimpses": float(glimpses.mean()),
        "accuracy_examples": len(all_labels),
        "top1_accuracy_examples": {
            "ff": _top1(ff_probabilities[:, -1], all_labels),
            "mgnet_all": _top1(probabilities[:, -1], all_labels),
            "mgnet_exit": float(np.mean(offline_all == all_labels)),
        },
        "mean_glimpses_accuracy_examples": float(glimpses_all.mean()),
        "runtimes": {},
    }
    for name, top1, used, n in (
        ("timed", results["top1"], results["mean_glimpses"], len(labels)),
        ("accuracy", results["top1_accuracy_examples"], results["mean_glimpses_accuracy_examples"], len(all_labels)),
    ):
        print(
            f"threshold {threshold} ({results['threshold_chosen_on']}); {n} test images ({name}): top-1 FF "
            f"{100 * top1['ff']:.2f}  MGNet all {100 * top1['mgnet_all']:.2f}  dynamic "
            f"{100 * top1['mgnet_exit']:.2f} with {used:.2f} glimpses"
        )
    sweep = _sweep_thresholds(FLAGS.sweep)
    thresholds = [threshold, *sweep]
    offline_by = {"mgnet_exit": (offline, glimpses)}
    results["sweep"] = {}
    for value in sweep:
        name = f"mgnet_exit_{value}"
        test_predictions, test_glimpses = (v.numpy() for v in dynamic_exit(probabilities, value))
        val_predictions, _ = dynamic_exit(val_probabilities, value)
        offline_by[name] = (test_predictions[: FLAGS.examples], test_glimpses[: FLAGS.examples])
        results["sweep"][str(value)] = {
            "top1_validation": float(np.mean(val_predictions.numpy() == val_labels)),
            "top1_accuracy_examples": float(np.mean(test_predictions == all_labels)),
            "mean_glimpses_accuracy_examples": float(test_glimpses.mean()),
        }
        print(
            f"threshold {value}: top-1 {100 * results['sweep'][str(value)]['top1_validation']:.2f} on the "
            f"validation images, {100 * results['sweep'][str(value)]['top1_accuracy_examples']:.2f} with "
            f"{test_glimpses.mean():.2f} glimpses on the {len(all_labels)} test images"
        )
    with tempfile.TemporaryDirectory() as scratch:
        for runtime in ["function" if r == "tf" else r for r in FLAGS.runtimes]:
            summary, predictions = time_runtime(runtime, ff_net, mgnet, thresholds, images, scratch)
            for name, (expected, used) in offline_by.items():
                suffix = name[len("mgnet_exit") :]
                summary[f"exit{suffix}_agrees_with_offline_rule"] = float(
                    np.mean(np.array(predictions[name]) == expected)
                )
                summary[f"exit{suffix}_glimpses_agree"] = float(
                    np.mean(np.array(predictions[f"glimpses_{name}"]) == used)
                )
                summary[f"exit{suffix}_over_ff"] = summary[f"{name}_mean_ms"] / summary["ff_mean_ms"]
                # The served exit's own top-1 on the timed images (quantized files may differ).
                summary[f"exit{suffix}_top1_served"] = float(np.mean(np.array(predictions[name]) == labels))
            summary["ff_top1_served"] = float(np.mean(np.array(predictions["ff"]) == labels))
            results["runtimes"][runtime] = summary
            print(
                f"{runtime:8s} mean (median) ms per image: FF {summary['ff_mean_ms']:.2f} "
                f"({summary['ff_median_ms']:.2f})  MGNet exit {summary['mgnet_exit_mean_ms']:.2f} "
                f"({summary['mgnet_exit_median_ms']:.2f})  MGNet all {summary['mgnet_all_mean_ms']:.2f} "
                f"({summary['mgnet_all_median_ms']:.2f})  exit/FF {summary['exit_over_ff']:.2f}  "
                f"agrees with the offline rule on {100 * summary['exit_agrees_with_offline_rule']:.1f}% "
                f"(glimpses {100 * summary['exit_glimpses_agree']:.1f}%); served top-1 FF "
                f"{100 * summary['ff_top1_served']:.2f}, exit {100 * summary['exit_top1_served']:.2f}"
            )
            for value in sweep:
                name = f"mgnet_exit_{value}"
                print(
                    f"{'':8s} exit at {value}: {summary[f'{name}_mean_ms']:.2f} "
                    f"({summary[f'{name}_median_ms']:.2f}) ms, exit/FF {summary[f'exit_{value}_over_ff']:.2f}, "
                    f"agrees with the offline rule on "
                    f"{100 * summary[f'exit_{value}_agrees_with_offline_rule']:.1f}% "
                    f"(glimpses {100 * summary[f'exit_{value}_glimpses_agree']:.1f}%), served top-1 "
                    f"{100 * summary[f'exit_{value}_top1_served']:.2f}"
                )
    if FLAGS.json:
        print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)
