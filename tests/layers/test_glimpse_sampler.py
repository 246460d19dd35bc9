import os

import keras
import numpy as np
import pytest

from backend import jit, value_and_grads
from mgnet_tf.layers import GlimpseSampler


def _sample(images, params, size):
    return GlimpseSampler(size)(
        np.asarray(images, "float32"), np.asarray(params, "float32")
    )


def test_identity_at_full_size_returns_the_image():
    images = np.random.rand(2, 7, 9, 3).astype("float32")
    out = _sample(images, [[1, 0, 0]] * 2, (7, 9))
    np.testing.assert_allclose(out, images, atol=1e-6)


def test_known_crop_corners():
    # A 5x5 ramp: pixel (r, c) holds 10 r + c. Pixel i sits at normalized -1 + i / 2.
    ramp = (10 * np.arange(5)[:, None] + np.arange(5)[None, :]).astype("float32")
    images = ramp[None, :, :, None]
    # s = 0.5, centre (x, y) = (0.5, -0.5): columns span [0, 1] -> pixels 2..4,
    # rows span [-1, 0] -> pixels 0..2. A 3x3 glimpse lands on whole pixels.
    out = _sample(images, [[0.5, 0.5, -0.5]], (3, 3))[0, :, :, 0]
    expected = np.array([[2, 3, 4], [12, 13, 14], [22, 23, 24]], "float32")
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # A 2x2 glimpse of the same region reads the four corners.
    out = _sample(images, [[0.5, 0.5, -0.5]], (2, 2))[0, :, :, 0]
    np.testing.assert_allclose(out, [[2, 4], [22, 24]], atol=1e-5)


def test_bilinear_between_pixels():
    ramp = (10 * np.arange(5)[:, None] + np.arange(5)[None, :]).astype("float32")
    # Centre at x = 0.25 (pixel column 2.5), y = 0 (row 2): a 1x1 glimpse samples it.
    out = _sample(ramp[None, :, :, None], [[0.5, 0.25, 0.0]], (1, 1))
    np.testing.assert_allclose(out[0, 0, 0, 0], 22.5, atol=1e-5)


def test_outside_the_image_reads_zeros():
    images = np.ones((1, 4, 4, 2), "float32")
    # Shifted right by a whole image width: every sample is outside.
    out = _sample(images, [[1.0, 2.0 + 2.0 / 3.0, 0.0]], (4, 4))
    np.testing.assert_allclose(out, 0.0)
    # Half a pixel past the last column: half of the value survives (zero padding).
    out = _sample(images, [[1.0, 1.0 / 3.0, 0.0]], (4, 4))
    np.testing.assert_allclose(out[0, :, 3], 0.5, atol=1e-6)
    np.testing.assert_allclose(out[0, :, :3], 1.0, atol=1e-6)


# PyTorch's affine_grid + grid_sample (bilinear, zeros padding, align_corners=True) on
# the same inputs: values and gradients, computed once by tests/data/torch_reference.py.
PYTORCH_REFERENCE = os.path.join(
    os.path.dirname(__file__), os.pardir, "data", "glimpse_sampler_pytorch.npz"
)


@pytest.mark.parametrize("method", ["gather", "matmul"])
@pytest.mark.parametrize(
    "image_shape, size",
    [((3, 17, 23, 2), (5, 7)), ((2, 64, 64, 3), (32, 32)), ((2, 9, 9, 1), (1, 4))],
)
def test_matches_pytorch_values_and_gradients(image_shape, size, method):
    key = "x".join(map(str, image_shape)) + "_" + "x".join(map(str, size))
    names = ("images", "params", "upstream", "out", "grad_images", "grad_params")
    with np.load(PYTORCH_REFERENCE) as reference:
        case = {name: reference[f"{key}_{name}"] for name in names}
    assert case["images"].shape == image_shape
    # Scales and offsets that reach past the border, so zero padding is exercised.
    params = case["params"]
    assert np.any(np.abs(params[:, 1:]) + params[:, :1] > 1)

    sampler = GlimpseSampler(size, method=method)
    out = np.asarray(sampler(case["images"], params))
    np.testing.assert_allclose(out, case["out"], atol=1e-5)
    _, (grad_images, grad_params) = value_and_grads(
        lambda images, params: keras.ops.sum(sampler(images, params) * case["upstream"]),
        case["images"],
        params,
    )
    np.testing.assert_allclose(grad_images, case["grad_images"], atol=1e-4)
    np.testing.assert_allclose(grad_params, case["grad_params"], rtol=1e-4, atol=1e-3)


