"""Training callbacks for logging: the learning rate, glimpse pictures and where the
glimpses look, in the epoch logs and TensorBoard."""

import keras
import numpy as np
import tensorflow as tf

from mgnet_tf.localization import localization_report
from mgnet_tf.visualize import draw_glimpse_boxes


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch logs as `learning_rate`.

    Put it before `TensorBoard` and `CSVLogger` in the callback list so they record it.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            optimizer = self.model.optimizer
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(optimizer.learning_rate)
            )


class GlimpseImages(keras.callbacks.Callback):
    """Writes a fixed batch of images with the glimpse boxes drawn, every epoch.

    Boxes are green where the prediction after that glimpse is right, red where wrong:
    TensorBoard's image tab then shows how the glimpses move as training goes on.

    Args:
        log_dir: TensorBoard directory (a `glimpses` run is written under it).
        images: float (B, H, W, C) in [0, 1], the fixed batch.
        labels: int (B,) labels of `images`.
    """

    def __init__(self, log_dir, images, labels):
        super().__init__()
        self.images = np.asarray(images, "float32")
        self.labels = np.asarray(labels)
        self.writer = tf.summary.create_file_writer(f"{log_dir}/glimpses")

    def on_epoch_end(self, epoch, logs=None):
        outputs = self.model(self.images, training=False)
        predictions = np.argmax(keras.ops.convert_to_numpy(outputs["logits"]), axis=-1)
        correct = predictions == self.labels[:, None]
        pictures = draw_glimpse_boxes(self.images, outputs["glimpse_params"], correct)
        with self.writer.as_default():
            tf.summary.image(
                "glimpses", pictures, step=epoch + 1, max_outputs=len(pictures)
            )
        self.writer.flush()


class LocalizationLogger(keras.callbacks.Callback):
    """Adds where the glimpses look to the epoch logs, and s histograms to TensorBoard.

    Every epoch it runs the model on a fixed set of validation images and adds, per
    glimpse t, `val_scale_{t}` (mean s) and, where the objects' boxes are known (the
    translated data sets), `val_iou_{t}` (median IoU of the glimpse window with the
    object's box) and `val_center_error_{t}` (median distance of their centres, in
    pixels); see `mgnet_tf.localization`. A model whose glimpses sit at a_max or a_min,
    or off the object, shows it in metrics.csv and TensorBoard as it trains. Put it
    before `TensorBoard` and `CSVLogger` in the callback list.

    Args:
        log_dir: TensorBoard directory (a `localization` run with the histograms of s
            per glimpse is written under it).
        images: float (N, H, W, C) in [0, 1], the fixed validation images.
        boxes: float (N, 4) object boxes in pixels, or None.
        batch_size: int, images per forward pass.
    """

    def __init__(self, log_dir, images, boxes=None, batch_size=250):
        super().__init__()
        self.images = np.asarray(images, "float32")
        self.boxes = None if boxes is None else np.asarray(boxes, "float64")
        self.batch_size = batch_size
        self.writer = tf.summary.create_file_writer(f"{log_dir}/localization")

    def on_epoch_end(self, epoch, logs=None):
        params = np.concatenate(
            [
                keras.ops.convert_to_numpy(
                    self.model(self.images[i : i + self.batch_size], training=False)[
                        "glimpse_params"
                    ]
                )
                for i in range(0, len(self.images), self.batch_size)
            ]
        )
        report = localization_report(params, self.boxes, self.images.shape[1])
        if logs is not None:
            for t, scale in enumerate(report["mean_scale"], 1):
                logs[f"val_scale_{t}"] = scale
            for t, iou in enumerate(report.get("median_iou", []), 1):
                logs[f"val_iou_{t}"] = iou
                logs[f"val_center_error_{t}"] = report["median_center_error_px"][t - 1]
        with self.writer.as_default():
            for t in range(params.shape[1]):
                tf.summary.histogram(f"glimpse_{t + 1}_scale", params[:, t, 0], step=epoch + 1)
        self.writer.flush()
