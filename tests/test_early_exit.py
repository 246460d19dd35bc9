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


def _one_confident_mistake(images=100):
    """`images` images, 2 glimpses, 2 classes, label 0: every glimpse 2 is right (0.99);
    glimpse 1 is right at 0.9 except image 0's, wrong at 0.9. Thresholds up to 0.9 stop
    every image at glimpse 1 and lose image 0: 1 point of 100 against all glimpses, a
    per-image difference of 1 on one image and 0 on 99: standard deviation 10 points
    (sqrt(0.01 * 0.99 * 100 / 99) = 0.1), standard error 1 point, so the one-sided 95%
    bound is 1 + 1.645 = 2.645 points."""
    probabilities = np.tile(np.array([[[0.9, 0.1], [0.99, 0.01]]], "float32"), (images, 1, 1))
    probabilities[0, 0] = [0.1, 0.9]
    return probabilities, np.zeros(images, "int64")


@pytest.mark.parametrize(
    "max_drop, confidence, reference, expected",
    [
        (2.0, None, None, 0.8),  # 1 point lost: within 2 on the point estimate
        (2.0, 0.95, None, 0.95),  # but its 95% bound, 2.645, is not
        (3.0, 0.95, None, 0.8),  # within 3
        (2.0, 0.5, None, 0.8),  # a 50% bound is the point estimate
        (2.0, 0.95, 1.0, 0.95),  # a reference top-1 of 100% as a number: the same bound
    ],
)
def test_calibrate_threshold_with_a_confidence_bound(max_drop, confidence, reference, expected):
    probabilities, labels = _one_confident_mistake()
    got = calibrate_threshold(
        probabilities, labels, max_drop, reference, thresholds=(0.8, 0.95), confidence=confidence
    )
    assert got == pytest.approx(expected)


def test_confidence_tests_from_the_highest_threshold_down():
    """A threshold below one that fails is not taken, even if it passes itself: 0.5
    stops image 1 at a right first glimpse, 0.8 stops it at a wrong second one."""
    probabilities = np.array(
        [
            [[0.9, 0.1], [0.9, 0.1], [0.9, 0.1]],  # right at once
            [[0.6, 0.4], [0.15, 0.85], [0.7, 0.3]],  # right, wrong (0.85), right
        ]
        * 50,
        "float32",
    )
    labels = np.zeros(100, "int64")
    # 0.5 and 0.95: 100%; 0.8: image 1's copies wrong, 50 points lost.
    assert calibrate_threshold(probabilities, labels, 1.0, thresholds=(0.5, 0.8, 0.95)) == 0.5
    got = calibrate_threshold(probabilities, labels, 1.0, thresholds=(0.5, 0.8, 0.95), confidence=0.9)
    assert got == 0.95


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5])
def test_a_confidence_outside_0_1_is_named(confidence):
    with pytest.raises(ValueError, match="`confidence` must be in \\(0, 1\\)"):
        calibrate_threshold(PROBABILITIES, LABELS, 0.5, confidence=confidence)
