"""Data parallelism on JAX: `keras.distribution.DataParallel` over 2 CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=2) gives the loss and the weights of
one device after a few training steps, as test_distribute.py shows for
tf.distribute. Each side runs in its own process on the JAX backend."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIDE = """
import sys
import keras
import numpy as np
import jax
from mgnet_tf import MGNet
from training import strategies

devices = strategies.jax_distribution(sys.argv[1])
assert devices == len(jax.devices()), (devices, jax.devices())
keras.utils.set_random_seed(0)
model = MGNet(backbone="vanilla_cnn", num_classes=5, image_size=32, num_glimpses=3,
              downsample=2, channels=1)
model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
rng = np.random.default_rng(0)
images = rng.random((24, 32, 32, 1), dtype=np.float32)
labels = rng.integers(0, 5, 24)
history = model.fit(images, labels, batch_size=8, epochs=2, shuffle=False, verbose=0)
weights = model.get_weights()
np.savez(sys.argv[2], devices=devices, loss=np.array(history.history["loss"]),
         **{f"w{i}": np.asarray(w) for i, w in enumerate(weights)})
"""


def _side(tmp_path, name, device_count, strategy):
    script = tmp_path / "side.py"
    script.write_text(SIDE)
    environment = dict(
        os.environ,
        KERAS_BACKEND="jax",
        TF_CPP_MIN_LOG_LEVEL="2",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={device_count}",
        PYTHONPATH=REPO,
    )
    output = tmp_path / f"{name}.npz"
    result = subprocess.run(
        [sys.executable, str(script), strategy, str(output)],
        cwd=REPO, env=environment, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return np.load(output)


def test_data_parallel_over_two_devices_equals_one(tmp_path):
    one = _side(tmp_path, "one", 1, "default")
    two = _side(tmp_path, "two", 2, "auto")
    assert int(one["devices"]) == 1 and int(two["devices"]) == 2
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
    names = [k for k in one.files if k.startswith("w")]
    assert len(names) > 10
    for name in names:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-3, atol=1e-5)
    # The steps did move the weights (a test of a no-op would pass too).
    assert not np.allclose(one["loss"][0], one["loss"][1])
