"""What naming undecodable files costs the input pipeline.

    python bench/skip_undecodable.py                 # 4,000 synthetic 64 px JPEGs
    python bench/skip_undecodable.py --images=20000 --size=375 --repeats=7

A file that looks complete (JPEG start and end markers) but still fails to decode
is dropped by the folder pipelines. `SkippedFiles.map_or_skip` names and counts it;
the plain `map` + `ignore_errors` it replaced dropped it silently. Both read the
same files (one undecodable among them) with the same evaluation transform, one
pass each, alternated `--repeats` times in one process; the script prints images/s
of each (median and range) and their ratio.
"""

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

import pipelines  # noqa: E402
from pipelines.decode import SkippedFiles  # noqa: E402
from pipelines.transform import EvalTransform  # noqa: E402

flags.DEFINE_integer("images", 4000, "Synthetic JPEG files to read per pass.")
flags.DEFINE_integer("size", 64, "Their side in pixels (64: Tiny ImageNet).")
flags.DEFINE_integer("repeats", 5, "Passes per method, alternated.")
flags.DEFINE_integer("batch_size", 128, "Batch size of the pass.")
FLAGS = flags.FLAGS


def write_files(root, count, size):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        path = os.path.join(root, f"{i:06d}.jpg")
        tf.io.write_file(path, tf.io.encode_jpeg(image))
        paths.append(path)
    bad = os.path.join(root, "bad.jpg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8garbage\xff\xd9")  # passes the marker check, fails to decode
    paths.insert(count // 2, bad)
    return paths


def files(paths):
    dataset = tf.data.Dataset.from_tensor_slices((paths, np.zeros(len(paths), np.int32)))
    return dataset.map(
        lambda path, label: (path, tf.io.read_file(path), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def silent(paths, transform):
    dataset = files(paths).map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.ignore_errors()


def named(paths, transform):
    return SkippedFiles().map_or_skip(files(paths), transform)


def one_pass(dataset, batch_size):
    start = time.perf_counter()
    count = 0
    for images, _ in dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE):
        count += int(images.shape[0])
    return count, time.perf_counter() - start


def main(argv):
    del argv
    transform = pipelines.eval_map(EvalTransform(FLAGS.size, 3))
    with tempfile.TemporaryDirectory() as root:
        paths = write_files(root, FLAGS.images, FLAGS.size)
        rates = {"map + ignore_errors (silent)": [], "map_or_skip (named)": []}
        builders = dict(zip(rates, (silent, named)))
        for name, build in builders.items():  # warm-up pass, not timed
            one_pass(build(paths, transform), FLAGS.batch_size)
        for _ in range(FLAGS.repeats):
            for name, build in builders.items():
                count, seconds = one_pass(build(paths, transform), FLAGS.batch_size)
                if count != FLAGS.images:
                    raise SystemExit(f"{name}: {count} images, expected {FLAGS.images}")
                rates[name].append(count / seconds)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"TensorFlow {tf.__version__}; {FLAGS.images} JPEGs of {FLAGS.size} px + 1 "
        f"undecodable; {FLAGS.repeats} alternated passes"
    )
    for name, values in rates.items():
        print(
            f"{name:30s} median {statistics.median(values):8.0f} images/s "
            f"(range {min(values):.0f}-{max(values):.0f})"
        )
    a, b = (statistics.median(v) for v in rates.values())
    print(f"ratio named / silent: {b / a:.2f}")


if __name__ == "__main__":
    app.run(main)
