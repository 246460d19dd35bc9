"""Inference latency of FF-Net (full image) against MGNet (T glimpses) on one backbone.

    python bench/latency.py                                  # ResNet-18, 224 px, T=4, M=7/3
    python bench/latency.py --backbone=resnet50 --json       # last line: one JSON object
    python bench/latency.py --backbone=vanilla_cnn --image_size=32 --num_glimpses=2 \
        --downsample=2 --batch_sizes=1,2 --repeats=3         # a quick check
    KERAS_BACKEND=jax python bench/latency.py                # the same on JAX (jax.jit)

Both models are built in one process and timed interleaved (FF, MGNet, FF, ...), after
warm-up, in three forms: eager, `tf.function`, and `tf.function(jit_compile=True)` (XLA);
and with --forms=...,litert as LiteRT files (`python -m mgnet_tf.export --format=litert`:
XNNPACK, --litert_threads threads; batch 1 only); each figure is the median of --repeats
calls. Each form also gives the MAC-bound ideal: FF-Net's time scaled by MGNet's MACs over
FF-Net's (MGNet as fast per MAC as FF-Net), and how far MGNet is from it. Also: the latency of MGNet after each
glimpse (the cost of each early-exit point) and the share of MGNet's time spent outside
the backbone (sampler, fusion, localization, classifiers), from timing the backbone alone
on T glimpses. With --json the last stdout line holds `ff_ms`, `mgnet_ms` and `ratio`
(mgnet_ms / ff_ms) at batch 1 in the fastest form for MGNet, plus every other figure.
"""

import json
import os
import platform
import shutil
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

from bench import models  # noqa: E402
from mgnet_tf import evaluation  # noqa: E402

flags.DEFINE_list("batch_sizes", ["1", "32"], "Batch sizes.")
flags.DEFINE_list(
    "forms",
    ["eager", "function", "xla", "litert"],
    "Execution forms: eager, function (tf.function; 'tf' too), xla, litert; "
    "litert_matmul: LiteRT files whose sampler is two dense products (no GATHER).",
)
flags.DEFINE_alias("runtime", "forms")
flags.DEFINE_integer("litert_threads", os.cpu_count(), "LiteRT (XNNPACK) threads.")
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


