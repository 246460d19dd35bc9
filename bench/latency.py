"""Inference latency of FF-Net (full image) against MGNet (T glimpses) on one backbone.

    python bench/latency.py                                  # ResNet-18, 224 px, T=4, M=7/3
    python bench/latency.py --backbone=resnet50 --json       # last line: one JSON object
    python bench/latency.py --backbone=vanilla_cnn --image_size=32 --num_glimpses=2 \
        --downsample=2 --batch_sizes=1,2 --repeats=3         # a quick check
    KERAS_BACKEND=jax python bench/latency.py                # the same on JAX (jax.jit)

Both models are built in one process and timed interleaved (FF, MGNet, FF, ...), after
warm-up, in three forms: eager, `tf.function`, and `tf.function(jit_compile=True)` (XLA);
each figure is the median of --repeats calls. Also: the latency of MGNet after each
glimpse (the cost of each early-exit point) and the share of MGNet's time spent outside
the backbone (sampler, fusion, localization, classifiers), from timing the backbone alone
on T glimpses. With --json the last stdout line holds `ff_ms`, `mgnet_ms` and `ratio`
(mgnet_ms / ff_ms) at batch 1 in the fastest form for MGNet, plus every other figure.
"""

import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from bench import models  # noqa: E402
from mgnet_tf import evaluation  # noqa: E402

flags.DEFINE_list("batch_sizes", ["1", "32"], "Batch sizes.")
flags.DEFINE_list("forms", ["eager", "function", "xla"], "Execution forms.")
flags.DEFINE_integer("repeats", 20, "Timed calls per figure (median).")
flags.DEFINE_integer("warmup", 3, "Untimed calls first.")
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
FLAGS = flags.FLAGS


def _callable(function, form):
    """`function` in an execution form: eager, or compiled as evaluation compiles it
    (`mgnet_tf.evaluation.compiled`: tf.function, with XLA for "xla", on TensorFlow;
    jax.jit for both on JAX, which has no other graph form)."""
    if form == "eager":
        return function
    return evaluation.compiled(function, xla=(form == "xla"))


def _wait(outputs):
    """The outputs as numpy: the call has finished (JAX dispatches asynchronously)."""
    return keras.tree.map_structure(np.asarray, outputs)


def _interleaved_medians(functions, inputs):
    """Median ms of each function, timed in turn so load drifts touch all alike."""
    for function in functions.values():
        for _ in range(FLAGS.warmup):
            _wait(function(inputs))
    times = {name: [] for name in functions}
    for _ in range(FLAGS.repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            _wait(function(inputs))
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    ff_net, mgnet = models.build("ff"), models.build("mgnet")
    size, glimpse = FLAGS.image_size, mgnet.glimpse_size
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}",
        "backend": keras.backend.backend(),
        "backbone": FLAGS.backbone,
        "image_size": size,
        "glimpse_size": glimpse,
        "glimpses": FLAGS.num_glimpses,
        "latency_ms": {},
    }
    for batch in [int(b) for b in FLAGS.batch_sizes]:
        rng = np.random.default_rng(0)
        images = rng.random((batch, size, size, FLAGS.channels), dtype=np.float32)
        glimpses = rng.random((batch, glimpse, glimpse, FLAGS.channels), dtype=np.float32)
        for form in FLAGS.forms:
            functions = {
                "ff": _callable(lambda x: ff_net(x)["logits"], form),
                "mgnet": _callable(lambda x: mgnet(x)["logits"], form),
            }
            for t in range(1, FLAGS.num_glimpses):
                functions[f"mgnet_{t}"] = _callable(
                    lambda x, t=t: mgnet(x, num_glimpses=t)["logits"], form
                )
            medians = _interleaved_medians(functions, images)
            backbone = _interleaved_medians(
                {"backbone": _callable(lambda g: mgnet.backbone(g), form)}, glimpses
            )["backbone"]
            per_glimpse = [medians[f"mgnet_{t}"] for t in range(1, FLAGS.num_glimpses)]
            entry = {
                "ff_ms": medians["ff"],
                "mgnet_ms": medians["mgnet"],
                "ratio": medians["mgnet"] / medians["ff"],
                "mgnet_ms_per_glimpse_count": per_glimpse + [medians["mgnet"]],
                "backbone_ms_per_glimpse": backbone,
                "outside_backbone_share": 1.0
                - FLAGS.num_glimpses * backbone / medians["mgnet"],
            }
            results["latency_ms"][f"batch{batch}_{form}"] = entry
            print(
                f"batch {batch:3d} {form:8s} FF {entry['ff_ms']:9.2f} ms  MGNet "
                f"{entry['mgnet_ms']:9.2f} ms  ratio {entry['ratio']:.3f}  per glimpse "
                + " ".join(f"{v:.2f}" for v in entry["mgnet_ms_per_glimpse_count"])
                + f"  outside backbone {100 * entry['outside_backbone_share']:.1f}%"
            )
    batch = int(FLAGS.batch_sizes[0])
    fastest = min(
        (results["latency_ms"][f"batch{batch}_{form}"] for form in FLAGS.forms),
        key=lambda entry: entry["mgnet_ms"],
    )
    results.update(
        ff_ms=fastest["ff_ms"], mgnet_ms=fastest["mgnet_ms"], ratio=fastest["ratio"]
    )
    if FLAGS.json:
        print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)
