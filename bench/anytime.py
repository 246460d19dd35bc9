"""Anytime inference on a trained pair: MGNet's per-image early exit against FF-Net, at
batch 1, in each runtime, on real images.

    python bench/anytime.py                    # the shipped translated Fashion-MNIST pair
    python bench/anytime.py --ff=runs/ff/final.keras --mgnet=runs/mgnet/final.keras \
        --runtimes=litert --examples=1000 --json

1. The threshold: on the first --validation_examples images of the validation split, the
   lowest confidence threshold (of a grid) whose dynamic-exit top-1 stays within
   --max_drop points of --reference: MGNet with all glimpses (default) or FF-Net
   (`--reference=ff`, the exit at FF-Net's accuracy). Nothing is chosen on the test split.
2. Accuracy on the test split (the whole split, or the first --accuracy_examples images)
   and on the timed images: FF-Net, MGNet after all glimpses, MGNet with the dynamic exit
   at that threshold, and its mean glimpses.
3. Latency per image at batch 1, image by image, FF-Net and MGNet interleaved, in each
   runtime: `function` (tf.function), `xla` (tf.function with XLA) and `litert` (the
   export's LiteRT files, XNNPACK). MGNet's dynamic exit runs as a served model runs it:
   the SavedModel's early-exit graph (`serving_early_exit`, which stops computing once
   the image is confident) and LiteRT's step files (`mgnet_tf.litert.Runner.early_exit`).
   Means and medians over the test images; the dynamic exit's predictions are checked
   against the rule applied offline.
"""

import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from mgnet_tf import files  # noqa: E402
from mgnet_tf.early_exit import calibrate_threshold, dynamic_exit  # noqa: E402
from reports.data import EvalData  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINTS = os.path.join(REPO, "checkpoints")
flags.DEFINE_string("ff", os.path.join(CHECKPOINTS, "translated_fashion_mnist_ff.keras"), "FF-Net .keras file.")
flags.DEFINE_string("mgnet", os.path.join(CHECKPOINTS, "translated_fashion_mnist_mgnet.keras"), "MGNet .keras file.")
flags.DEFINE_string("dataset", "translated_fashion_mnist", "Data set of both models.")
flags.DEFINE_string("data_dir", None, "The data set's files (default: see docs).")
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
flags.DEFINE_integer("warmup", 5, "Untimed images first, per runtime.")
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
FLAGS = flags.FLAGS


def _arrays(split, count, image_size):
    data = EvalData(FLAGS.dataset, split, data_dir=FLAGS.data_dir, max_examples=count)
    images, labels = zip(*((x.numpy(), y.numpy()) for x, y in data.batches(image_size)))
    return np.concatenate(images), np.concatenate(labels)


def _probabilities(model, images):
    out = [
        tf.nn.softmax(model(images[i : i + 256], training=False)["logits"]).numpy()
        for i in range(0, len(images), 256)
    ]
    return np.concatenate(out)


def _top1(probabilities, labels):
    return float(np.mean(probabilities.argmax(-1) == labels))


def _runtime_calls(runtime, ff_net, mgnet, threshold, scratch):
    """(ff(image) -> probabilities, mgnet_exit(image) -> (probabilities, glimpses),
    mgnet_all(image) -> probabilities) in `runtime`, each on one (1, S, S, C) image."""
    if runtime == "litert":
        from mgnet_tf import litert  # noqa: PLC0415
        from mgnet_tf.export import export_litert  # noqa: PLC0415

        runners = {}
        for name, model in (("ff", ff_net), ("mgnet", mgnet)):
            export_litert(model, os.path.join(scratch, name))
            runners[name] = litert.Runner(os.path.join(scratch, name), FLAGS.litert_threads)
        return (
            lambda x: runners["ff"].run(x)["probabilities_per_glimpse"][0, -1],
            lambda x: runners["mgnet"].early_exit(x, threshold),
            lambda x: runners["mgnet"].run(x)["probabilities_per_glimpse"][0, -1],
        )
    from mgnet_tf.export import _Serving  # noqa: PLC0415

    xla = runtime == "xla"
    serving = _Serving(mgnet)
    spec = [tf.TensorSpec((1, mgnet.image_size, mgnet.image_size, mgnet.channels), tf.float32)]
    ff = tf.function(lambda x: tf.nn.softmax(ff_net(x)["logits"])[0, -1], input_signature=spec, jit_compile=xla)
    every = tf.function(lambda x: tf.nn.softmax(mgnet(x)["logits"])[0, -1], input_signature=spec, jit_compile=xla)

    def early(x):
        out = serving.early_exit(x, threshold, prepared=True)
        return out["probabilities"][0], out["glimpses"][0]

    exit_ = tf.function(early, input_signature=spec, jit_compile=xla)

    def exit_call(x):
        probabilities, glimpses = exit_(x)
        return probabilities.numpy(), int(glimpses)

    return (lambda x: ff(x).numpy(), exit_call, lambda x: every(x).numpy())


