"""Where the time goes: a TensorFlow-profiler breakdown of FF-Net and MGNet inference.

    python bench/op_profile.py                       # ResNet-18, batch 1, tf.function
    python bench/op_profile.py --batch_size=32 --json
    python bench/op_profile.py --logdir=/tmp/prof    # keep the traces for TensorBoard

Traces --calls inference calls of each model (after warm-up) with
`tf.profiler.experimental`, then reads the profiler's own per-op table
(`framework_op_stats`, the table TensorBoard's profile plugin shows) and prints, per
call: the time by op type, the number of ops run, and MGNet's time by part (backbone,
glimpse sampler, fusion, localization, classifiers) from the op names. Self times are
summed over the ops the runtime executed, so they can add up to more than the wall
time when ops run in parallel. With --json the last line is one JSON object.
"""

import collections
import glob
import json
import os
import platform
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from tensorflow.python.profiler.internal import (  # noqa: E402
    _pywrap_profiler_plugin as profiler_plugin,
)

from bench import models  # noqa: E402

flags.DEFINE_integer("batch_size", 1, "Images per call.")
flags.DEFINE_integer("calls", 20, "Traced calls per model.")
flags.DEFINE_bool("jit_compile", False, "Profile the XLA-compiled form.")
flags.DEFINE_string("logdir", None, "Keep the traces here (default: a temporary dir).")
flags.DEFINE_integer("top", 12, "Op types listed.")
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
FLAGS = flags.FLAGS

# MGNet's parts, recognised by the layer names in the op names; the backbone's
# layer is named after the backbone (e.g. "resnet18").
PARTS = (
    ("sampler", "glimpse_sampler"),
    ("fusion", "feature_fusion"),
    ("localization", "localization"),
    ("classifiers", "classifier"),
)


def _op_table(logdir):
    """Rows of the profiler's framework_op_stats table: dicts keyed by column id."""
    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise RuntimeError(f"The profiler wrote no trace under {logdir}")
    data, ok = profiler_plugin.xspace_to_tools_data(paths, "framework_op_stats")
    if not ok:
        raise RuntimeError(f"Could not read the traces in {logdir}")
    table = json.loads(data)[0]
    ids = [column["id"] for column in table["cols"]]
    return [dict(zip(ids, [cell.get("v") for cell in row["c"]])) for row in table["rows"]]


def _part(name, backbone):
    lowered = name.lower()
    if f"/{backbone}" in lowered:
        return "backbone"
    for part, marker in PARTS:
        if marker in lowered:
            return part
    return "other"


def profile(function, inputs, logdir, backbone):
    for _ in range(3):  # warm-up: tracing, compilation, caches
        function(inputs).numpy()
    tf.profiler.experimental.start(logdir)
    for _ in range(FLAGS.calls):
        function(inputs).numpy()
    tf.profiler.experimental.stop()
    rows = [
        row
        for row in _op_table(logdir)
        if row["type"] not in ("IDLE",) and row["host_or_device"] == "Host"
    ]
    by_type = collections.Counter()
    by_part = collections.Counter()
    ops = 0
    for row in rows:
        ms = row["total_self_time"] / 1000.0 / FLAGS.calls
        by_type[row["type"]] += ms
        by_part[_part(row["operation"], backbone)] += ms
        ops += row["occurrences"] / FLAGS.calls
    return {
        "total_ms": sum(by_type.values()),
        "ops_per_call": ops,
        "by_type_ms": dict(by_type.most_common()),
        "by_part_ms": dict(by_part.most_common()),
    }


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    pair = {"ff": models.build("ff"), "mgnet": models.build("mgnet")}
    images = tf.random.uniform(
        (FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size, FLAGS.channels)
    )
    root = FLAGS.logdir or tempfile.mkdtemp(prefix="mgnet-profile-")
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}",
        "backbone": FLAGS.backbone,
        "batch_size": FLAGS.batch_size,
        "jit_compile": FLAGS.jit_compile,
        "calls": FLAGS.calls,
    }
    for name, model in pair.items():
        function = tf.function(
            lambda x, model=model: model(x)["logits"], jit_compile=FLAGS.jit_compile
        )
        results[name] = profile(
            function, images, os.path.join(root, name), model.backbone.name.lower()
        )
    ff, mgnet = results["ff"], results["mgnet"]
    print(
        f"{FLAGS.backbone}, batch {FLAGS.batch_size}, "
        f"{'XLA' if FLAGS.jit_compile else 'tf.function'}: op self-time per call "
        f"FF-Net {ff['total_ms']:.2f} ms over {ff['ops_per_call']:.0f} ops, "
        f"MGNet {mgnet['total_ms']:.2f} ms over {mgnet['ops_per_call']:.0f} ops"
    )
    types = sorted(
        set(ff["by_type_ms"]) | set(mgnet["by_type_ms"]),
        key=lambda t: -mgnet["by_type_ms"].get(t, 0.0) - ff["by_type_ms"].get(t, 0.0),
    )
    print(f"{'op type':32s} {'FF-Net ms':>10s} {'MGNet ms':>10s}")
    for op_type in types[: FLAGS.top]:
        print(
            f"{op_type:32s} {ff['by_type_ms'].get(op_type, 0.0):10.3f} "
            f"{mgnet['by_type_ms'].get(op_type, 0.0):10.3f}"
        )
    print("MGNet by part: " + ", ".join(
        f"{part} {ms:.3f} ms ({100 * ms / mgnet['total_ms']:.1f}%)"
        for part, ms in mgnet["by_part_ms"].items()
    ))
    if FLAGS.json:
        print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)
