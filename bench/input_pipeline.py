"""Input pipeline throughput beside the training step's, so the input is never the
bottleneck unseen.

    python bench/input_pipeline.py                      # synthetic files, all data sets
    python bench/input_pipeline.py --datasets=tiny_imagenet --data_dir=/data/tiny-imagenet-200
    python bench/input_pipeline.py --json               # last stdout line: one JSON object

For each data set it measures images/s of `pipelines.build_dataset` (training mode)
with each augmentation policy, then images/s of MGNet's training step with the data
set's preset model and the same batch, fed from memory. Without --data_dir the
file-based sets are read from synthetic JPEGs written to a temporary directory
(Tiny ImageNet's 64 px, ImageNet-like 375x500), so decoding costs what it would.
Translated Fashion-MNIST reads the real files when they are installed.
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

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import pipelines  # noqa: E402
import presets  # noqa: E402
from mgnet_tf import MGNet  # noqa: E402

flags.DEFINE_list(
    "datasets",
    ["translated_fashion_mnist", "tiny_imagenet", "imagenet"],
    "Data sets to measure.",
)
flags.DEFINE_string(
    "data_dir", None, "Real data for a single data set (else synthetic)."
)
flags.DEFINE_integer("batch_size", 32, "Global batch for pipeline and train step.")
flags.DEFINE_integer("batches", 20, "Batches timed per measurement, after warm-up.")
flags.DEFINE_integer("repeats", 3, "Repeats; the median is reported.")
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
FLAGS = flags.FLAGS

# Synthetic file sets: (classes, images per class, height, width).
_SYNTHETIC = {"tiny_imagenet": (4, 40, 64, 64), "imagenet": (4, 40, 375, 500)}


def _write_synthetic(name, root):
    """Writes random JPEGs in the layout `name` reads; returns its data_dir."""
    classes, per_class, height, width = _SYNTHETIC[name]
    rng = np.random.default_rng(0)
    wnids = [f"n{c:08d}" for c in range(classes)]
    for split in ("train", "val"):
        for wnid in wnids:
            folder = (
                os.path.join(root, split, wnid, "images")
                if name == "tiny_imagenet" and split == "train"
                else os.path.join(root, split, wnid)
            )
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class if split == "train" else 1):
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                # Smooth noise compresses like a photograph, not like static.
                pixels = tf.image.resize(pixels[::8, ::8], (height, width)).numpy()
                data = tf.io.encode_jpeg(pixels.astype(np.uint8), quality=90).numpy()
                with open(os.path.join(folder, f"{wnid}_{i}.JPEG"), "wb") as file:
                    file.write(data)
    if name == "tiny_imagenet":
        with open(os.path.join(root, "wnids.txt"), "w") as file:
            file.write("\n".join(wnids) + "\n")
        os.makedirs(os.path.join(root, "val", "images"), exist_ok=True)
        lines = []
        for wnid in wnids:
            source = os.path.join(root, "val", wnid, f"{wnid}_0.JPEG")
            os.replace(source, os.path.join(root, "val", "images", f"{wnid}_0.JPEG"))
            os.rmdir(os.path.join(root, "val", wnid))
            lines.append(f"{wnid}_0.JPEG\t{wnid}\t0\t0\t63\t63")
        with open(os.path.join(root, "val", "val_annotations.txt"), "w") as file:
            file.write("\n".join(lines) + "\n")
    return root


def _median_rate(run_once, images_per_run):
    rates = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        run_once()
        rates.append(images_per_run / (time.perf_counter() - start))
    return statistics.median(rates)


def _pipeline_rate(dataset):
    """Images/s over FLAGS.batches batches, repeating the data as needed."""
    dataset = dataset.repeat()
    iterator = iter(dataset)
    for _ in range(3):  # warm-up: file listing, autotuning, first decodes
        next(iterator)

    def run_once():
        for _ in range(FLAGS.batches):
            next(iterator)

    return _median_rate(run_once, FLAGS.batches * FLAGS.batch_size)


def _train_rate(name, info):
    """Images/s of the preset model's train step on one in-memory batch."""
    config = presets.preset(name)
    model = MGNet.from_settings(
        config, num_classes=info.num_classes, channels=info.channels
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    size = config["image_size"]
    images = np.random.rand(FLAGS.batch_size, size, size, info.channels).astype(
        "float32"
    )
    labels = np.arange(FLAGS.batch_size) % info.num_classes
    model.train_on_batch(images, labels)  # traces the step

    def run_once():
        for _ in range(max(FLAGS.batches // 4, 2)):
            model.train_on_batch(images, labels)

    return _median_rate(run_once, max(FLAGS.batches // 4, 2) * FLAGS.batch_size)


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "datasets": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        for name in FLAGS.datasets:
            data_dir = FLAGS.data_dir
            if data_dir is None and name in _SYNTHETIC:
                data_dir = _write_synthetic(name, os.path.join(scratch, name))
            info = pipelines.dataset_info(name, data_dir)
            policies = (
                ("none",)
                if name.startswith("translated")
                else pipelines.augment.POLICIES
            )
            row = {}
            for policy in policies:
                dataset = pipelines.build_dataset(
                    name,
                    "train",
                    data_dir,
                    FLAGS.batch_size,
                    image_size=presets.preset(name)["image_size"],
                    training=True,
                    augment=policy,
                    seed=0,
                )
                row[f"pipeline_{policy}"] = round(_pipeline_rate(dataset), 1)
            row["train_step"] = round(_train_rate(name, info), 1)
            results["datasets"][name] = row
            print(
                f"{name:26s} "
                + "  ".join(f"{k}: {v:8.1f} img/s" for k, v in row.items())
            )
    if FLAGS.json:
        print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)
