"""Evaluation building blocks: predictions, per-glimpse accuracy, dynamic exit, latency,
corruption errors. They take models and datasets and read no files; evaluate.py wires
them to data and writes the report."""

import functools
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from mgnet_tf.early_exit import dynamic_exit


def predict(model, dataset, num_glimpses=None, progress=True):
    """Runs `model` over `dataset` of (images, labels) batches.

    Args:
        model: an `MGNet`.
        dataset: `tf.data.Dataset` of (float images in [0, 1], int labels).
        num_glimpses: optional int, glimpses to run (default all).
        progress: show a progress bar.

    Returns:
        dict of numpy arrays: `probabilities` (N, t, K), `labels` (N,),
        `glimpse_params` (N, t, 3).
    """
    step = _compiled_call(model, num_glimpses)
    outputs = {"probabilities": [], "labels": [], "glimpse_params": []}
    bar = keras.utils.Progbar(None, unit_name="batch") if progress else None
    for batch, (images, labels) in enumerate(dataset):
        result = step(images)
        outputs["probabilities"].append(_softmax(np.asarray(result["logits"], np.float32)))
        outputs["glimpse_params"].append(result["glimpse_params"])
        outputs["labels"].append(labels)
        if bar is not None:
            bar.update(batch + 1)
    if not outputs["labels"]:
        raise ValueError("The evaluation data set is empty.")
    return {
        key: np.concatenate([np.asarray(v) for v in values])
        for key, values in outputs.items()
    }


@functools.lru_cache(maxsize=8)
def _compiled_call(model, num_glimpses):
    """One compiled inference function per model, reused across data sets (the
    corruption sweep calls `predict` 75 times); a smaller last batch traces once more.
    """
    return compiled(lambda images: model(images, training=False, num_glimpses=num_glimpses))


def compiled(fn, xla=False):
    """`fn` of one image batch, compiled on the Keras backend in use: a tf.function
    on TensorFlow (with XLA when `xla`), jax.jit on JAX (always XLA; its inputs, e.g.
    tf.data batches, become numpy arrays first), else called eagerly."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return tf.function(fn, reduce_retracing=True, jit_compile=xla)
    if backend == "jax":
        import jax  # noqa: PLC0415 (the JAX backend only)

        jitted = jax.jit(fn)
        return lambda images: jitted(np.asarray(images))
    return lambda images: fn(keras.ops.convert_to_tensor(np.asarray(images)))


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def accuracy_per_glimpse(probabilities, labels):
    """Top-1 accuracy after each glimpse: a list of T floats."""
    predictions = np.argmax(probabilities, axis=-1)
    return [
        float(v) for v in np.mean(predictions == np.asarray(labels)[:, None], axis=0)
    ]


def accuracy_per_class(probabilities, labels):
    """Top-1 accuracy of each true class after each glimpse.

    Args:
        probabilities: (N, T, K) softmax outputs after each glimpse.
        labels: (N,) int labels in [0, K).

    Returns:
        {"count": K ints, the images of each class; "accuracy": K lists of T floats,
        None for a class without images}.
    """
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    correct = np.argmax(probabilities, axis=-1) == labels[:, None]  # (N, T)
    count, accuracy = [], []
    for k in range(probabilities.shape[-1]):
        of_class = correct[labels == k]
        count.append(int(len(of_class)))
        accuracy.append([float(v) for v in of_class.mean(axis=0)] if len(of_class) else None)
    return {"count": count, "accuracy": accuracy}


def dynamic_exit_sweep(probabilities, labels, thresholds, mflops):
    """Accuracy and cost of the confidence exit rule for each threshold.

    Args:
        probabilities: (N, T, K) softmax outputs after each glimpse.
        labels: (N,) int labels.
        thresholds: iterable of floats in [0, 1].
        mflops: list of T inference costs (MFLOPs with 1..T glimpses).

    Returns:
        list of dicts with `threshold`, `accuracy`, `mean_glimpses`, `mean_mflops`.
    """
    results = []
    cost = np.asarray(mflops, "float64")
    for threshold in thresholds:
        predictions, glimpses = dynamic_exit(probabilities, float(threshold))
        glimpses = glimpses.numpy()
        results.append(
            {
                "threshold": float(threshold),
                "accuracy": float(np.mean(predictions.numpy() == np.asarray(labels))),
                "mean_glimpses": float(np.mean(glimpses)),
                "mean_mflops": float(np.mean(cost[glimpses - 1])),
            }
        )
    return results


def latency_ms(model, repeats=20, warmup=3):
    """CPU (or current device) latency per image at batch 1 with 1..T glimpses.

    Each glimpse count is compiled once (`compiled`), warmed up, then timed
    `repeats` times, the counts interleaved so that drifts in machine load touch all
    alike. Returns the median milliseconds for each glimpse count.
    """
    shape = (1, model.image_size, model.image_size, model.channels)
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    functions = [
        compiled(lambda x, t=t: model(x, training=False, num_glimpses=t)["logits"])
        for t in range(1, model.num_glimpses + 1)
    ]
    for function in functions:
        for _ in range(warmup):
            np.asarray(function(image))
    times = [[] for _ in functions]
    for _ in range(repeats):
        for timings, function in zip(times, functions):
            start = time.perf_counter()
            np.asarray(function(image))  # waits for the result on every backend
            timings.append((time.perf_counter() - start) * 1000.0)
    return [float(statistics.median(timings)) for timings in times]


def relative_corruption_error(model_accuracy, baseline_accuracy):
    """Corruption error relative to a baseline (Hendrycks & Dietterich, 2019).

    CE_c = sum over severities of the model's error / the same sum for the baseline.

    Args:
        model_accuracy: dict corruption -> list of accuracies, one per severity.
        baseline_accuracy: the same for the baseline model.

    Returns:
        (dict corruption -> CE, mean CE over corruptions).
    """
    errors = {}
    for corruption, accuracies in model_accuracy.items():
        baseline_error = sum(1.0 - a for a in baseline_accuracy[corruption])
        model_error = sum(1.0 - a for a in accuracies)
        errors[corruption] = (
            model_error / baseline_error if baseline_error else float("nan")
        )
    return errors, float(np.mean(list(errors.values())))
