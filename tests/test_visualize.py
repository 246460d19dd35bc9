import os
import subprocess
import sys

import numpy as np

from mgnet_tf.visualize import draw_glimpse_boxes, glimpse_boxes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_identity_box_spans_the_pixel_centres():
    boxes = glimpse_boxes(np.array([[1.0, 0.0, 0.0]]), 10, 20).numpy()
    # Pixel centres of the first and last pixel: 0.5 / n and 1 - 0.5 / n.
    np.testing.assert_allclose(boxes[0], [0.05, 0.025, 0.95, 0.975], atol=1e-6)


def test_quarter_box():
    # s = 0.5 centred at (x, y) = (0.5, -0.5) on a 5 px image covers pixels 2..4
    # horizontally (centres 2.5/5 .. 4.5/5) and 0..2 vertically.
    boxes = glimpse_boxes(np.array([[0.5, 0.5, -0.5]]), 5, 5).numpy()
    np.testing.assert_allclose(boxes[0], [0.1, 0.5, 0.5, 0.9], atol=1e-6)


def test_boxes_keep_leading_axes_and_clip():
    params = np.tile(np.array([[[1.0, 0.9, 0.0]]]), (2, 3, 1))
    boxes = glimpse_boxes(params, 8, 8).numpy()
    assert boxes.shape == (2, 3, 4)
    assert boxes.max() <= 1.0 and boxes.min() >= 0.0


def test_draws_green_for_right_and_red_for_wrong():
    images = np.zeros((2, 21, 21, 1), "float32")
    params = np.array([[[0.5, 0.0, 0.0]], [[0.5, 0.0, 0.0]]], "float32")
    pictures = draw_glimpse_boxes(
        images, params, correct=np.array([[True], [False]])
    ).numpy()
    assert pictures.shape == (2, 21, 21, 3)
    # Box from pixel centre 5 to 15 on both axes; its top edge is on row 5.
    top_edge_right = pictures[0, 5, 10]
    top_edge_wrong = pictures[1, 5, 10]
    assert top_edge_right[1] > 0.5 and top_edge_right[0] < 0.1
    assert top_edge_wrong[0] > 0.5 and top_edge_wrong[1] < 0.1
    # Inside and outside the box nothing is drawn.
    assert pictures[:, 10, 10].max() == 0 and pictures[:, 1, 1].max() == 0


def test_draws_one_colour_per_step_without_correctness():
    images = np.zeros((1, 21, 21, 3), "float32")
    params = np.array([[[0.5, 0.0, 0.0], [0.2, 0.5, 0.5]]], "float32")
    pictures = draw_glimpse_boxes(images, params).numpy()
    # tf.image.draw_bounding_boxes puts a box edge at floor(coordinate * (size - 1)):
    # the second box (pixel centres 13..17) has its top edge on row floor(13.5/21*20).
    first, second = pictures[0, 5, 10], pictures[0, 12, 15]
    assert first.max() > 0 and second.max() > 0 and not np.allclose(first, second)


def test_right_and_wrong_boxes_log_no_off_image_warning():
    # TensorFlow logs "completely outside the image" for every box drawn off-image; a
    # training run's pictures drew hundreds of them into its log. Its native log is
    # only seen from a fresh process at the default log level.
    code = """
import numpy as np
from mgnet_tf.visualize import draw_glimpse_boxes
images = np.zeros((3, 21, 21, 1), "float32")
params = np.tile(np.array([[[0.5, 0.0, 0.0], [0.3, 0.2, 0.1]]], "float32"), (3, 1, 1))
correct = np.array([[True, False], [False, True], [True, True]])
print(draw_glimpse_boxes(images, params, correct=correct).numpy().max())
"""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment,
        cwd=REPO, check=True,
    )
    assert float(result.stdout.split()[-1]) > 0
    assert "outside the image" not in result.stderr
