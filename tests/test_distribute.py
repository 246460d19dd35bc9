"""Multi-replica, mixed-precision and crash-resume training, as far as a CPU allows."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from mgnet_tf import MGNet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Logical devices need a fresh runtime, so this runs in its own interpreter.
MIRRORED_VS_SINGLE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from mgnet_tf import MGNet

    rng = np.random.default_rng(0)
    images = rng.random((8, 32, 32, 1)).astype("float32")
    labels = rng.integers(0, 5, 8).astype("int32")
    keras.utils.set_random_seed(0)
    # No batch norm: its statistics are per replica, so the loss would differ.
    initial = MGNet("vanilla_cnn", num_classes=5, image_size=32, num_glimpses=3,
                    downsample=2, channels=1).get_weights()

    def one_step(strategy):
        with strategy.scope():
            model = MGNet("vanilla_cnn", num_classes=5, image_size=32, num_glimpses=3,
                          downsample=2, channels=1)
            model.set_weights(initial)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
        data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
        history = model.fit(data, epochs=1, verbose=0)
        return history.history["loss"][0], model.get_weights()

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    mirrored = tf.distribute.MirroredStrategy(devices)
    single_loss, single_weights = one_step(tf.distribute.get_strategy())
    mirrored_loss, mirrored_weights = one_step(mirrored)
    difference = max(float(np.max(np.abs(a - b)))
                     for a, b in zip(single_weights, mirrored_weights))
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "single": single_loss,
                      "mirrored": mirrored_loss, "weight_difference": difference}))
    """)


def test_mirrored_two_cpus_equals_one_device():
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_VS_SINGLE],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["mirrored"] == pytest.approx(report["single"], rel=1e-5)
    assert report["weight_difference"] < 1e-5


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_training_step_is_finite(policy):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        model = MGNet(
            "vanilla_cnn",
            num_classes=5,
            image_size=32,
            num_glimpses=2,
            downsample=2,
            channels=1,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.01))
        images = np.random.rand(4, 32, 32, 1).astype("float32")
        result = model.train_on_batch(images, np.arange(4), return_dict=True)
        outputs = model(images)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert np.isfinite(result["loss"])
    if policy == "mixed_float16":  # Keras wraps the optimizer for loss scaling
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    # The sampler's coordinates stay float32.
    assert outputs["glimpse_params"].dtype == "float32"


def _epochs(model_dir):
    with open(os.path.join(model_dir, "metrics.csv")) as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def _train_py(idx_dir, model_dir, *flags):
    """The command line of a short train.py run on the IDX fixture, plus `flags`."""
    return [
        sys.executable,
        "train.py",
        "--dataset=translated_mnist",
        f"--data_dir={idx_dir}",
        f"--model_dir={model_dir}",
        "--validation_steps=1",
        "--glimpses=2",
        *flags,
    ]


def _train_command(idx_dir, model_dir):
    return _train_py(
        idx_dir,
        model_dir,
        "--epochs=3",
        "--steps_per_epoch=40",
        "--batch_size=4",
        "--strategy=default",
        "--deterministic",
    )


def test_sigkill_mid_epoch_then_rerun_resumes(tmp_path, idx_dir):
    model_dir = tmp_path / "run"
    command = _train_command(idx_dir, model_dir)
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metadata = model_dir / "backup" / "training_metadata.json"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if metadata.exists() and json.loads(metadata.read_text())["epoch"] >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it was killed"
    assert not (model_dir / "final.keras").exists()
    completed = json.loads(metadata.read_text())["epoch"]
    assert 1 <= completed < 3

    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming the interrupted run" in result.stderr
    epochs = _epochs(model_dir)
    # Epochs before the kill are not run again; the rest are.
    assert epochs[:completed] == list(range(1, completed + 1))  # counted from 1
    assert epochs[-1] == 3 and epochs.count(completed) == 1
    keras.saving.load_model(model_dir / "final.keras")
    leftovers = [p for p in model_dir.rglob(".tmp-*")]
    assert not leftovers, leftovers
    config = json.loads((model_dir / "config.json").read_text())
    assert (config["strategy"], config["num_replicas"]) == ("default", 1)

    # --deterministic: the same run without the interruption ends with the same
    # weights, bit for bit (the data stream and the optimizer state both resume).
    whole_dir = tmp_path / "uninterrupted"
    result = subprocess.run(
        _train_command(idx_dir, whole_dir), cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = keras.saving.load_model(model_dir / "final.keras").get_weights()
    whole = keras.saving.load_model(whole_dir / "final.keras").get_weights()
    assert len(resumed) == len(whole)
    for a, b in zip(resumed, whole):
        np.testing.assert_array_equal(a, b)


def _free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_localhost(tmp_path, make_idx):
    # 96 training digits: the validation twelfth (8) gives each worker whole batches.
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    make_idx(idx_dir, train=96)
    model_dir = tmp_path / "run"
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        environment = dict(
            os.environ,
            TF_CONFIG=json.dumps(
                {
                    "cluster": {"worker": workers},
                    "task": {"type": "worker", "index": index},
                }
            ),
        )
        processes.append(
            subprocess.Popen(
                _train_py(
                    idx_dir,
                    model_dir,
                    "--epochs=2",
                    "--steps_per_epoch=2",
                    "--batch_size=4",
                    "--strategy=multi_worker",
                ),
                cwd=REPO,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=400)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    config = json.loads((model_dir / "config.json").read_text())
    assert (config["strategy"], config["num_replicas"]) == ("multi_worker", 2)
    assert _epochs(model_dir) == [1, 2]
    keras.saving.load_model(model_dir / "final.keras")
    assert (model_dir / "saved_model").exists()
    # Only the chief's files remain: the other worker's scratch directory is gone.
    assert not list((model_dir / "workers").glob("*"))


def test_multi_worker_patch_leaves_other_strategies_alone():
    from keras.src.backend.tensorflow import trainer as tf_trainer

    from training import multi_worker

    assert multi_worker.patch_keras_for_multi_worker()
    assert multi_worker.patch_keras_for_multi_worker()  # idempotent
    wrapped = tf_trainer.reduce_per_replica
    assert wrapped.__module__ == "training.multi_worker"
    values = {"loss": tf.constant(2.5), "acc": tf.constant([0.5])}
    reduced = wrapped(values, tf.distribute.get_strategy(), "auto")
    assert float(reduced["loss"]) == 2.5 and reduced["acc"].numpy().tolist() == [0.5]


def _train_mirrored(idx_dir, model_dir, batch_size):
    return subprocess.run(
        _train_py(
            idx_dir,
            model_dir,
            "--epochs=1",
            "--steps_per_epoch=2",
            f"--batch_size={batch_size}",
            "--strategy=mirrored",
            "--num_cpu_replicas=2",
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
    )


def test_train_py_mirrored_on_two_logical_cpus(tmp_path, idx_dir):
    # The fixture's validation split has 3 images: a global batch of 2 fits.
    result = _train_mirrored(idx_dir, tmp_path / "run", 2)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["strategy"], config["num_replicas"]) == ("mirrored", 2)
    keras.saving.load_model(tmp_path / "run" / "final.keras")


def test_too_few_validation_images_for_the_replicas_is_named(tmp_path, idx_dir):
    result = _train_mirrored(idx_dir, tmp_path / "run", 8)
    assert result.returncode != 0
    assert "The validation split has 3 images" in result.stderr
    assert "--batch_size=8" in result.stderr
