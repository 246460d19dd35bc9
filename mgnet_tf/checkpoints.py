"""Crash-safe saving: every file is written beside its target and renamed into place.

A run killed at any moment leaves either the previous file or the new one, never a
half-written one (a rename within a directory is atomic on POSIX file systems; on
object stores such as `gs://` it is a copy followed by a delete of the temporary).
"""

import csv
import errno
import json
import os
import re
import signal
import time
import uuid
import zipfile

import keras
import tensorflow as tf


# Test hook: `MGNET_KILL_AT=<point>[@<n>]` makes the process SIGKILL itself the n-th
# time (default: the first) it reaches the write point named `<point>` (see
# `kill_point`). It exists to prove that a kill at any write loses nothing.
KILL_AT_ENV = "MGNET_KILL_AT"
_points_reached = {}


def kill_point(point):
    """Kills this process with SIGKILL when `MGNET_KILL_AT` names `point` (tests only).

    The write points: `<file>` once the temporary beside `<file>` is written and not
    yet renamed (e.g. `best.keras`, `latest.weights.h5`), `<file>:done` once renamed,
    and the named points `csv_row` (a row of metrics.csv written), `tensorboard`
    (an epoch's summaries flushed) and `saved_model` (the export written, not yet
    renamed).
    """
    wanted = os.environ.get(KILL_AT_ENV)
    if not wanted:
        return
    name, _, count = wanted.partition("@")
    if name != point:
        return
    _points_reached[point] = _points_reached.get(point, 0) + 1
    if _points_reached[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_TEMPORARY = re.compile(r"^\.tmp-[0-9a-f]{8}\.(?P<name>.+)$")


def _temporary_beside(path):
    directory, name = os.path.split(path)
    # Keras infers the format from the suffix (".keras", ".weights.h5"): keep the name last.
    return os.path.join(directory, f".tmp-{uuid.uuid4().hex[:8]}.{name}")


def remove_temporaries(directory, names):
    """Removes the temporaries `_write_then_rename` left beside `names` in `directory`.

    A process killed between writing a temporary and renaming it leaves the
    temporary behind. Only files named exactly as our writer names them
    (`.tmp-<8 hex digits>.<name>`, `name` one of `names`) are removed.

    Returns:
        The paths removed.
    """
    if not tf.io.gfile.isdir(directory):
        return []
    removed = []
    for entry in sorted(tf.io.gfile.listdir(directory)):
        match = _TEMPORARY.match(entry.rstrip("/"))
        if match and match["name"] in names:
            path = os.path.join(directory, entry.rstrip("/"))
            if not tf.io.gfile.isdir(path):
                tf.io.gfile.remove(path)
                removed.append(path)
    return removed


class DiskFullError(OSError):
    """No space left on the device while writing `path`; `path` is unchanged.

    Attributes:
        path: the file that could not be written.
        what: what it was to hold, e.g. "the model".
    """

    def __init__(self, path, what):
        super().__init__(
            errno.ENOSPC,
            f"No space left on device while writing {what} to {path}; "
            f"{path} keeps its previous version, if any",
        )
        self.path = path
        self.what = what

    def __str__(self):
        return self.args[1]


def is_disk_full(error):
    """Whether `error`, or an error it was raised from, says the disk is full
    (OSError ENOSPC, or a TensorFlow or h5py error with that message)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        text = str(error)
        if "No space left on device" in text or "errno = 28" in text:
            return True
        error = error.__cause__ or error.__context__
    return False


def _write_then_rename(path, write, what="a file"):
    temporary = _temporary_beside(path)
    name = os.path.basename(path)
    try:
        try:
            write(temporary)
            kill_point(name)
            tf.io.gfile.rename(temporary, path, overwrite=True)
        except Exception as error:
            if is_disk_full(error) and not isinstance(error, DiskFullError):
                raise DiskFullError(path, what) from error
            raise
        kill_point(f"{name}:done")
    finally:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)


def save_model(model, path):
    """Saves `model` to `path` (`.keras`) atomically."""
    _write_then_rename(path, model.save, "the model")


class ModelFileError(ValueError):
    """A model file that is missing, cut short or not a `.keras` archive."""


def load_model(path):
    """Loads a `.keras` file, with a clear error for one that cannot be read.

    Keras says "File not found" for a file that exists but is cut short (an
    interrupted copy or download); this names the file, its size and the cause.

    Raises:
        ModelFileError: `path` is missing, is not a complete zip archive (a `.keras`
            file is one), or Keras cannot rebuild a model from it.
    """
    if not tf.io.gfile.exists(path):
        raise ModelFileError(f"{path} does not exist; expected a .keras file")
    if tf.io.gfile.isdir(path):
        raise ModelFileError(
            f"{path} is a directory; expected a .keras file (a SavedModel directory "
            "is for serving, see docs/serving.md)"
        )
    size = tf.io.gfile.stat(path).length
    with tf.io.gfile.GFile(path, "rb") as file:
        complete = zipfile.is_zipfile(file)
    if not complete:
        raise ModelFileError(
            f"{path} ({size} bytes) is not a complete .keras file (a zip archive): it "
            "may be cut short by an interrupted copy or download. Copy it again, or "
            "use the run's other model (final.keras or best.keras)."
        )
    try:
        return keras.saving.load_model(path)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path}: Keras cannot load it: {error}") from error


def save_weights(model, path):
    """Saves `model`'s weights (and optimizer state) to `path` (`.weights.h5`) atomically."""
    _write_then_rename(path, model.save_weights, "the weights and optimizer state")


def write_json(data, path):
    """Writes `data` as indented JSON to `path` atomically."""

    def write(temporary):
        with tf.io.gfile.GFile(temporary, "w") as file:
            file.write(json.dumps(data, indent=2, sort_keys=True) + "\n")

    _write_then_rename(path, write, "a record")


def keep_csv_epochs(path, epochs):
    """Keeps only the rows of epochs 1..`epochs` in the CSV log at `path` (atomically).

    Epochs are counted from 1, as train.py writes them (runs written before
    2026-11-30 counted from 0; their rows are kept alike, with one unfinished epoch
    at most kept twice).

    A run killed after logging an epoch but before backing it up repeats that epoch
    when rerun; without this its row would appear twice. Rows that cannot be parsed
    (a line cut short by a kill) go too. The header stays while a row does.

    Returns:
        The number of rows dropped.
    """
    if not tf.io.gfile.exists(path):
        return 0
    with tf.io.gfile.GFile(path) as file:
        lines = file.read().splitlines(keepends=True)
    if epochs == 0 or not lines or not lines[0].endswith("\n"):
        tf.io.gfile.remove(path)  # the logger starts it again, header first
        return max(len(lines) - 1, 0)
    header = next(csv.reader([lines[0]]))
    kept, dropped = [], 0
    for line in lines[1:]:
        row = next(csv.reader([line]), [])
        try:
            ok = (
                line.endswith("\n")
                and len(row) == len(header)
                and int(row[header.index("epoch")]) <= epochs
            )
        except ValueError:
            ok = False
        if ok:
            kept.append(line)
        else:
            dropped += 1
    if not dropped:
        return 0
    if not kept:
        tf.io.gfile.remove(path)  # the logger writes the header again
        return dropped

    def write(temporary):
        with tf.io.gfile.GFile(temporary, "w") as file:
            file.write("".join([lines[0], *kept]))

    _write_then_rename(path, write, "the earlier rows")
    return dropped


def restart_tensorboard(logs_dir, epoch):
    """Marks a restart at `epoch` in every TensorBoard run under `logs_dir`.

    A run killed after logging an epoch but before backing it up logs that epoch
    again when rerun. TensorBoard drops the earlier steps >= `epoch` of a run when it
    reads a `SessionLog.START` event at that step (after the first), so each epoch
    shows once.
    Nothing is written where no events are yet.
    """
    if not tf.io.gfile.isdir(logs_dir):
        return
    from tensorboard.compat.proto import event_pb2  # noqa: PLC0415
    from tensorboard.summary.writer.event_file_writer import (  # noqa: PLC0415
        EventFileWriter,
    )

    for name in sorted(tf.io.gfile.listdir(logs_dir)):
        run_dir = os.path.join(logs_dir, name.rstrip("/"))
        if not tf.io.gfile.glob(os.path.join(run_dir, "events.out.tfevents.*")):
            continue
        writer = EventFileWriter(run_dir, filename_suffix=".restart")
        # TensorBoard takes the first START of a run for the run's beginning and
        # purges at every later one: write two.
        for _ in range(2):
            writer.add_event(
                event_pb2.Event(
                    wall_time=time.time(),
                    step=epoch,
                    session_log=event_pb2.SessionLog(
                        status=event_pb2.SessionLog.START
                    ),
                )
            )
        writer.close()


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
