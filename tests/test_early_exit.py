import numpy as np
import pytest

from mgnet_tf.early_exit import calibrate_threshold, dynamic_exit, exit_glimpses

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


# Labels for PROBABILITIES: all three glimpses right (100%); image 0 is confidently wrong
# after glimpse 1 (0.95), so any threshold up to 0.95 loses it and gets 2 of 3 (where it
# keeps images 1 and 2 past their wrong first glimpses); 0.5 stops all three at glimpse 1
# (0 of 3); 0.97 keeps image 0 to glimpse 3 (3 of 3).
LABELS = np.array([1, 0, 1])


@pytest.mark.parametrize(
    "max_drop, reference, expected",
    [
        (0.0, None, 0.97),  # exactly all glimpses' top-1
        (10.0, None, 0.97),  # 2 of 3 is 33.3 points below
        (40.0, None, 0.6),  # 33.3 points allowed; 0.5 (100 points) is not
        (0.0, 2 / 3, 0.6),  # an FF-Net at 66.7%: the cheapest threshold that matches it
        (0.0, 0.5, 0.6),  # a weaker reference: 0.5 (0%) is still 50 points below
    ],
)
def test_calibrate_threshold_keeps_top1_near_the_reference(max_drop, reference, expected):
    assert calibrate_threshold(PROBABILITIES, LABELS, max_drop, reference) == pytest.approx(expected)


def test_calibrate_threshold_falls_back_to_all_glimpses():
    assert calibrate_threshold(PROBABILITIES, LABELS, 0.0, thresholds=(0.6, 0.5)) == 1.0
    predictions, glimpses = dynamic_exit(PROBABILITIES, 1.0)
    assert list(glimpses.numpy()) == [3, 3, 3] and list(predictions.numpy()) == list(LABELS)
