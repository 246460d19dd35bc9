"""Where the glimpses look: glimpse windows in pixels and how well they frame an object.

A glimpse's (s, x, y) is the affine map of `GlimpseSampler` with PyTorch's
`align_corners=True` convention: normalized -1 and +1 are the centres of the first
and last pixel. In continuous pixel coordinates (pixel i spans [i, i + 1]) a
normalized coordinate u sits at 0.5 + (u + 1) / 2 * (N - 1), so the glimpse window
[x - s, x + s] spans s * (N - 1) pixels: s = 0.25 on a 112 px image is a 27.75 px
window, the size of a 28 px Fashion-MNIST item.

Boxes are (top, left, bottom, right) in those continuous pixel coordinates; an item
pasted with its top-left pixel at (row r, column c) and side 28 has the box
(r, c, r + 28, c + 28). NumPy only: usable from any backend and any script.
"""

import numpy as np


def glimpse_boxes(glimpse_params, image_size):
    """Glimpse windows in pixels.

    Args:
        glimpse_params: array (..., 3) of (s, x, y) (x: columns, y: rows).
        image_size: int, the side of the (square) image.

    Returns:
        float64 array (..., 4) of (top, left, bottom, right).
    """
    params = np.asarray(glimpse_params, np.float64)
    scale, x, y = params[..., 0], params[..., 1], params[..., 2]

    def to_pixels(u):
        return 0.5 + (u + 1.0) * 0.5 * (image_size - 1)

    return np.stack(
        [to_pixels(y - scale), to_pixels(x - scale), to_pixels(y + scale), to_pixels(x + scale)],
        axis=-1,
    )


def box_iou(boxes_a, boxes_b):
    """Intersection over union of (top, left, bottom, right) boxes, broadcast."""
    a, b = np.asarray(boxes_a, np.float64), np.asarray(boxes_b, np.float64)
    height = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    width = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    intersection = np.clip(height, 0, None) * np.clip(width, 0, None)

    def area(box):
        return (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])

    union = area(a) + area(b) - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)


def center_distance(boxes_a, boxes_b):
    """Euclidean distance in pixels between the centres of two sets of boxes."""
    a, b = np.asarray(boxes_a, np.float64), np.asarray(boxes_b, np.float64)
    dy = (a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]) / 2
    dx = (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]) / 2
    return np.hypot(dy, dx)


def localization_report(glimpse_params, object_boxes, image_size):
    """Per-glimpse figures of how glimpses frame the objects.

    Args:
        glimpse_params: array (N, T, 3), each image's (s, x, y) per glimpse.
        object_boxes: array (N, 4), each image's object box in pixels, or None
            where no box is known (then only the glimpse sizes are reported).
        image_size: int, the image side in pixels.

    Returns:
        A dict of lists with one value per glimpse: `mean_scale`, `scale_quantiles`
        (the 10/50/90th percentiles of s) and, with boxes, `median_center_error_px`,
        `median_iou`, `mean_iou` and `iou_at_least_0.5` (the fraction of images whose
        window has IoU >= 0.5 with the object).
    """
    params = np.asarray(glimpse_params, np.float64)
    if params.ndim != 3 or params.shape[-1] != 3:
        raise ValueError(
            f"Expected glimpse_params of shape (N, T, 3). Received: {params.shape}"
        )
    scales = params[..., 0]
    report = {
        "mean_scale": scales.mean(axis=0).tolist(),
        "scale_quantiles": np.percentile(scales, [10, 50, 90], axis=0).T.tolist(),
    }
    if object_boxes is None:
        return report
    boxes = np.asarray(object_boxes, np.float64)
    if boxes.shape != (params.shape[0], 4):
        raise ValueError(
            f"Expected object_boxes of shape ({params.shape[0]}, 4). Received: {boxes.shape}"
        )
    windows = glimpse_boxes(params, image_size)
    iou = box_iou(windows, boxes[:, None, :])
    distance = center_distance(windows, boxes[:, None, :])
    report.update(
        median_center_error_px=np.median(distance, axis=0).tolist(),
        median_iou=np.median(iou, axis=0).tolist(),
        mean_iou=iou.mean(axis=0).tolist(),
        **{"iou_at_least_0.5": (iou >= 0.5).mean(axis=0).tolist()},
    )
    return report
