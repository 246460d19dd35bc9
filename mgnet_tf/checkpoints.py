"""Crash-safe saving: every file is written beside its target and renamed into place.

A run killed at any moment leaves either the previous file or the new one, never a
half-written one (a rename within a directory is atomic on POSIX file systems; on
object stores such as `gs://` it is a copy followed by a delete of the temporary).
"""

import json
import os
import uuid

import keras
import tensorflow as tf


def _temporary_beside(path):
    directory, name = os.path.split(path)
    # Keras infers the format from the suffix (".keras", ".weights.h5"): keep the name last.
    return os.path.join(directory, f".tmp-{uuid.uuid4().hex[:8]}.{name}")


def _write_then_rename(path, write):
    temporary = _temporary_beside(path)
    try:
        write(temporary)
        tf.io.gfile.rename(temporary, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)


def save_model(model, path):
    """Saves `model` to `path` (`.keras`) atomically."""
    _write_then_rename(path, model.save)


def save_weights(model, path):
    """Saves `model`'s weights (and optimizer state) to `path` (`.weights.h5`) atomically."""
    _write_then_rename(path, model.save_weights)


def write_json(data, path):
    """Writes `data` as indented JSON to `path` atomically."""

    def write(temporary):
        with tf.io.gfile.GFile(temporary, "w") as file:
            file.write(json.dumps(data, indent=2, sort_keys=True) + "\n")

    _write_then_rename(path, write)


def read_json(path):
    """Reads a JSON file; returns None when it does not exist."""
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as file:
        return json.load(file)


# Where keras.callbacks.BackupAndRestore keeps its record of the finished epochs.
TRAINING_METADATA = "training_metadata.json"


def completed_epochs(backup_dir):
    """Epochs finished by the run backed up in `backup_dir` (0 when there is none)."""
    record = read_json(os.path.join(backup_dir, TRAINING_METADATA))
    return 0 if record is None else int(record["epoch"])


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backups are written atomically.

    Keras writes the weights in place, so a run killed during the write leaves a
    truncated file that makes the next start fail. Here the weights and then the
    epoch record are each renamed into place; a kill between the two renames resumes
    from the new weights and repeats one epoch.
    """

    def _save_model(self):
        tf.io.gfile.makedirs(self.backup_dir)
        save_weights(self.model, self._weights_path)
        write_json(
            {"epoch": self._current_epoch, "batch": self._last_batch_seen},
            self._training_metadata_path,
        )


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model to `path` atomically whenever `monitor` reaches a new maximum.

    The best value so far is kept in `<path>.json`, so a resumed run only replaces
    the file when it really does better.

    Args:
        path: the `.keras` file to write.
        monitor: the epoch log to maximize, e.g. "val_acc_4".
    """

    def __init__(self, path, monitor):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.record_path = path + ".json"

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        record = read_json(self.record_path)
        if record is not None and value <= record["value"]:
            return
        save_model(self.model, self.path)
        write_json(
            {"monitor": self.monitor, "value": float(value), "epoch": epoch + 1},
            self.record_path,
        )
