"""Training checkpoints: the backup a killed run resumes from, the best model, and
the logs cut back to the backed-up epoch. Files are written through
`mgnet_tf.files`, beside their target and renamed into place."""

import csv
import os
import tempfile
import time

import keras
import tensorflow as tf

# The file helpers train.py reaches through this module.
from mgnet_tf.files import (  # noqa: F401
    KILL_AT_ENV,
    DiskFullError,
    ModelFileError,
    is_disk_full,
    kill_point,
    load_model,
    read_json,
    remove_temporaries,
    save_model,
    write_json,
    write_then_rename,
)


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

    write_then_rename(path, write, "the earlier rows")
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


# Where keras.callbacks.BackupAndRestore keeps its record of the finished epochs,
# and its weights.
TRAINING_METADATA = "training_metadata.json"
BACKUP_WEIGHTS = "latest.weights.h5"
# The HDF5 attribute of the backup's weights file that holds the epoch they end.
_EPOCH_ATTRIBUTE = "mgnet_tf_epoch"


def _save_weights_with_epoch(model, path, epoch):
    """`model.save_weights(path)` with `epoch` in the file's attributes. h5py opens
    local files only: the file is written on local disk and copied to `path`, which
    may be on any file system tf.io.gfile knows (e.g. gs://)."""
    import h5py  # noqa: PLC0415  (Keras's own dependency for .weights.h5)

    with tempfile.TemporaryDirectory() as directory:
        local = os.path.join(directory, BACKUP_WEIGHTS)
        model.save_weights(local)
        with h5py.File(local, "r+") as file:
            file.attrs[_EPOCH_ATTRIBUTE] = int(epoch)
        tf.io.gfile.copy(local, path, overwrite=True)


def _weights_epoch(path):
    """The epoch the backup's weights at `path` end, or None for a file without it
    (written before 2026-12-04). Read through tf.io.gfile, so `path` may be remote."""
    import h5py  # noqa: PLC0415

    with tf.io.gfile.GFile(path, "rb") as stream, h5py.File(stream, "r") as file:
        value = file.attrs.get(_EPOCH_ATTRIBUTE)
    return None if value is None else int(value)


def completed_epochs(backup_dir):
    """Epochs finished by the run backed up in `backup_dir` (0 when there is none).

    The epoch its weights file holds counts; the record beside it (Keras's
    training_metadata.json) lags it by one when a kill fell between their two
    renames. Backups written before the weights held their epoch use the record.
    """
    weights = os.path.join(backup_dir, BACKUP_WEIGHTS)
    if tf.io.gfile.exists(weights):
        epoch = _weights_epoch(weights)
        if epoch is not None:
            return epoch
    record = read_json(os.path.join(backup_dir, TRAINING_METADATA))
    return 0 if record is None else int(record["epoch"])


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backups are written atomically and
    resume exactly.

    Keras writes the weights in place, so a run killed during the write leaves a
    truncated file that makes the next start fail. Here the weights and then the
    epoch record are each renamed into place. The weights file also holds the epoch
    it ends (an HDF5 attribute, written before its rename), and that is the epoch a
    rerun resumes after: a kill between the two renames resumes from the new weights
    after their own epoch, exactly as the uninterrupted run goes on, instead of
    repeating an epoch from weights that already include it.
    """

    def _save_model(self):
        tf.io.gfile.makedirs(self.backup_dir)
        epoch = self._current_epoch

        def write(temporary):
            _save_weights_with_epoch(self.model, temporary, epoch)

        write_then_rename(self._weights_path, write, "the weights and optimizer state")
        write_json(
            {"epoch": epoch, "batch": self._last_batch_seen},
            self._training_metadata_path,
        )

    def _load_model(self):
        super()._load_model()
        if tf.io.gfile.exists(self._weights_path):
            self.model._initial_epoch = completed_epochs(self.backup_dir)


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
