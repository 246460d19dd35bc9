"""LiteRT files with float32, float16 and dynamic-range (int8) weights on a trained pair:
file size, top-1 after each glimpse on the test split, and latency at batch 1.

    python bench/litert_quantized.py                  # the shipped translated Fashion-MNIST pair
    python bench/litert_quantized.py --ff=runs/ff/final.keras --mgnet=runs/mgnet/final.keras \
        --examples=2000 --json

Each model is exported once per quantization (`python -m mgnet_tf.export --format=litert
--quantize=...`), the whole-loop file (`mgnet.tflite`: every glimpse) runs on the test
images one by one, and its per-glimpse top-1 is compared with the Keras model's on the
same images. Latency: mean and median per image over the same images, the quantizations
of one model interleaved image by image, each call after one untimed call of its own.
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
from mgnet_tf import litert  # noqa: E402
from mgnet_tf.evaluation import accuracy_per_glimpse  # noqa: E402

flags.DEFINE_integer("examples", 0, "Test images (0: the whole split).")
flags.DEFINE_list("quantize", list(litert.QUANTIZATIONS), "Quantizations to compare.")
flags.DEFINE_integer("litert_threads", os.cpu_count(), "LiteRT (XNNPACK) threads.")
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
FLAGS = flags.FLAGS


def _measure(model, images, labels, scratch, name):
    report = {"keras_top1": accuracy_per_glimpse(trained_pair.probabilities(model, images), labels)}
    runners = {}
    for quantize in FLAGS.quantize:
        directory = os.path.join(scratch, f"{name}_{quantize}")
        trained_pair.export_litert(getattr(FLAGS, name), directory, quantize)
        runners[quantize] = litert.Runner(directory, FLAGS.litert_threads)
        report[quantize] = {"file_mb": os.path.getsize(os.path.join(directory, "mgnet.tflite")) / 2**20}
    outputs = {q: [] for q in runners}
    times = {q: [] for q in runners}
    for image in images:
        for quantize, runner in runners.items():
            out, seconds = trained_pair.timed(runner.run, image)
            times[quantize].append(seconds)
            outputs[quantize].append(out["probabilities_per_glimpse"][0])
    for quantize in runners:
        report[quantize].update(
            top1=accuracy_per_glimpse(np.stack(outputs[quantize]), labels),
            mean_ms=1000 * statistics.mean(times[quantize]),
            median_ms=1000 * statistics.median(times[quantize]),
        )
    return report


def main(argv):
    del argv
    unknown = set(FLAGS.quantize) - set(litert.QUANTIZATIONS)
    if unknown:
        raise app.UsageError(f"--quantize: {sorted(unknown)} unknown; expected some of {litert.QUANTIZATIONS}")
    models = dict(zip(("ff", "mgnet"), trained_pair.load()))
    images, labels = trained_pair.arrays("test", FLAGS.examples or None, models["mgnet"].image_size)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}",
        "test_examples": len(labels),
    }
    with tempfile.TemporaryDirectory() as scratch:
        for name, model in models.items():
            results[name] = report = _measure(model, images, labels, scratch, name)
            keras_top1 = " / ".join(f"{100 * a:.2f}" for a in report["keras_top1"])
            print(f"{name}: Keras top-1 after each glimpse {keras_top1}")
            for quantize in FLAGS.quantize:
                r = report[quantize]
                top1 = " / ".join(f"{100 * a:.2f}" for a in r["top1"])
                print(
                    f"  {quantize:13s} {r['file_mb']:.2f} MB  top-1 {top1}  "
                    f"{r['mean_ms']:.3f} ({r['median_ms']:.3f}) ms mean (median)"
                )
    if FLAGS.json:
        print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)
