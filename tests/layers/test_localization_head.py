import keras
import numpy as np
import pytest

from backend import weight_grads
from layer_checks import check_layer
from mgnet_tf.layers import LocalizationHead


def test_layer_checks(tmp_path):
    features = np.random.rand(2, 7).astype("float32")
    check_layer(lambda: LocalizationHead(0.02), [features], (2, 3), 2, tmp_path)


def test_equation_4_with_known_weights():
    head = LocalizationHead(grad_scale=0.02, scale_min=0.2, scale_max=0.5)
    head.build((None, 2))
    # Dense outputs are exactly the features: sigma(0) = 0.5, sigma(big) -> 1.
    head.dense.kernel.assign(np.array([[1, 0, 0], [0, 1, 1]], "float32"))
    head.dense.bias.assign(np.array([0, 0, -40], "float32"))
    out = np.asarray(head(np.array([[0.0, 0.0], [40.0, 40.0]], "float32")))
    # Row 0: s = 0.5 * 0.3 + 0.2 = 0.35; x = (2 * 0.5 - 1) * 0.65 = 0; y: sigma(-40) ~ 0.
    np.testing.assert_allclose(out[0], [0.35, 0.0, -0.65], atol=1e-6)
    # Row 1: s -> 0.5; x = (2 - 1) * 0.5 = 0.5; y = sigma(0) -> 0.
    np.testing.assert_allclose(out[1], [0.5, 0.5, 0.0], atol=1e-6)


def test_glimpse_stays_inside_the_image():
    head = LocalizationHead(scale_min=0.2, scale_max=0.5)
    out = np.asarray(head(np.random.standard_normal((256, 16)).astype("float32") * 50))
    scale, offsets = out[:, :1], out[:, 1:]
    assert np.all((scale >= 0.2 - 1e-6) & (scale <= 0.5 + 1e-6))
    assert np.all(np.abs(offsets) <= 1.0 - scale + 1e-6)


def test_gradient_rescaled_by_grad_scale():
    features = np.random.rand(4, 5).astype("float32")
    grads = {}
    for factor in (1.0, 0.02):
        head = LocalizationHead(grad_scale=factor)
        head.build(features.shape)
        head.dense.kernel.assign(np.full((5, 3), 0.1, "float32"))
        _, weight_grads_ = weight_grads(head, keras.ops.sum, features, jit=False)
        index = [id(w) for w in head.trainable_weights].index(id(head.dense.kernel))
        grads[factor] = weight_grads_[index]
    np.testing.assert_allclose(grads[0.02], 0.02 * grads[1.0], rtol=1e-5)


def test_bad_scale_range_is_named():
    with pytest.raises(ValueError, match="scale_min"):
        LocalizationHead(scale_min=0.6, scale_max=0.5)


def test_relative_placement_with_known_weights():
    """Both backends: the centre is the previous glimpse's moved by (2 sigma - 1) s_t,
    clipped so that the window stays in the image."""
    head = LocalizationHead(grad_scale=0.02, placement="relative")
    head.build((None, 2))
    head.dense.kernel.assign(np.array([[1, 0, 0], [0, 1, 1]], "float32"))
    head.dense.bias.assign(np.array([0, 0, -40], "float32"))
    previous = np.array([[0.25, 0.1, 0.2], [0.25, 0.4, -0.3]], "float32")
    out = np.asarray(head(np.array([[0.0, 0.0], [40.0, 40.0]], "float32"), previous))
    # Row 0: s = 0.35; x: no move (sigma(0) = 0.5); y moves by -0.25 to -0.05.
    np.testing.assert_allclose(out[0], [0.35, 0.1, -0.05], atol=1e-6)
    # Row 1: s -> 0.5; x moves by +0.25 to 0.65, clipped at 1 - s = 0.5; y stays.
    np.testing.assert_allclose(out[1], [0.5, 0.5, -0.3], atol=1e-6)
    assert LocalizationHead.from_config(head.get_config()).placement == "relative"
