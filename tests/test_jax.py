"""A model trained on the JAX backend is served from TensorFlow: train.py with
KERAS_BACKEND=jax writes a backend-free .keras file and exports the SavedModel through
a TensorFlow process; the SavedModel gives the JAX model's outputs. The JAX side runs
in a subprocess (this process runs on the TensorFlow backend)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("jax")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

JAX_SIDE = """
import json, sys
import numpy as np
import keras
from mgnet_tf import files
from pipelines.transform import EvalTransform

model = files.load_model(sys.argv[1])
images = np.load(sys.argv[2])
inputs = np.asarray(EvalTransform.of_model(model).image(images))
out = model(inputs, training=False)
np.savez(sys.argv[3], backend=keras.backend.backend(), inputs=inputs,
         logits=np.asarray(out["logits"]), glimpse_params=np.asarray(out["glimpse_params"]))
"""


def _jax(*args):
    environment = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.slow  # several minutes: JAX compiles the training step
def test_trained_on_jax_served_from_tensorflow(idx_dir, tmp_path):
    model_dir = tmp_path / "run"
    _jax(
        "train.py",
        "--dataset=translated_mnist",
        f"--data_dir={idx_dir}",
        f"--model_dir={model_dir}",
        "--epochs=1",
        "--steps_per_epoch=2",
        "--validation_steps=1",
        "--batch_size=4",
        "--num_glimpses=3",
    )
    config = json.loads((model_dir / "config.json").read_text())
    assert config["backend"] == "jax"
    assert (model_dir / "saved_model" / "saved_model.pb").exists()

    images = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "jax_side.py"
    script.write_text(JAX_SIDE)
    _jax(str(script), str(model_dir / "final.keras"), str(tmp_path / "images.npy"), str(tmp_path / "jax.npz"))
    jax_side = np.load(tmp_path / "jax.npz")
    assert str(jax_side["backend"]) == "jax"

    served = tf.saved_model.load(str(model_dir / "saved_model"))
    outputs = served.signatures["serving_default"](images=tf.constant(images))
    expected = tf.nn.softmax(jax_side["logits"], axis=-1).numpy()
    np.testing.assert_allclose(outputs["probabilities_per_glimpse"].numpy(), expected, atol=1e-5)
    # The same file on the TensorFlow backend: the same logits and glimpses.
    from mgnet_tf import files

    model = files.load_model(str(model_dir / "final.keras"))
    out = model(jax_side["inputs"], training=False)
    np.testing.assert_allclose(out["logits"].numpy(), jax_side["logits"], atol=1e-4)
    np.testing.assert_allclose(
        out["glimpse_params"].numpy(), jax_side["glimpse_params"], atol=1e-5
    )
    # The glimpses were learned (not all the same), so the comparison covers them.
    assert np.ptp(jax_side["glimpse_params"][:, 1:, 1:]) > 0
