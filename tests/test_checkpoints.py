import os

import numpy as np

import keras
import tensorflow as tf
from training import checkpoints


def _model():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def test_save_model_replaces_atomically_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "m.keras")
    model = _model()
    checkpoints.save_model(model, path)
    first = keras.saving.load_model(path).get_weights()
    model.layers[-1].kernel.assign(np.ones((3, 2), "float32"))
    checkpoints.save_model(model, path)
    second = keras.saving.load_model(path).get_weights()
    assert not np.allclose(first[0], second[0])
    assert os.listdir(tmp_path) == ["m.keras"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = str(tmp_path / "record.json")
    checkpoints.write_json({"a": 1}, path)

    class Unserializable:
        pass

    try:
        checkpoints.write_json({"a": Unserializable()}, path)
    except TypeError:
        pass
    assert checkpoints.read_json(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["record.json"]


def test_read_json_of_a_missing_file_is_none(tmp_path):
    assert checkpoints.read_json(str(tmp_path / "none.json")) is None


def test_best_checkpoint_only_improves(tmp_path):
    path = str(tmp_path / "best.keras")
    callback = checkpoints.BestModelCheckpoint(path, "val_acc")
    callback.set_model(_model())
    callback.on_epoch_end(0, {"val_acc": 0.5})
    saved_at = os.path.getmtime(path)
    callback.on_epoch_end(1, {"val_acc": 0.4})
    assert os.path.getmtime(path) == saved_at
    assert checkpoints.read_json(path + ".json")["epoch"] == 1
    # A new callback (a resumed run) remembers the best value so far.
    resumed = checkpoints.BestModelCheckpoint(path, "val_acc")
    resumed.set_model(_model())
    resumed.on_epoch_end(2, {"val_acc": 0.45})
    assert checkpoints.read_json(path + ".json")["epoch"] == 1
    resumed.on_epoch_end(3, {"val_acc": 0.6})
    assert checkpoints.read_json(path + ".json") == {
        "monitor": "val_acc",
        "value": 0.6,
        "epoch": 4,
    }


def test_backup_and_restore_resumes_from_the_epoch(tmp_path):
    backup = str(tmp_path / "backup")
    x = np.random.rand(8, 3).astype("float32")
    y = np.random.rand(8, 2).astype("float32")

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    model = _model()
    model.compile("sgd", "mse")
    try:
        model.fit(
            x,
            y,
            epochs=3,
            verbose=0,
            callbacks=[checkpoints.BackupAndRestore(backup), StopAfterFirstEpoch()],
        )
    except KeyboardInterrupt:
        pass
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "training_metadata.json"]
    # train.py starts its data stream from the epochs the backup records.
    assert checkpoints.completed_epochs(backup) == 1
    assert checkpoints.completed_epochs(str(tmp_path / "none")) == 0
    resumed = _model()
    resumed.compile("sgd", "mse")
    history = resumed.fit(
        x, y, epochs=3, verbose=0, callbacks=[checkpoints.BackupAndRestore(backup)]
    )
    assert history.epoch == [1, 2]
    assert not os.path.exists(backup)


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def _fit(backup, epochs, stop_after=None):
    """Fits the same model on the same batches (no shuffling, fixed start)."""
    keras.utils.set_random_seed(0)
    x = np.random.RandomState(1).rand(8, 3).astype("float32")
    y = np.random.RandomState(2).rand(8, 2).astype("float32")
    model = _model()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    callbacks = [checkpoints.BackupAndRestore(backup)]
    if stop_after:
        callbacks.append(_StopAfter(stop_after))
    try:
        history = model.fit(
            x, y, epochs=epochs, batch_size=4, shuffle=False, verbose=0,
            callbacks=callbacks,
        )
    except KeyboardInterrupt:
        return model, None
    return model, history


def test_kill_between_the_weights_and_the_record_resumes_exactly(tmp_path):
    """The weights of epoch 2 are in place, the record still says epoch 1 (a kill
    between the two renames): the rerun goes on after epoch 2, from those weights,
    and ends where the uninterrupted run ends."""
    whole, _ = _fit(str(tmp_path / "whole"), 4)
    backup = str(tmp_path / "backup")
    _fit(backup, 4, stop_after=2)
    metadata = os.path.join(backup, checkpoints.TRAINING_METADATA)
    assert checkpoints.read_json(metadata)["epoch"] == 2
    checkpoints.write_json({"epoch": 1, "batch": 0}, metadata)  # the lagging record
    assert checkpoints.completed_epochs(backup) == 2
    resumed, history = _fit(backup, 4)
    assert history.epoch == [2, 3]  # epoch 2 is not run again
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_backup_whose_weights_hold_no_epoch_resumes_from_its_record(tmp_path):
    """Backups written before the weights held their epoch (e.g. stored unfinished
    runs) still resume after the epoch their record names."""
    import h5py

    backup = str(tmp_path / "backup")
    _fit(backup, 4, stop_after=1)
    with h5py.File(os.path.join(backup, checkpoints.BACKUP_WEIGHTS), "r+") as file:
        del file.attrs["mgnet_tf_epoch"]
    assert checkpoints.completed_epochs(backup) == 1  # from the record
    _, history = _fit(backup, 4)
    assert history.epoch == [1, 2, 3]


def test_a_backup_on_another_file_system_holds_its_epoch():
    """The epoch goes into the weights file through tf.io.gfile, not h5py's own
    file access (local only): a backup in TensorFlow's in-memory file system, as one
    in a bucket, records and resumes its epoch."""
    backup = "ram://mgnet_tf_backup_test/backup"
    try:
        _fit(backup, 4, stop_after=2)
        assert checkpoints.completed_epochs(backup) == 2
        _, history = _fit(backup, 4)
        assert history.epoch == [2, 3]
    finally:
        if tf.io.gfile.exists("ram://mgnet_tf_backup_test"):
            tf.io.gfile.rmtree("ram://mgnet_tf_backup_test")