def test_gradients_reach_images_and_params():
    images = np.random.rand(2, 16, 16, 3).astype("float32")
    params = np.array([[0.5, 0.1, -0.2], [0.3, -0.4, 0.4]], "float32")
    sampler = GlimpseSampler(8)
    _, (grad_images, grad_params) = value_and_grads(
        lambda images, params: keras.ops.sum(sampler(images, params) ** 2), images, params
    )
    assert np.abs(grad_images).sum() > 0
    assert np.all(np.abs(grad_params) > 0)


def test_compiles_with_xla_and_matches_eager():
    sampler = GlimpseSampler((8, 8))
    images = np.random.rand(2, 16, 16, 3).astype("float32")
    params = np.array([[0.5, 0.1, -0.2], [0.3, -0.4, 0.4]], "float32")
    np.testing.assert_allclose(
        jit(sampler)(images, params), np.asarray(sampler(images, params)), atol=1e-6
    )
    _, (grad,) = value_and_grads(
        lambda p: keras.ops.sum(sampler(images, p)), params, jit=True
    )
    assert np.all(np.isfinite(grad)) and np.all(grad != 0)


def test_shapes_config_and_keras_round_trip(tmp_path):
    images_in = keras.Input((16, 16, 3))
    params_in = keras.Input((3,))
    out = GlimpseSampler((8, 6), name="sampler")(images_in, params_in)
    assert tuple(out.shape) == (None, 8, 6, 3)
    model = keras.Model([images_in, params_in], out)
    path = tmp_path / "sampler.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True is the default
    images = np.random.rand(2, 16, 16, 3).astype("float32")
    params = np.array([[0.5, 0.1, -0.2], [0.9, 0.0, 0.0]], "float32")
    np.testing.assert_allclose(
        loaded([images, params]), model([images, params]), atol=0
    )
    config = GlimpseSampler((8, 6), method="matmul").get_config()
    restored = GlimpseSampler.from_config(config)
    assert (restored.output_size, restored.method) == ((8, 6), "matmul")


def test_matmul_method_equals_gather_under_xla_at_model_sizes():
    """The two methods on 112 -> 28 px and 224 -> 96 px glimpses reaching past the
    border: the same values and parameter gradients, compiled."""
    rng = np.random.default_rng(0)
    for shape, size in (((4, 112, 112, 1), 28), ((2, 224, 224, 3), 96)):
        images = rng.random(shape, dtype=np.float32)
        params = np.stack(
            [rng.uniform(0.2, 0.6, shape[0]), rng.uniform(-0.9, 0.9, shape[0]), rng.uniform(-0.9, 0.9, shape[0])], 1
        ).astype("float32")
        upstream = rng.standard_normal((shape[0], size, size, shape[-1])).astype("float32")
        # A pixel position near the far border is a float32 of about H - 1, so compiled
        # and eager code (fused differently) may place it a few ulps apart; pixel values
        # are in [0, 1], so the values may differ by that much.
        atol = 4 * float(np.spacing(np.float32(shape[1])))
        results = {}
        for method in ("gather", "matmul"):
            sampler = GlimpseSampler(size, method=method)
            results[method] = value_and_grads(
                lambda images, p: keras.ops.sum(sampler(images, p) * upstream), images, params, jit=True
            )
            np.testing.assert_allclose(
                jit(sampler)(images, params), GlimpseSampler(size)(images, params), atol=atol
            )
        (value_g, (gi_g, gp_g)), (value_m, (gi_m, gp_m)) = results["gather"], results["matmul"]
        np.testing.assert_allclose(value_m, value_g, rtol=1e-5)
        np.testing.assert_allclose(gi_m, gi_g, atol=atol)
        np.testing.assert_allclose(gp_m, gp_g, rtol=1e-4, atol=1e-3)


def test_bad_method_is_named():
    with pytest.raises(ValueError, match="method"):
        GlimpseSampler(8, method="bicubic")


@pytest.mark.tensorflow_only  # tf.data runs TensorFlow ops
def test_runs_inside_dataset_map():
    import tensorflow as tf

    images = np.random.rand(4, 16, 16, 3).astype("float32")
    params = np.tile(np.array([[0.5, 0.0, 0.0]], "float32"), (4, 1))
    sampler = GlimpseSampler(8)
    dataset = tf.data.Dataset.from_tensor_slices((images, params)).batch(2)
    mapped = [x.numpy() for x in dataset.map(sampler)]
    np.testing.assert_allclose(
        np.concatenate(mapped), sampler(images, params), atol=1e-6
    )


@pytest.mark.parametrize("bad", [0, (4,), (4, -1), (2.5, 3)])
def test_bad_output_size_is_named(bad):
    with pytest.raises(ValueError, match="output_size"):
        GlimpseSampler(bad)
