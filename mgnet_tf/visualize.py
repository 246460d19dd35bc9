"""Glimpse boxes: where each glimpse looked, in image coordinates, and drawn on images."""

import numpy as np
import tensorflow as tf

# One colour per glimpse step when correctness is not known (RGB, [0, 1]).
_STEP_COLOURS = np.array(
    [
        [0.0, 0.8, 0.0],
        [0.0, 0.6, 1.0],
        [1.0, 0.6, 0.0],
        [0.8, 0.0, 0.8],
        [1.0, 1.0, 0.0],
    ],
    "float32",
)
RIGHT_COLOUR = (0.0, 0.8, 0.0)
WRONG_COLOUR = (0.9, 0.0, 0.0)


def glimpse_boxes(glimpse_params, image_height, image_width):
    """Converts (s, x, y) glimpse parameters into boxes (ymin, xmin, ymax, xmax) in [0, 1].

    With `align_corners=True` sampling, normalized -1 and 1 are the centres of the first
    and last pixel, so the glimpse spans pixel centres (c - s + 1) / 2 * (n - 1) to
    (c + s + 1) / 2 * (n - 1) along an axis of n pixels; a centre at index i lies at
    (i + 0.5) / n of the image. Boxes are clipped to the image.

    Args:
        glimpse_params: (..., 3) tensor or array of (s, x, y).
        image_height: int, image height in pixels.
        image_width: int, image width in pixels.

    Returns:
        float32 tensor (..., 4) of (ymin, xmin, ymax, xmax).
    """
    params = tf.cast(glimpse_params, tf.float32)
    scale, x_center, y_center = params[..., 0], params[..., 1], params[..., 2]

    def edges(center, size):
        low = ((center - scale + 1.0) * 0.5 * (size - 1) + 0.5) / size
        high = ((center + scale + 1.0) * 0.5 * (size - 1) + 0.5) / size
        return tf.clip_by_value(low, 0.0, 1.0), tf.clip_by_value(high, 0.0, 1.0)

    ymin, ymax = edges(y_center, image_height)
    xmin, xmax = edges(x_center, image_width)
    return tf.stack([ymin, xmin, ymax, xmax], axis=-1)


def draw_glimpse_boxes(images, glimpse_params, correct=None):
    """Draws each glimpse's box on its image.

    Args:
        images: float (B, H, W, C) in [0, 1]; grey images are drawn in colour.
        glimpse_params: (B, T, 3) glimpse parameters.
        correct: optional bool (B, T), whether the prediction after each glimpse was
            right: boxes are then green (right) or red (wrong); without it each step has
            its own colour.

    Returns:
        float32 (B, H, W, 3) images with the boxes drawn.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape[-1] == 1:
        images = tf.image.grayscale_to_rgb(images)
    boxes = glimpse_boxes(glimpse_params, images.shape[1], images.shape[2])
    steps = boxes.shape[1]
    for step in range(steps):
        if correct is None:
            colours = tf.constant(_STEP_COLOURS[step % len(_STEP_COLOURS)][None])
            images = tf.image.draw_bounding_boxes(
                images, boxes[:, step : step + 1], colours
            )
        else:
            # draw_bounding_boxes takes one palette per call: draw every box in each
            # colour and keep, per image, the drawing of its own colour (no boxes moved
            # off-image, for which TensorFlow logs a warning per box).
            right = tf.cast(correct, tf.bool)[:, step]
            drawn = [
                tf.image.draw_bounding_boxes(
                    images, boxes[:, step : step + 1], tf.constant([colour])
                )
                for colour in (RIGHT_COLOUR, WRONG_COLOUR)
            ]
            images = tf.where(right[:, None, None, None], drawn[0], drawn[1])
    return images


def glimpse_picture(image, glimpse_params, glimpses, correct=None):
    """The paper's Figures 6-7 for one image: the glimpse box of each step on the
    image (top row) and the glimpse itself, enlarged, beneath (bottom row).

    Args:
        image: float (H, W, C) in [0, 1].
        glimpse_params: (T, 3) parameters of the glimpses.
        glimpses: float (T, g, g, C) glimpses as the model saw them, in [0, 1].
        correct: optional bool (T,): green box where the prediction after that glimpse
            is right, red where wrong.

    Returns:
        uint8 (2 H + 2, T W + T - 1, 3) array, panels separated by white lines.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    height, width = image.shape[0], image.shape[1]
    steps = glimpse_params.shape[0]
    top, bottom = [], []
    for step in range(steps):
        params = tf.reshape(
            tf.convert_to_tensor(glimpse_params[step], tf.float32), (1, 1, 3)
        )
        mark = None if correct is None else tf.reshape(correct[step], (1, 1))
        boxed = draw_glimpse_boxes(image[None], params, mark)[0]
        crop = tf.image.resize(
            tf.convert_to_tensor(glimpses[step], tf.float32)[None],
            (height, width),
            "nearest",
        )[0]
        if crop.shape[-1] == 1:
            crop = tf.image.grayscale_to_rgb(crop)
        top.append(boxed)
        bottom.append(crop)
    white_column = tf.ones((height, 1, 3))
    rows = []
    for panels in (top, bottom):
        row = [panels[0]]
        for panel in panels[1:]:
            row += [white_column, panel]
        rows.append(tf.concat(row, axis=1))
    white_row = tf.ones((2, rows[0].shape[1], 3))
    picture = tf.concat([rows[0], white_row, rows[1]], axis=0)
    return tf.cast(
        tf.round(tf.clip_by_value(picture, 0.0, 1.0) * 255.0), tf.uint8
    ).numpy()
