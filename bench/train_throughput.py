"""Training throughput (images/s) and peak memory of FF-Net against MGNet.

    python bench/train_throughput.py                          # ResNet-18, 224 px, batch 32
    python bench/train_throughput.py --json                   # last line: one JSON object
    python bench/train_throughput.py --backbone=vanilla_cnn --image_size=32 --num_glimpses=2 \
        --downsample=2 --batch_size=4 --steps=3 --rounds=1    # a quick check
    KERAS_BACKEND=jax python bench/train_throughput.py        # the same on JAX (jax.jit)

Peak memory (resident set) belongs to a process, so each measurement runs in its own
child process: FF-Net, MGNet, FF-Net, ... for --rounds rounds, and each figure is the
median over rounds. A child builds the model, compiles the train step (`fit` on an
in-memory batch), runs --warmup steps, then times --steps steps, and reports images/s
and its peak RSS (`ru_maxrss`, which includes TensorFlow's own ~0.5 GB).
"""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from bench import models  # noqa: E402

flags.DEFINE_integer("batch_size", 32, "Training batch.")
flags.DEFINE_integer("steps", 10, "Timed steps per child.")
flags.DEFINE_integer("warmup", 2, "Untimed steps after compiling.")
flags.DEFINE_integer("rounds", 3, "Child processes per model (median).")
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_enum("_child", None, ["ff", "mgnet"], "Internal: measure one model.")
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
FLAGS = flags.FLAGS


def measure(which):
    """Runs in a child: images/s and peak RSS (MiB) of one model's training."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = models.build(which)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        # JAX always runs its train step through jax.jit (eager JAX is not a training
        # mode anyone uses).
        jit_compile=FLAGS.jit_compile or keras.backend.backend() == "jax",
    )
    size = FLAGS.image_size
    images = np.random.rand(FLAGS.batch_size, size, size, FLAGS.channels).astype(
        "float32"
    )
    labels = np.arange(FLAGS.batch_size) % FLAGS.num_classes
    for _ in range(1 + FLAGS.warmup):  # the first call compiles the step
        model.train_on_batch(images, labels)
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        model.train_on_batch(images, labels)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "backend": keras.backend.backend(),
        "images_per_s": FLAGS.steps * FLAGS.batch_size / seconds,
        "peak_rss_mib": peak_mib,
    }


def main(argv):
    if FLAGS._child:
        print(json.dumps(measure(FLAGS._child)))
        return
    del argv
    runs = {"ff": [], "mgnet": []}
    for _ in range(FLAGS.rounds):
        for which in ("ff", "mgnet"):
            output = subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    f"--_child={which}",
                    *[
                        f"--{name}={FLAGS[name].value}"
                        for name in (
                            *models.MODEL_FLAGS,
                            "batch_size",
                            "steps",
                            "warmup",
                            "jit_compile",
                        )
                    ],
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs[which].append(json.loads(output.strip().splitlines()[-1]))
    summary = {
        which: {
            key: statistics.median(r[key] for r in results)
            for key in results[0]
            if key != "backend"
        }
        for which, results in runs.items()
    }
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "backend": runs["ff"][0]["backend"],
        "backbone": FLAGS.backbone,
        "batch_size": FLAGS.batch_size,
        "ff": summary["ff"],
        "mgnet": summary["mgnet"],
        "throughput_ratio": summary["mgnet"]["images_per_s"]
        / summary["ff"]["images_per_s"],
        "memory_ratio": summary["mgnet"]["peak_rss_mib"]
        / summary["ff"]["peak_rss_mib"],
        "runs": runs,
    }
    for which in ("ff", "mgnet"):
        print(
            f"{which:6s} {summary[which]['images_per_s']:8.2f} images/s  peak RSS "
            f"{summary[which]['peak_rss_mib']:8.0f} MiB"
        )
    print(
        f"MGNet / FF-Net: throughput x{results['throughput_ratio']:.3f}, "
        f"peak memory x{results['memory_ratio']:.3f}"
    )
    if FLAGS.json:
        print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)
