import keras
import numpy as np
import pytest
from backend import jit
from layer_checks import check_layer

from mgnet_tf.layers import BatchNormalization


def _pair(rng, channels=6, shape=(None, 5, 5), **kwargs):
    """Keras' layer and ours, with the same random statistics and affine weights."""
    reference = keras.layers.BatchNormalization(epsilon=1e-5, **kwargs)
    ours = BatchNormalization(epsilon=1e-5, **kwargs)
    for layer in (reference, ours):
        layer.build((*shape, channels))
    weights = [
        rng.normal(size=channels),  # gamma
        rng.normal(size=channels),  # beta
        rng.normal(size=channels),  # moving mean
        rng.random(channels) + 0.2,  # moving variance
    ]
    reference.set_weights(weights)
    ours.set_weights(weights)
    return reference, ours, weights


def test_inference_equals_the_formula_and_keras():
    rng = np.random.default_rng(0)
    reference, ours, (gamma, beta, mean, variance) = _pair(rng)
    x = rng.normal(size=(3, 5, 5, 6)).astype("float32")
    expected = (x - mean) / np.sqrt(variance + 1e-5) * gamma + beta
    np.testing.assert_allclose(ours(x, training=False), expected, atol=1e-5)
    graph = jit(lambda inputs: ours(inputs, training=False), xla=False)
    np.testing.assert_allclose(graph(x), reference(x, training=False), atol=1e-5)


def test_training_is_keras_unchanged():
    rng = np.random.default_rng(0)
    reference, ours, _ = _pair(rng)
    x = rng.normal(size=(4, 5, 5, 6)).astype("float32")
    np.testing.assert_array_equal(ours(x, training=True), reference(x, training=True))
    np.testing.assert_array_equal(ours.moving_mean, reference.moving_mean)
    np.testing.assert_array_equal(ours.moving_variance, reference.moving_variance)


def test_other_ranks_fall_back_to_keras():
    rng = np.random.default_rng(0)
    reference, ours, _ = _pair(rng, shape=(None,))
    x = rng.normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(ours(x), reference(x), atol=1e-6)


@pytest.mark.tensorflow_only  # the fused op is the TensorFlow backend's fast path
def test_inference_is_one_fused_op_in_a_graph():
    import tensorflow as tf

    layer = BatchNormalization()
    graph = tf.function(lambda inputs: layer(inputs, training=False))
    ops = graph.get_concrete_function(tf.TensorSpec((1, 4, 4, 3))).graph.get_operations()
    types = {op.type for op in ops}
    assert "FusedBatchNormV3" in types
    assert not types & {"Mul", "Rsqrt", "Sub", "AddV2"}


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_output_dtype(policy):
    rng = np.random.default_rng(0)
    reference, _, weights = _pair(rng)
    layer = BatchNormalization(epsilon=1e-5, dtype=policy)
    layer.build((None, 5, 5, 6))
    layer.set_weights(weights)
    x = rng.normal(size=(2, 5, 5, 6)).astype("float32")
    output = layer(keras.ops.cast(x, layer.compute_dtype), training=False)
    assert keras.backend.standardize_dtype(output.dtype) == layer.compute_dtype
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(output, "float32")),
        reference(x, training=False),
        atol=0.1,
        rtol=0.02,
    )


def test_layer_contract(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 4)).astype("float32")
    check_layer(BatchNormalization, [x], (2, 5, 5, 4), 2, tmp_path)
