"""Crash-safe saving: every file is written beside its target and renamed into place.

A run killed at any moment leaves either the previous file or the new one, never a
half-written one (a rename within a directory is atomic on POSIX file systems; on
object stores such as `gs://` it is a copy followed by a delete of the temporary).
"""

import errno
import json
import os
import re
import signal
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
    """Removes the temporaries `write_then_rename` left beside `names` in `directory`.

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


def write_then_rename(path, write, what="a file"):
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
    write_then_rename(path, model.save, "the model")


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


def write_json(data, path):
    """Writes `data` as indented JSON to `path` atomically."""

    def write(temporary):
        with tf.io.gfile.GFile(temporary, "w") as file:
            file.write(json.dumps(data, indent=2, sort_keys=True) + "\n")

    write_then_rename(path, write, "a record")


def read_json(path):
    """Reads a JSON file; returns None when it does not exist."""
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as file:
        return json.load(file)
