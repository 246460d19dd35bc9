import os

import numpy as np

import keras
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
