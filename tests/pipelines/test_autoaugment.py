"""Tests of the AutoAugment ops and policy (pipelines/autoaugment.py).

Expected values are worked out by hand from each op's definition (PIL /
torchvision semantics), not taken from the code's output.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipelines import autoaugment as aa

SIZE = 32
OP_NAMES = {
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
}
# Every op at a magnitude that changes a random image.
OPS = {
    "shear_x": lambda image: aa.shear_x(image, 0.2),
    "shear_y": lambda image: aa.shear_y(image, -0.2),
    "translate_x": lambda image: aa.translate_x(image, 5.0),
    "translate_y": lambda image: aa.translate_y(image, -5.0),
    "rotate": lambda image: aa.rotate(image, 20.0),
    "brightness": lambda image: aa.brightness(image, 1.5),
    "color": lambda image: aa.color(image, 0.3),
    "contrast": lambda image: aa.contrast(image, 1.6),
    "sharpness": lambda image: aa.sharpness(image, 0.2),
    "posterize": lambda image: aa.posterize(image, 3),
    "solarize": lambda image: aa.solarize(image, 100.0),
    "auto_contrast": aa.auto_contrast,
    "equalize": aa.equalize,
    "invert": aa.invert,
}


def random_image(seed=0, channels=3, low=0, high=256):
    rng = np.random.default_rng(seed)
    return rng.integers(low, high, (SIZE, SIZE, channels), dtype=np.uint8)


def ramp():
    """A (SIZE, SIZE, 3) image holding every value 0..255 four times."""
    values = np.arange(SIZE * SIZE) % 256
    return np.repeat(values.reshape(SIZE, SIZE, 1), 3, axis=2).astype(np.uint8)


def in_map(function, image):
    """`function` applied inside tf.data.Dataset.map; also returns the spec."""
    dataset = tf.data.Dataset.from_tensors(image).map(function)
    return dataset.get_single_element().numpy(), dataset.element_spec


# --- Every op, eagerly and in tf.data ----------------------------------------


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name", sorted(OPS))
def test_op_eager_and_in_map_agree(name, channels):
    # Values inside 0..255, so that auto_contrast has something to stretch.
    image = random_image(channels=channels, low=20, high=200)
    eager = OPS[name](image).numpy()
    mapped, spec = in_map(OPS[name], image)
    assert eager.dtype == np.uint8 and eager.shape == image.shape
    assert spec.dtype == tf.uint8 and spec.shape == image.shape
    np.testing.assert_array_equal(eager, mapped)
    # Color is the identity on grayscale images; every other op changes the image.
    if not (name == "color" and channels == 1):
        assert (eager != image).any()


# --- Exact values -------------------------------------------------------------


def test_invert():
    image = ramp()
    np.testing.assert_array_equal(aa.invert(image), 255 - image.astype(int))
    assert aa.invert(np.full((2, 2, 3), 10, np.uint8)).numpy()[0, 0, 0] == 245


def test_solarize_threshold_128():
    image = ramp()
    out = aa.solarize(image, 128.0).numpy()
    # 0..127 stay, 128..255 become 127..0.
    values = image[..., 0].ravel()
    result = out[..., 0].ravel()
    np.testing.assert_array_equal(result[values < 128], values[values < 128])
    np.testing.assert_array_equal(result[values >= 128], 255 - values[values >= 128])
    lookup = dict(zip(values.tolist(), result.tolist()))
    assert [lookup[v] for v in (0, 127, 128, 200, 255)] == [0, 127, 127, 55, 0]


def test_posterize_4_bits_clears_low_nibble():
    image = np.array([[[0x00, 0x0F, 0x37]], [[0x80, 0xF1, 0xFF]]], np.uint8)
    out = aa.posterize(image, 4).numpy()
    np.testing.assert_array_equal(out, [[[0x00, 0x00, 0x30]], [[0x80, 0xF0, 0xF0]]])
    np.testing.assert_array_equal(aa.posterize(image, 8), image)
    np.testing.assert_array_equal(aa.posterize(image, 0), np.zeros_like(image))


def test_brightness_0_is_black_and_1_is_identity():
    image = random_image()
    np.testing.assert_array_equal(aa.brightness(image, 0.0), np.zeros_like(image))
    np.testing.assert_array_equal(aa.brightness(image, 1.0), image)
    # 100 * 1.5 = 150; 200 * 1.5 = 300 saturates at 255.
    pair = np.array([[[100, 200, 0]]], np.uint8)
    np.testing.assert_array_equal(aa.brightness(pair, 1.5), [[[150, 255, 0]]])


def test_contrast():
    image = random_image()
    np.testing.assert_array_equal(aa.contrast(image, 1.0), image)
    # Gray (equal channels) half 0, half 100: luma mean 50; factor 0 gives 50
    # everywhere, factor 2 gives 50 + 2 * (x - 50), i.e. 0 -> -50 -> 0, 100 -> 150.
    gray = np.zeros((SIZE, SIZE, 3), np.uint8)
    gray[: SIZE // 2] = 100
    np.testing.assert_array_equal(aa.contrast(gray, 0.0), np.full_like(gray, 50))
    expected = np.where(gray == 100, 150, 0)
    np.testing.assert_array_equal(aa.contrast(gray, 2.0), expected)


def test_color():
    image = random_image()
    np.testing.assert_array_equal(aa.color(image, 1.0), image)
    # Pure red's luma is 0.299 * 255 = 76.2 -> 76 (PIL rounds).
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    np.testing.assert_array_equal(aa.color(red, 0.0), np.full_like(red, 76))
    # A gray image is its own grayscale: unchanged whatever the factor.
    gray = np.repeat(random_image(channels=1), 3, axis=2)
    np.testing.assert_array_equal(aa.color(gray, 0.0), gray)


def test_sharpness():
    image = random_image()
    np.testing.assert_array_equal(aa.sharpness(image, 1.0), image)
    # One bright pixel of 130 at (5, 5): smoothing by [[1,1,1],[1,5,1],[1,1,1]]/13
    # gives 130 * 5 / 13 = 50 at the pixel and 130 / 13 = 10 around it.
    dot = np.zeros((SIZE, SIZE, 1), np.uint8)
    dot[5, 5] = 130
    expected = np.zeros((SIZE, SIZE), int)
    expected[4:7, 4:7] = 10
    expected[5, 5] = 50
    np.testing.assert_array_equal(aa.sharpness(dot, 0.0).numpy()[..., 0], expected)
    # The one-pixel border never changes, even with a pixel on it.
    dot = np.zeros((SIZE, SIZE, 1), np.uint8)
    dot[0, 5] = 130
    out = aa.sharpness(dot, 0.0).numpy()[..., 0]
    assert out[0, 5] == 130 and out[1, 5] == 10 and out[0, 4] == 0


def test_auto_contrast_stretches_each_channel():
    image = random_image(low=50, high=101)
    image[0, 0] = 50
    image[0, 1] = 100
    image[0, 2] = 75
    image[..., 2] = 80  # a constant channel stays unchanged
    out = aa.auto_contrast(image).numpy()
    np.testing.assert_array_equal(out[0, 0, :2], [0, 0])
    np.testing.assert_array_equal(out[0, 1, :2], [255, 255])
    # 75 is 25 / 50 of the way: 127.5, truncated to 127.
    np.testing.assert_array_equal(out[0, 2, :2], [127, 127])
    np.testing.assert_array_equal(out[..., 2], image[..., 2])


def test_equalize():
    # Each value four times: already uniform, so equalization changes nothing.
    np.testing.assert_array_equal(aa.equalize(ramp()), ramp())
    # Two levels, half each: the lower maps to 0 and the upper to 255.
    two = np.full((SIZE, SIZE, 3), 100, np.uint8)
    two[SIZE // 2 :] = 150
    out = aa.equalize(two).numpy()
    np.testing.assert_array_equal(out, np.where(two == 150, 255, 0))
    # A single level is left unchanged.
    flat = np.full((SIZE, SIZE, 1), 77, np.uint8)
    np.testing.assert_array_equal(aa.equalize(flat), flat)


@pytest.mark.parametrize(
    "op", [aa.rotate, aa.translate_x, aa.translate_y, aa.shear_x, aa.shear_y]
)
def test_geometric_op_of_zero_is_identity(op):
    image = random_image()
    np.testing.assert_array_equal(op(image, 0.0), image)


def test_translate_moves_content_right_and_down():
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[10, 5] = 255
    out = aa.translate_x(image, 3.0).numpy()
    assert out[10, 8].tolist() == [255] * 3 and out[10, 5].tolist() == [0] * 3
    # The three uncovered columns on the left are gray.
    assert (out[:, :3] == aa.FILL_VALUE).all() and (out[:, 3:] != 128).all()
    out = aa.translate_y(image, 3.0).numpy()
    assert out[13, 5].tolist() == [255] * 3
    assert (out[:3] == aa.FILL_VALUE).all()
    out = aa.translate_x(image, -3.0).numpy()
    assert out[10, 2].tolist() == [255] * 3 and (out[:, -3:] == 128).all()


def test_rotate_is_counter_clockwise():
    image = random_image()
    # np.rot90 turns counter-clockwise, as PIL / torchvision for positive angles.
    np.testing.assert_array_equal(aa.rotate(image, 90.0), np.rot90(image, 1))
    np.testing.assert_array_equal(aa.rotate(image, -90.0), np.rot90(image, -1))
    # At 45 degrees the corners come from outside the image: gray.
    out = aa.rotate(image, 45.0).numpy()
    assert (out[[0, 0, -1, -1], [0, -1, 0, -1]] == aa.FILL_VALUE).all()


def test_shear_x_is_about_the_top_left_corner():
    # Output (x, y) reads input x + 0.5 * (y + 0.5): row 0 reads x + 0.25
    # (unchanged) and row 4 reads x + 2.25, so row 4 moves 2 pixels left.
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[0, 10] = image[4, 10] = 255
    out = aa.shear_x(image, 0.5).numpy()
    assert out[0, 10, 0] == 255 and out[4, 8, 0] == 255 and out[4, 10, 0] == 0
    # Rows 4..: the right end reads beyond the image: gray.
    assert (out[4, -2:] == aa.FILL_VALUE).all()
    out = aa.shear_y(np.transpose(image, (1, 0, 2)), 0.5).numpy()
    assert out[10, 0, 0] == 255 and out[8, 4, 0] == 255


# --- Magnitudes of the bins ----------------------------------------------------


def one_op(name, level):
    """A policy of one sub-policy applying op `name` at bin `level` always."""
    return (((name, 1.0, level),),)


def test_bins_of_unsigned_ops():
    image = ramp()
    # torchvision: bits 8 - round(bin / 2.25) = 8, 8, 7, 7, 6, 6, 5, 5, 4, 4.
    for level, bits in [(0, 8), (2, 7), (5, 6), (6, 5), (8, 4), (9, 4)]:
        out = aa.autoaugment(image, one_op("Posterize", level))
        np.testing.assert_array_equal(out, aa.posterize(image, bits))
    # Solarize thresholds linspace(255, 0): bin 0 inverts only 255, bin 9 all.
    out = aa.autoaugment(image, one_op("Solarize", 0)).numpy()
    np.testing.assert_array_equal(out, np.where(image == 255, 0, image))
    out = aa.autoaugment(image, one_op("Solarize", 9))
    np.testing.assert_array_equal(out, 255 - image)


@pytest.mark.parametrize(
    "name, level, op, magnitude",
    [
        ("Rotate", 9, aa.rotate, 30.0),
        ("ShearX", 9, aa.shear_x, 0.3),
        # 150 / 331 * 32 * 9 / 9 = 14.5, truncated to 14 pixels.
        ("TranslateX", 9, aa.translate_x, 14.0),
        ("Contrast", 8, aa.contrast, 0.8),  # factor 1 +/- 0.8
    ],
)
def test_bins_of_signed_ops_take_both_signs(name, level, op, magnitude):
    image = random_image()
    # The factor 1 - 0.8 is 0.2 only up to float32 rounding: allow one level.
    tolerance = 0
    if name == "Contrast":
        candidates = [op(image, 1.0 + magnitude), op(image, 1.0 - magnitude)]
        tolerance = 1
    else:
        candidates = [op(image, magnitude), op(image, -magnitude)]
    seen = set()
    for _ in range(12):
        out = aa.autoaugment(image, one_op(name, level)).numpy().astype(int)
        matches = [
            i
            for i, candidate in enumerate(candidates)
            if np.abs(out - candidate.numpy()).max() <= tolerance
        ]
        assert matches, f"{name} bin {level} gave neither +/- {magnitude}"
        seen.update(matches)
    assert seen == {0, 1}


# --- The policy ----------------------------------------------------------------


def test_imagenet_policy_structure():
    assert len(aa.IMAGENET_POLICY) == 25
    for sub_policy in aa.IMAGENET_POLICY:
        assert len(sub_policy) == 2
        for name, prob, level in sub_policy:
            assert name in OP_NAMES
            assert 0.0 <= prob <= 1.0
            assert level is None or level in range(10)
            # Exactly the ops that take a magnitude have a bin.
            unsigned = name in ("AutoContrast", "Equalize", "Invert")
            assert (level is None) == unsigned
    # Spot checks against torchvision's list: first, a middle and last entries.
    assert aa.IMAGENET_POLICY[0] == (("Posterize", 0.4, 8), ("Rotate", 0.6, 9))
    assert aa.IMAGENET_POLICY[18] == (("ShearX", 0.6, 5), ("Equalize", 1.0, None))
    assert aa.IMAGENET_POLICY[-1] == (("Equalize", 0.8, None), ("Equalize", 0.6, None))


# --- autoaugment ---------------------------------------------------------------


def count_distinct(images):
    return len({image.tobytes() for image in images})


def test_autoaugment_eager():
    image = random_image()
    outputs = [aa.autoaugment(image).numpy() for _ in range(30)]
    assert all(out.dtype == np.uint8 and out.shape == image.shape for out in outputs)
    changed = [out for out in outputs if (out != image).any()]
    assert len(changed) >= 10
    assert count_distinct(changed) >= 5


def test_autoaugment_in_map():
    images = np.stack([random_image(seed) for seed in range(30)])
    dataset = tf.data.Dataset.from_tensor_slices(images).map(
        aa.autoaugment, num_parallel_calls=2
    )
    assert dataset.element_spec.shape == (SIZE, SIZE, 3)
    assert dataset.element_spec.dtype == tf.uint8
    outputs = np.stack(list(dataset.as_numpy_iterator()))
    changes = [out.astype(int) - image for out, image in zip(outputs, images)]
    changed = [change for change in changes if change.any()]
    assert len(changed) >= 10
    assert count_distinct(changed) == len(changed)


def test_autoaugment_is_reproducible_under_the_global_seed():
    image = random_image()
    keras.utils.set_random_seed(3)
    first = [aa.autoaugment(image).numpy() for _ in range(5)]
    keras.utils.set_random_seed(3)
    second = [aa.autoaugment(image).numpy() for _ in range(5)]
    np.testing.assert_array_equal(first, second)


def test_seeded_autoaugment_is_new_each_epoch_and_reproducible():
    images = np.stack([random_image(seed) for seed in range(8)])
    # A short policy traces faster; how seeds are drawn does not depend on it.
    policy = (
        (("Rotate", 0.9, 9), ("Invert", 0.5, None)),
        (("Solarize", 0.9, 5), ("Color", 0.9, 9)),
        (("Posterize", 0.9, 8), ("ShearX", 0.9, 9)),
    )

    def build():
        seeds = tf.data.Dataset.random(rerandomize_each_iteration=True)
        seeds = seeds.batch(2, drop_remainder=True)
        dataset = tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(images), seeds)
        return dataset.map(lambda image, seed: aa.autoaugment(image, policy, seed=seed))

    keras.utils.set_random_seed(1)
    dataset = build()
    epochs = [np.stack(list(dataset.as_numpy_iterator())) for _ in range(2)]
    assert (epochs[0] != epochs[1]).any(axis=(1, 2, 3)).sum() >= 4
    keras.utils.set_random_seed(1)
    dataset = build()
    again = [np.stack(list(dataset.as_numpy_iterator())) for _ in range(2)]
    np.testing.assert_array_equal(epochs, again)
    # With the ImageNet policy, a given seed gives the same augmentation eagerly
    # and in tf.data.
    seeds = np.arange(12, dtype=np.int64).reshape(6, 2)
    dataset = tf.data.Dataset.from_tensor_slices((images[:6], seeds))
    dataset = dataset.map(lambda image, seed: aa.autoaugment(image, seed=seed))
    mapped = np.stack(list(dataset.as_numpy_iterator()))
    eager = np.stack([aa.autoaugment(i, seed=s) for i, s in zip(images, seeds)])
    np.testing.assert_array_equal(eager, mapped)
    assert (eager != images[:6]).any()


def test_autoaugment_keeps_a_partly_unknown_static_shape():
    spec = tf.TensorSpec([None, None, 3], tf.uint8)
    function = tf.function(aa.autoaugment, input_signature=[spec])
    assert function.get_concrete_function().structured_outputs.shape.as_list() == [
        None,
        None,
        3,
    ]
    out = function(np.zeros((20, 24, 3), np.uint8))
    assert out.shape == (20, 24, 3)


# --- Bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((SIZE, SIZE, 3), np.float32), "uint8.*float32"),
        (np.zeros((2, SIZE, SIZE, 3), np.uint8), r"rank 3.*\(2, 32, 32, 3\)"),
        (np.zeros((SIZE, SIZE, 4), np.uint8), r"1 or 3.*\(32, 32, 4\)"),
    ],
)
def test_bad_images_raise(image, message):
    with pytest.raises(ValueError, match=message):
        aa.autoaugment(image)
    with pytest.raises(ValueError, match=message):
        aa.rotate(image, 10.0)


def test_bad_policy_or_seed_raise():
    image = random_image()
    with pytest.raises(ValueError, match="Unknown op 'Blur'"):
        aa.autoaugment(image, policy=((("Blur", 0.5, 3),),))
    with pytest.raises(ValueError, match=r"Rotate needs a magnitude bin in 0\.\.9"):
        aa.autoaugment(image, policy=((("Rotate", 0.5, 10),),))
    with pytest.raises(ValueError, match="shape \\[2\\]"):
        aa.autoaugment(image, seed=tf.constant([1, 2, 3]))
