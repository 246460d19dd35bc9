import numpy as np
import pytest
import tensorflow as tf

from layer_checks import check_layer
from mgnet_tf.layers import GradientRescale


def test_layer_checks(tmp_path):
    x = np.random.rand(2, 5).astype("float32")
    out = check_layer(lambda: GradientRescale(0.5), [x], (2, 5), 0, tmp_path)
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("factor", [0.02, 0.01, 1.0, -3.0, 0.0])
def test_gradient_is_scaled_by_exactly_the_factor(factor):
    x = tf.Variable(np.random.rand(3, 4).astype("float32"))
    upstream = tf.constant(np.random.rand(3, 4).astype("float32"))
    with tf.GradientTape() as tape:
        y = GradientRescale(factor)(x)
        loss = tf.reduce_sum(y * upstream)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(
        tape.gradient(loss, x).numpy(), factor * upstream.numpy(), rtol=1e-7
    )


def test_gradient_scaled_under_xla():
    layer = GradientRescale(0.02)

    @tf.function(jit_compile=True)
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(layer(x))
        return tape.gradient(total, x)

    np.testing.assert_allclose(
        grad(tf.ones((2, 3))).numpy(), np.full((2, 3), 0.02), rtol=1e-7
    )


def test_bad_factor_is_named():
    with pytest.raises(ValueError, match="factor"):
        GradientRescale("big")
