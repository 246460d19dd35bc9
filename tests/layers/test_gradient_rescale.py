import keras
import numpy as np
import pytest

from backend import value_and_grads
from layer_checks import check_layer
from mgnet_tf.layers import GradientRescale


def test_layer_checks(tmp_path):
    x = np.random.rand(2, 5).astype("float32")
    out = check_layer(lambda: GradientRescale(0.5), [x], (2, 5), 0, tmp_path)
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("factor", [0.02, 0.01, 1.0, -3.0, 0.0])
def test_gradient_is_scaled_by_exactly_the_factor(factor):
    x = np.random.rand(3, 4).astype("float32")
    upstream = np.random.rand(3, 4).astype("float32")
    layer = GradientRescale(factor)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    _, (grad,) = value_and_grads(lambda x: keras.ops.sum(layer(x) * upstream), x)
    np.testing.assert_allclose(grad, factor * upstream, rtol=1e-7)


def test_gradient_scaled_under_xla():
    layer = GradientRescale(0.02)
    _, (grad,) = value_and_grads(lambda x: keras.ops.sum(layer(x)), np.ones((2, 3)), jit=True)
    np.testing.assert_allclose(grad, np.full((2, 3), 0.02), rtol=1e-7)


def test_bad_factor_is_named():
    with pytest.raises(ValueError, match="factor"):
        GradientRescale("big")