def _litert_functions(ff_net, mgnet, scratch, sampler_method=None):
    """The LiteRT form: both models exported as the export writes them (each file
    checked against TensorFlow), and MGNet's backbone alone on a glimpse. With
    `sampler_method` ("matmul": the form `litert_matmul`) the files sample glimpses
    that way instead of the export's way, for a side-by-side figure."""
    from mgnet_tf import litert  # noqa: PLC0415
    from mgnet_tf.export import export_litert  # noqa: PLC0415

    runners = {}
    for name, model in (("ff", ff_net), ("mgnet", mgnet)):
        directory = os.path.join(scratch, f"{name}_{sampler_method or 'export'}")
        if sampler_method is None:
            export_litert(model, directory)
        else:
            os.makedirs(directory)
            litert.write_files(model, directory, sampler_method=sampler_method)
        runners[name] = litert.Runner(directory, FLAGS.litert_threads)
    glimpse = mgnet.glimpse_size
    spec = tf.TensorSpec((1, glimpse, glimpse, FLAGS.channels), tf.float32, name="glimpses")
    path = os.path.join(scratch, "backbone.tflite")
    entry = litert.convert_function(lambda g: mgnet.backbone(g), [spec], mgnet, path)
    backbone = litert.interpreter(path, FLAGS.litert_threads)
    functions = {
        "ff": lambda x: runners["ff"].run(x),
        "mgnet": lambda x: runners["mgnet"].run(x),
    }
    for t in range(1, FLAGS.num_glimpses):
        functions[f"mgnet_{t}"] = lambda x, t=t: runners["mgnet"].run(x, num_glimpses=t)
    return functions, lambda g: litert.run_file(None, entry, {"glimpses": g}, runner=backbone)


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
    forms = ["function" if form == "tf" else form for form in FLAGS.forms]
    unknown = sorted(set(forms) - {"eager", "function", "xla", "litert", "litert_matmul"})
    if unknown:
        raise app.UsageError(
            f"--forms: unknown {unknown}; expected eager, function (tf), xla, litert, litert_matmul"
        )
    from mgnet_tf import flops  # noqa: PLC0415

    macs = {"ff": flops.mgnet_macs(ff_net)[-1], "mgnet": flops.mgnet_macs(mgnet)[-1]}
    results["macs"] = macs
    scratch = tempfile.mkdtemp(prefix="latency-litert-")
    for batch in [int(b) for b in FLAGS.batch_sizes]:
        rng = np.random.default_rng(0)
        images = rng.random((batch, size, size, FLAGS.channels), dtype=np.float32)
        glimpses = rng.random((batch, glimpse, glimpse, FLAGS.channels), dtype=np.float32)
        for form in forms:
            if form.startswith("litert"):
                if keras.backend.backend() != "tensorflow":
                    print(f"{form} skipped: LiteRT files are converted from TensorFlow graphs")
                    continue
                if batch != 1:
                    print(f"batch {batch:3d} {form} skipped: the LiteRT files take batch 1")
                    continue
                functions, backbone_call = _litert_functions(
                    ff_net, mgnet, scratch, "matmul" if form == "litert_matmul" else None
                )
            else:
                functions = {
                    "ff": _callable(lambda x: ff_net(x)["logits"], form),
                    "mgnet": _callable(lambda x: mgnet(x)["logits"], form),
                }
                for t in range(1, FLAGS.num_glimpses):
                    functions[f"mgnet_{t}"] = _callable(
                        lambda x, t=t: mgnet(x, num_glimpses=t)["logits"], form
                    )
                backbone_call = _callable(lambda g: mgnet.backbone(g), form)
            medians = _interleaved_medians(functions, images)
            backbone = _interleaved_medians({"backbone": backbone_call}, glimpses)["backbone"]
            per_glimpse = [medians[f"mgnet_{t}"] for t in range(1, FLAGS.num_glimpses)]
            ideal = medians["ff"] * macs["mgnet"] / macs["ff"]
            entry = {
                "ff_ms": medians["ff"],
                "mgnet_ms": medians["mgnet"],
                "ratio": medians["mgnet"] / medians["ff"],
                "mgnet_ms_per_glimpse_count": per_glimpse + [medians["mgnet"]],
                "backbone_ms_per_glimpse": backbone,
                "outside_backbone_share": 1.0
                - FLAGS.num_glimpses * backbone / medians["mgnet"],
                "mac_bound_ideal_ms": ideal,
                "mgnet_over_ideal": medians["mgnet"] / ideal,
            }
            results["latency_ms"][f"batch{batch}_{form}"] = entry
            print(
                f"batch {batch:3d} {form:13s} FF {entry['ff_ms']:9.2f} ms  MGNet "
                f"{entry['mgnet_ms']:9.2f} ms  ratio {entry['ratio']:.3f}  per glimpse "
                + " ".join(f"{v:.2f}" for v in entry["mgnet_ms_per_glimpse_count"])
                + f"  outside backbone {100 * entry['outside_backbone_share']:.1f}%"
                + f"  MAC-bound ideal {ideal:.2f} ms (MGNet {entry['mgnet_over_ideal']:.2f}x it)"
            )
    shutil.rmtree(scratch, ignore_errors=True)
    batch = int(FLAGS.batch_sizes[0])
    fastest = min(
        (results["latency_ms"][key] for key in results["latency_ms"] if key.startswith(f"batch{batch}_")),
        key=lambda entry: entry["mgnet_ms"],
    )
    results.update(
        ff_ms=fastest["ff_ms"], mgnet_ms=fastest["mgnet_ms"], ratio=fastest["ratio"]
    )
    if FLAGS.json:
        print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)
