"""One declarative check that every custom layer goes through (cf. keras' run_layer_test)."""

import keras
import numpy as np

from backend import weight_grads


def check_layer(
    layer_factory, inputs, expected_output_shape, expected_trainable_weights, tmp_path
):
    """Shapes, weight count, config and `.keras` round trips, XLA and a training step.

    Args:
        layer_factory: callable returning a fresh layer.
        inputs: list of float32 numpy arrays, the layer's positional inputs.
        expected_output_shape: tuple, the output shape for `inputs`.
        expected_trainable_weights: int, number of trainable weight tensors.
        tmp_path: pytest's tmp_path, for the saved file.

    Returns:
        The layer's output for `inputs`.
    """
    layer = layer_factory()
    output = layer(*inputs)
    assert tuple(output.shape) == tuple(expected_output_shape)
    assert len(layer.trainable_weights) == expected_trainable_weights

    # Config round trip: a layer built from the config computes the same function.
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(*inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(*inputs), output, atol=1e-6)

    # `.keras` round trip inside a functional model; load_model uses safe_mode=True.
    symbolic = [keras.Input(x.shape[1:]) for x in inputs]
    model = keras.Model(symbolic, layer_factory()(*symbolic))
    file = tmp_path / "model.keras"
    model.save(file)
    loaded = keras.saving.load_model(file)
    np.testing.assert_allclose(loaded(inputs), model(inputs), atol=0)

    # XLA (the TPU path) and gradients for every trainable weight, on the backend the
    # tests run on.
    loss, grads = weight_grads(
        layer, lambda out: keras.ops.sum(keras.ops.square(out)), *inputs
    )
    assert np.isfinite(loss)
    assert len(grads) == expected_trainable_weights
    for grad in grads:
        assert grad is not None and np.any(grad != 0)
    return output
