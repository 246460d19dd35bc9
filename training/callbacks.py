"""Training callbacks for logging: the learning rate, glimpse pictures and where the
glimpses look, in the epoch logs and TensorBoard."""

import sys
import textwrap
import time

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


class LookaheadStart(keras.callbacks.Callback):
    """Turns MGNet's lookahead loss on from epoch `start` (counted from 0: `start`
    epochs train without it), through the model's `lookahead_gate`.

    Set at the start of every epoch, so a resumed run is gated as the uninterrupted
    one. Nothing happens for a model without the lookahead loss.
    """

    def __init__(self, start):
        super().__init__()
        if not isinstance(start, int) or start < 0:
            raise ValueError(f"`start` must be an int >= 0. Received: start={start!r}")
        self.start = start

    def on_epoch_begin(self, epoch, logs=None):
        gate = getattr(self.model, "lookahead_gate", None)
        if gate is not None:
            gate.assign(1.0 if epoch >= self.start else 0.0)


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
        # Keras' compiled predict loop (one trace), not an eager call per batch.
        outputs = self.model.predict(self.images, batch_size=self.batch_size, verbose=0)
        params = np.asarray(outputs["glimpse_params"])
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


# Per-glimpse figures of the epoch summary: (label, prefix of the log keys, factor).
_SUMMARY_GROUPS = (
    ("train top-1 %", "acc_", 100.0),
    ("val top-1 %", "val_acc_", 100.0),
    ("val glimpse size s", "val_scale_", 1.0),
    ("val IoU with item", "val_iou_", 1.0),
    ("val centre error px", "val_center_error_", 1.0),
)


def _glimpse_values(logs, prefix):
    """[(t, value)] of the logs' `<prefix><t>` keys, in glimpse order."""
    found = []
    for key, value in logs.items():
        suffix = key[len(prefix):]
        if key.startswith(prefix) and suffix.isdigit():
            found.append((int(suffix), float(value)))
    return sorted(found)


def summary_lines(epoch, epochs, seconds, logs, width=100):
    """The console summary of one finished epoch, every line at most `width` long.

    Args:
        epoch: The epoch's number, counted from 1.
        epochs: The run's number of epochs.
        seconds: How long the epoch took.
        logs: The epoch logs (`loss`, `val_loss`, `learning_rate`, `acc_<t>`,
            `val_acc_<t>`, and the localization logger's `val_scale_<t>`,
            `val_iou_<t>`, `val_center_error_<t>` where present).
        width: The longest line allowed.

    Returns:
        A list of strings.
    """
    head = [f"Epoch {epoch}/{epochs}", f"{seconds:.0f} s"]
    for key, name in (("loss", "loss"), ("val_loss", "val loss")):
        if key in logs:
            head.append(f"{name} {float(logs[key]):.4f}")
    if "learning_rate" in logs:
        head.append(f"learning rate {float(logs['learning_rate']):.3g}")
    lines = textwrap.wrap(" - ".join(head), width, subsequent_indent="    ")
    for label, prefix, factor in _SUMMARY_GROUPS:
        values = _glimpse_values(logs, prefix)
        if not values:
            continue
        first, last = values[0][0], values[-1][0]
        span = f"{first}" if first == last else f"{first}-{last}"
        digits = 1 if factor != 1.0 or prefix == "val_center_error_" else 2
        text = " ".join(f"{value * factor:.{digits}f}" for _, value in values)
        lines += textwrap.wrap(
            f"{label}, glimpse {span}: {text}",
            width,
            initial_indent="  ",
            subsequent_indent="      ",
        )
    return lines


class EpochSummary(keras.callbacks.Callback):
    """Prints each finished epoch as a few lines of at most `width` columns.

    It replaces Keras' one-line epoch log (fit with `verbose=0`), which holds every
    metric and runs to hundreds of columns for an MGNet with five glimpses. With
    `progress=True` (a terminal) it also shows the running step, time and loss on one
    line that is rewritten in place, at most once a second.

    Put it after the callbacks that add to the epoch logs.
    """

    def __init__(self, epochs, steps_per_epoch, width=100, progress=False, stream=None):
        super().__init__()
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.width = width
        self.progress = progress
        self.stream = stream
        self._start = self._shown = 0.0
        self._epoch = 0

    def _write(self, text):
        stream = self.stream or sys.stdout
        stream.write(text)
        stream.flush()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        self._start = self._shown = time.monotonic()

    def _show_step(self, batch, logs):
        now = time.monotonic()
        if now - self._shown < 1.0:
            return
        self._shown = now
        text = (
            f"Epoch {self._epoch}/{self.epochs} - step {batch + 1}/{self.steps} - "
            f"{now - self._start:.0f} s"
        )
        if logs and "loss" in logs:
            text += f" - loss {float(logs['loss']):.4f}"
        self._write("\r" + text[: self.width].ljust(self.width))

    def on_epoch_end(self, epoch, logs=None):
        lines = summary_lines(
            epoch + 1, self.epochs, time.monotonic() - self._start, logs or {}, self.width
        )
        prefix = "\r" + " " * self.width + "\r" if self.progress else ""
        self._write(prefix + "\n".join(lines) + "\n")


class _EpochSummaryWithProgress(EpochSummary):
    """`EpochSummary` with the running step line (a batch hook of its own: without
    one Keras does not copy the logs to the host every step)."""

    def on_train_batch_end(self, batch, logs=None):
        self._show_step(batch, logs)


def epoch_summary(epochs, steps_per_epoch, width=100, progress=False, stream=None):
    """An `EpochSummary`, with the in-place step line where `progress` is set."""
    kind = _EpochSummaryWithProgress if progress else EpochSummary
    return kind(epochs, steps_per_epoch, width, progress, stream)
