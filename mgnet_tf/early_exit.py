"""Dynamic early exit: each image stops at the first glimpse that is confident enough.

The paper exits every image after the same number of glimpses. Here each image stops at
the first glimpse t whose top softmax probability reaches a threshold, so easy images
cost one backbone pass and hard ones up to T. The rule is written in TensorFlow ops, so
a serving graph can apply it to `probabilities_per_glimpse` as well.
"""

import statistics

import numpy as np
import tensorflow as tf

# The confidence thresholds `calibrate_threshold` tries, lowest (cheapest) first.
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)


def stops(top_probability, threshold):
    """Whether a glimpse whose top probability is `top_probability` ends its image
    (before the last glimpse, which always does): it reaches `threshold`, and
    `threshold` is below 1 (1 or more means every glimpse, even where a probability
    rounds to exactly 1.0). Elementwise on NumPy or TensorFlow values, so that every
    served form (`mgnet_tf.export`, `mgnet_tf.litert`) applies this one rule."""
    return (top_probability >= threshold) & (threshold < 1.0)


def exit_glimpses(probabilities, threshold):
    """Number of glimpses each image uses under the confidence rule.

    Args:
        probabilities: float (B, T, K) softmax outputs after each glimpse.
        threshold: float in [0, 1]. An image stops at the first glimpse whose top
            probability is >= threshold; if none is, it uses all T. 0 means every
            image stops after one glimpse; 1 (or more) means all T, even where a
            probability rounds to exactly 1.0.

    Returns:
        int32 (B,) glimpses used, in [1, T].
    """
    probabilities = tf.convert_to_tensor(probabilities)
    steps = tf.shape(probabilities)[1]
    if isinstance(threshold, (int, float)) and not 0 <= threshold:
        raise ValueError(f"`threshold` must be >= 0. Received: threshold={threshold!r}")
    confident = stops(
        tf.reduce_max(probabilities, axis=-1), tf.cast(threshold, probabilities.dtype)
    )
    # The last glimpse always stops the image.
    last = tf.one_hot(steps - 1, steps, on_value=True, off_value=False)
    stop = tf.logical_or(confident, last[None, :])
    return tf.argmax(tf.cast(stop, tf.int32), axis=1, output_type=tf.int32) + 1


def dynamic_exit(probabilities, threshold):
    """Predictions and glimpses used under the confidence rule.

    Because the prediction after glimpse t depends only on the first t glimpses, the
    result equals running each image glimpse by glimpse and stopping at the rule.

    Args:
        probabilities: float (B, T, K) softmax outputs after each glimpse.
        threshold: float, see `exit_glimpses`.

    Returns:
        (predictions int32 (B,), glimpses int32 (B,)).
    """
    glimpses = exit_glimpses(probabilities, threshold)
    chosen = tf.gather(probabilities, glimpses - 1, axis=1, batch_dims=1)
    return tf.argmax(chosen, axis=-1, output_type=tf.int32), glimpses


def calibrate_threshold(
    probabilities, labels, max_drop, reference=None, thresholds=THRESHOLDS, confidence=None
):
    """The lowest threshold whose dynamic-exit top-1 is within `max_drop` points of a
    reference top-1, chosen on held-out images (never on the test split).

    Args:
        probabilities: float (B, T, K) softmax outputs after each glimpse.
        labels: int (B,) true classes.
        max_drop: top-1 points (0-100) the exit may lose against `reference`.
        reference: what to stay near: a top-1 in [0, 1], e.g. FF-Net's on the same
            images; a bool (B,), whether a reference model got each image right (the
            comparison is then paired, image by image); None: MGNet's own with all T
            glimpses, paired.
        thresholds: candidates.
        confidence: None: the point estimate, and the lowest threshold within
            `max_drop` (tried in increasing order). A probability such as 0.95: a
            threshold qualifies only where the one-sided `confidence` upper bound of
            its drop (the normal bound on the per-image differences) is within
            `max_drop`, and the thresholds are tested from the highest down, stopping
            at the first that fails (fixed-sequence testing, as in Learn then Test and
            CALM): the lowest qualifying threshold on the point estimate is the one
            whose held-out figure was luckiest, and loses more on new images.

    Returns:
        The threshold, or 1.0 (all glimpses for every image) where none qualifies.

    Raises:
        ValueError: `confidence` not in (0, 1), or fewer than 2 images with it.
    """
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    if reference is None:
        reference = probabilities[:, -1].argmax(-1) == labels
    reference = np.asarray(reference, np.float64)
    if confidence is not None:
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"`confidence` must be in (0, 1). Received: confidence={confidence!r}")
        if len(labels) < 2:
            raise ValueError(f"`confidence` needs at least 2 images. Received: {len(labels)}")
        z = statistics.NormalDist().inv_cdf(confidence)

    def qualifies(threshold):
        predictions, _ = dynamic_exit(probabilities, threshold)
        differences = 100 * (reference - (predictions.numpy() == labels))  # points
        drop = float(np.mean(differences))
        if confidence is not None:
            drop += z * float(np.std(differences, ddof=1)) / np.sqrt(len(labels))
        return drop <= max_drop

    if confidence is None:
        return next((float(t) for t in sorted(thresholds) if qualifies(t)), 1.0)
    chosen = 1.0
    for threshold in sorted(thresholds, reverse=True):
        if not qualifies(threshold):
            break
        chosen = float(threshold)
    return chosen
