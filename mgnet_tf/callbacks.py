"""Training callbacks for logging: the learning rate, and glimpse pictures in TensorBoard."""

import keras
import numpy as np
import tensorflow as tf

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
