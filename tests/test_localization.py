"""Where the glimpses look: windows in pixels, IoU, the items' boxes in the translated
sets, and the per-epoch localization logs."""

import numpy as np
import pytest

import keras
import pipelines
from mgnet_tf import MGNet
from training.callbacks import LocalizationLogger
from mgnet_tf.localization import (
    box_iou,
    center_distance,
    glimpse_boxes,
    localization_report,
)


def test_the_identity_glimpse_spans_the_first_to_the_last_pixel_centre():
    # align_corners=True: -1 and +1 are the centres of pixels 0 and N - 1.
    np.testing.assert_allclose(glimpse_boxes([1.0, 0.0, 0.0], 112), [0.5, 0.5, 111.5, 111.5])
    # s = 0.25 centred: a window of 0.25 * 111 px around the image centre, 56.
    np.testing.assert_allclose(
        glimpse_boxes([0.25, 0.0, 0.0], 112), [56 - 13.875, 56 - 13.875, 56 + 13.875, 56 + 13.875]
    )
    # x moves columns (left/right), y moves rows (top/bottom).
    top, left, bottom, right = glimpse_boxes([0.5, -0.5, 0.5], 101)
    assert (left + right) / 2 == pytest.approx(0.5 + 0.25 * 100)
    assert (top + bottom) / 2 == pytest.approx(0.5 + 0.75 * 100)


def test_iou_and_centre_distance_on_hand_made_boxes():
    a = [0.0, 0.0, 10.0, 10.0]
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, [20.0, 20.0, 30.0, 30.0]) == 0.0
    # Half of each box overlaps the other: 50 / (100 + 100 - 50).
    assert box_iou(a, [0.0, 5.0, 10.0, 15.0]) == pytest.approx(1 / 3)
    # A 28 px item inside a 56 px window: 784 / 3136.
    assert box_iou([0.0, 0.0, 56.0, 56.0], [14.0, 14.0, 42.0, 42.0]) == pytest.approx(0.25)
    assert center_distance(a, [3.0, 4.0, 13.0, 14.0]) == pytest.approx(5.0)


def test_report_per_glimpse():
    # Two images, two glimpses: the whole image, then a window on the item.
    boxes = np.array([[10.0, 20.0, 38.0, 48.0], [60.0, 60.0, 88.0, 88.0]])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (row, column)
    scale = 28 / 111
    xy = (centres[:, ::-1] - 0.5) / 111 * 2 - 1  # pixels -> normalized (x, y)
    params = np.stack(
        [np.tile([1.0, 0.0, 0.0], (2, 1)), np.column_stack([[scale] * 2, xy])], axis=1
    )
    report = localization_report(params, boxes, 112)
    np.testing.assert_allclose(report["mean_scale"], [1.0, scale])
    np.testing.assert_allclose(report["median_iou"][1], 1.0, atol=1e-9)
    np.testing.assert_allclose(report["median_center_error_px"][1], 0.0, atol=1e-9)
    assert report["iou_at_least_0.5"] == [0.0, 1.0]
    # The whole 111 px window around a 28 px item: 784 / 111^2.
    np.testing.assert_allclose(report["median_iou"][0], 784 / 111**2)
    without_boxes = localization_report(params, None, 112)
    assert set(without_boxes) == {"mean_scale", "scale_quantiles"}
    with pytest.raises(ValueError, match="object_boxes"):
        localization_report(params, boxes[:1], 112)


def test_object_boxes_frame_the_items_the_pipeline_placed(idx_dir):
    # The fixture's items have bright pixels at (4, 6) and (23, 21) of their 28 px
    # frame; find them on each canvas and compare with the recomputed boxes.
    data = pipelines.build_dataset(
        "translated_fashion_mnist", "test", str(idx_dir), batch_size=12, seed=3
    )
    images = np.concatenate([x.numpy() for x, _ in data])[..., 0]
    boxes = pipelines.object_boxes("translated_fashion_mnist", "test", len(images), 3)
    for image, box in zip(images, boxes):
        rows, cols = np.nonzero(image)
        assert (rows.min() - 4, cols.min() - 6) == (box[0], box[1])
        assert (box[2] - box[0], box[3] - box[1]) == (28, 28)
    other_seed = pipelines.object_boxes("translated_fashion_mnist", "test", len(images), 4)
    assert np.any(other_seed != boxes)
    # Resized pipelines get boxes in the resized pixels; other sets have none.
    half = pipelines.object_boxes("translated_fashion_mnist", "test", 3, 3, image_size=56)
    np.testing.assert_allclose(half, boxes[:3] / 2)
    assert pipelines.object_boxes("tiny_imagenet", "validation", 3, 0) is None


def test_localization_logger_adds_per_glimpse_figures(tmp_path):
    model = MGNet("vanilla_cnn", num_classes=3, image_size=32, num_glimpses=3,
                  downsample=2, channels=1)
    images = np.random.rand(6, 32, 32, 1).astype("float32")
    boxes = np.tile([4.0, 4.0, 20.0, 20.0], (6, 1))
    logger = LocalizationLogger(str(tmp_path), images, boxes, batch_size=4)
    logger.set_model(model)
    logs = {}
    logger.on_epoch_end(0, logs)
    params = keras.ops.convert_to_numpy(model(images)["glimpse_params"])
    expected = localization_report(params, boxes, 32)
    for t in range(3):
        assert logs[f"val_scale_{t + 1}"] == pytest.approx(expected["mean_scale"][t])
        assert logs[f"val_iou_{t + 1}"] == pytest.approx(expected["median_iou"][t])
    assert logs["val_scale_1"] == pytest.approx(1.0)
    no_boxes = {}
    unboxed = LocalizationLogger(str(tmp_path), images)
    unboxed.set_model(model)
    unboxed.on_epoch_end(0, no_boxes)
    assert "val_iou_1" not in no_boxes and "val_scale_3" in no_boxes
    assert list((tmp_path / "localization").glob("events.out.tfevents.*"))
