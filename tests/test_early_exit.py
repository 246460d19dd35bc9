import numpy as np
import pytest

from mgnet_tf.early_exit import dynamic_exit, exit_glimpses

# Three images, three glimpses, two classes. Top probabilities per glimpse:
# image 0: 0.95, 0.6, 0.99 -> confident at once
# image 1: 0.55, 0.85, 0.9 -> confident at glimpse 2 for thresholds in (0.55, 0.85]
# image 2: 0.5, 0.6, 0.7   -> never confident above 0.7
PROBABILITIES = np.array(
    [
        [[0.95, 0.05], [0.4, 0.6], [0.01, 0.99]],
        [[0.45, 0.55], [0.85, 0.15], [0.9, 0.1]],
        [[0.5, 0.5], [0.4, 0.6], [0.3, 0.7]],
    ],
    "float32",
)


@pytest.mark.parametrize(
    "threshold, expected",
    [
        (0.0, [1, 1, 1]),
        (0.5, [1, 1, 1]),
        (0.8, [1, 2, 3]),
        (0.9, [1, 3, 3]),
        (1.0, [3, 3, 3]),
    ],
)
def test_exit_glimpses(threshold, expected):
    assert exit_glimpses(PROBABILITIES, threshold).numpy().tolist() == expected


def test_threshold_one_runs_every_glimpse_even_for_saturated_probabilities():
    saturated = np.tile(np.array([[[1.0, 0.0]]], "float32"), (2, 4, 1))
    assert exit_glimpses(saturated, 1.0).numpy().tolist() == [4, 4]
    assert exit_glimpses(saturated, 0.999).numpy().tolist() == [1, 1]


def test_dynamic_exit_predicts_with_the_glimpse_it_stopped_at():
    predictions, glimpses = dynamic_exit(PROBABILITIES, 0.8)
    # image 0 stops at glimpse 1 (class 0), image 1 at 2 (class 0), image 2 at 3 (class 1)
    assert predictions.numpy().tolist() == [0, 0, 1]
    assert glimpses.numpy().tolist() == [1, 2, 3]


def test_negative_threshold_is_named():
    with pytest.raises(ValueError, match="threshold"):
        exit_glimpses(PROBABILITIES, -0.1)
