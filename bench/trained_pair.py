"""The trained pair the accuracy benchmarks compare (`anytime.py`, `litert_quantized.py`):
FF-Net and MGNet `.keras` files and their data set, from shared flags."""

import os
import subprocess
import sys
import time

import numpy as np
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINTS = os.path.join(REPO, "checkpoints")
flags.DEFINE_string("ff", os.path.join(CHECKPOINTS, "translated_fashion_mnist_ff.keras"), "FF-Net .keras file.")
flags.DEFINE_string("mgnet", os.path.join(CHECKPOINTS, "translated_fashion_mnist_mgnet.keras"), "MGNet .keras file.")
flags.DEFINE_string("dataset", "translated_fashion_mnist", "Data set of both models.")
flags.DEFINE_string("data_dir", None, "The data set's files (default: see docs).")
FLAGS = flags.FLAGS


def load():
    """(FF-Net, MGNet) from --ff and --mgnet."""
    from mgnet_tf import files  # noqa: PLC0415

    return files.load_model(FLAGS.ff), files.load_model(FLAGS.mgnet)


def arrays(split, count, image_size):
    """(images float32 (N, S, S, C), labels (N,)) of the first `count` images of `split`
    (None: all), as the evaluation pipeline gives them."""
    from reports.data import EvalData  # noqa: PLC0415

    data = EvalData(FLAGS.dataset, split, data_dir=FLAGS.data_dir, max_examples=count)
    images, labels = zip(*((x.numpy(), y.numpy()) for x, y in data.batches(image_size)))
    return np.concatenate(images), np.concatenate(labels)


def probabilities(model, images, batch_size=256):
    """Softmax outputs (N, T, K) of `model` after each glimpse on float `images`."""
    import tensorflow as tf  # noqa: PLC0415

    out = [
        tf.nn.softmax(model(images[i : i + batch_size], training=False)["logits"]).numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


def timed(call, *args, warm_calls=1):
    """(call(*args), seconds it took), after `warm_calls` untimed calls of its own, so
    that it is timed with its weights in the cache whatever ran before it."""
    for _ in range(warm_calls):
        call(*args)
    start = time.perf_counter()
    out = call(*args)
    return out, time.perf_counter() - start


def export_litert(model_path, directory, quantize="none"):
    """`python -m mgnet_tf.export --format=litert` of `model_path` into `directory`, in a
    child process: converting in the process that then times the files left MGNet's
    all-glimpse file 1.4x slower there (0.74 against 0.52 ms, the same file loaded in a
    process that had not converted anything)."""
    command = [
        sys.executable, "-m", "mgnet_tf.export", f"--model={model_path}", f"--output={directory}",
        "--format=litert", f"--quantize={quantize}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