def time_runtime(runtime, ff_net, mgnet, threshold, images, scratch):
    ff, exit_call, every = _runtime_calls(runtime, ff_net, mgnet, threshold, scratch)
    for image in images[: FLAGS.warmup]:
        ff(image[None]), exit_call(image[None]), every(image[None])
    times = {"ff": [], "mgnet_exit": [], "mgnet_all": []}
    predictions = {"ff": [], "mgnet_exit": [], "glimpses": []}
    for image in images:
        x = image[None]
        start = time.perf_counter()
        p = ff(x)
        times["ff"].append(time.perf_counter() - start)
        predictions["ff"].append(int(np.argmax(p)))
        start = time.perf_counter()
        p, used = exit_call(x)
        times["mgnet_exit"].append(time.perf_counter() - start)
        predictions["mgnet_exit"].append(int(np.argmax(p)))
        predictions["glimpses"].append(used)
        start = time.perf_counter()
        every(x)
        times["mgnet_all"].append(time.perf_counter() - start)
    summary = {
        f"{name}_{stat}_ms": 1000 * fn(values)
        for name, values in times.items()
        for stat, fn in (("mean", statistics.mean), ("median", statistics.median))
    }
    return summary, predictions


def main(argv):
    del argv
    ff_net, mgnet = files.load_model(FLAGS.ff), files.load_model(FLAGS.mgnet)
    size = mgnet.image_size
    val_images, val_labels = _arrays("validation", FLAGS.validation_examples, size)
    val_probabilities = _probabilities(mgnet, val_images)
    reference = None
    if FLAGS.reference == "ff":
        reference = _top1(_probabilities(ff_net, val_images)[:, -1], val_labels)
    threshold = calibrate_threshold(val_probabilities, val_labels, FLAGS.max_drop, reference)
    count = max(FLAGS.examples, FLAGS.accuracy_examples) if FLAGS.accuracy_examples else None
    all_images, all_labels = _arrays("test", count, size)
    probabilities = _probabilities(mgnet, all_images)
    offline_all, glimpses_all = (v.numpy() for v in dynamic_exit(probabilities, threshold))
    ff_probabilities = _probabilities(ff_net, all_images)
    images, labels = all_images[: FLAGS.examples], all_labels[: FLAGS.examples]
    offline, glimpses = offline_all[: FLAGS.examples], glimpses_all[: FLAGS.examples]
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}",
        "ff": FLAGS.ff,
        "mgnet": FLAGS.mgnet,
        "threshold": threshold,
        "threshold_chosen_on": (
            f"first {len(val_labels)} validation images, within {FLAGS.max_drop} points of "
            + ("MGNet with all glimpses" if reference is None else f"FF-Net ({100 * reference:.2f}%)")
        ),
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
    with tempfile.TemporaryDirectory() as scratch:
        for runtime in ["function" if r == "tf" else r for r in FLAGS.runtimes]:
            summary, predictions = time_runtime(runtime, ff_net, mgnet, threshold, images, scratch)
            summary["exit_agrees_with_offline_rule"] = float(
                np.mean(np.array(predictions["mgnet_exit"]) == offline)
            )
            summary["exit_glimpses_agree"] = float(np.mean(np.array(predictions["glimpses"]) == glimpses))
            summary["exit_over_ff"] = summary["mgnet_exit_mean_ms"] / summary["ff_mean_ms"]
            results["runtimes"][runtime] = summary
            print(
                f"{runtime:8s} mean (median) ms per image: FF {summary['ff_mean_ms']:.2f} "
                f"({summary['ff_median_ms']:.2f})  MGNet exit {summary['mgnet_exit_mean_ms']:.2f} "
                f"({summary['mgnet_exit_median_ms']:.2f})  MGNet all {summary['mgnet_all_mean_ms']:.2f} "
                f"({summary['mgnet_all_median_ms']:.2f})  exit/FF {summary['exit_over_ff']:.2f}  "
                f"agrees with the offline rule on {100 * summary['exit_agrees_with_offline_rule']:.1f}% "
                f"(glimpses {100 * summary['exit_glimpses_agree']:.1f}%)"
            )
    if FLAGS.json:
        print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)
