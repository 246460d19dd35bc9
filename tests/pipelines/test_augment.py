import numpy as np
import pytest
import tensorflow as tf

from pipelines import augment

IMAGE = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
CONSTANT = np.full((40, 50, 3), 123, np.uint8)

OPS = {
    "random_resized_crop": (lambda x: augment.random_resized_crop(x, 32), (32, 32)),
    "random_flip": (augment.random_flip, (40, 50)),
    "center_crop_resize": (lambda x: augment.center_crop_resize(x, 32), (32, 32)),
    "padded_random_crop": (lambda x: augment.padded_random_crop(x, 40), (40, 40)),
    "resize": (lambda x: augment.resize(x, 32), (32, 32)),
}


def run_in_map(fn, image):
    """`fn` inside `Dataset.map` on an image of unknown height and width."""
    dataset = tf.data.Dataset.from_tensors(tf.io.encode_png(image)).map(
        lambda data: fn(tf.io.decode_png(data, channels=image.shape[-1]))
    )
    return next(iter(dataset)).numpy(), dataset.element_spec


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_eager_and_in_map(name):
    fn, (height, width) = OPS[name]
    eager = fn(tf.constant(IMAGE)).numpy()
    mapped, spec = run_in_map(fn, IMAGE)
    assert eager.shape == mapped.shape == (height, width, 3)
    assert eager.dtype == mapped.dtype == np.uint8 and spec.dtype == tf.uint8
    if name != "random_flip":  # a flip keeps the input's (unknown) size
        assert spec.shape.as_list() == [height, width, 3]


@pytest.mark.parametrize(
    "name", ["random_resized_crop", "center_crop_resize", "resize"]
)
def test_resampling_keeps_values(name):
    fn, _ = OPS[name]
    np.testing.assert_array_equal(fn(tf.constant(CONSTANT)).numpy(), 123)


def test_resize_to_the_same_size_is_exact():
    square = IMAGE[:, :40]
    np.testing.assert_array_equal(augment.resize(square, 40).numpy(), square)


def test_center_crop_takes_the_centre():
    # A 40x80 image whose middle 40 columns are bright: the shorter side goes
    # to round(32 / 0.875) = 37, the width to 74, and the 32-wide centre crop
    # sees only bright columns.
    image = np.zeros((40, 80, 1), np.uint8)
    image[:, 20:60] = 200
    crop = augment.center_crop_resize(image, 32).numpy()
    assert crop.shape == (32, 32, 1)
    np.testing.assert_array_equal(crop, 200)


def test_padded_random_crop_shifts_by_at_most_the_padding():
    image = np.full((40, 40, 3), 9, np.uint8)
    for _ in range(5):
        crop = augment.padded_random_crop(image, 40).numpy()
        assert set(np.unique(crop)) <= {0, 9}
        assert (crop[4:36, 4:36] == 9).all()  # the centre is never padding


def test_random_resized_crop_full_scale_keeps_the_whole_image():
    square = IMAGE[:, :40]
    crop = augment.random_resized_crop(square, 40, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_array_equal(crop.numpy(), square)


def test_random_flip_flips_or_not():
    results = {augment.random_flip(IMAGE).numpy().tobytes() for _ in range(20)}
    assert results == {IMAGE.tobytes(), IMAGE[:, ::-1].tobytes()}


def test_policy_none_is_identity():
    assert augment.apply_policy(IMAGE, "none") is IMAGE


def test_unknown_policy_lists_the_allowed():
    with pytest.raises(ValueError, match="autoaugment.*randaugment.*none.*'bogus'"):
        augment.apply_policy(IMAGE, "bogus")


@pytest.mark.parametrize("channels", [3, 1])
def test_randaugment_eager_and_in_map(channels):
    image = IMAGE[..., :channels]
    fn = lambda x: augment.apply_policy(x, "randaugment")  # noqa: E731
    eager = fn(tf.constant(image)).numpy()
    mapped, spec = run_in_map(fn, image)
    assert eager.shape == mapped.shape == image.shape
    assert eager.dtype == mapped.dtype == np.uint8
    assert spec.shape.as_list() == [None, None, channels]


def test_randaugment_layer_is_built_once():
    augment.apply_policy(IMAGE, "randaugment")
    layer = augment._rand_augment()
    augment.apply_policy(IMAGE, "randaugment")
    assert augment._rand_augment() is layer


def test_autoaugment_eager_and_in_map():
    pytest.importorskip("pipelines.autoaugment")
    fn = lambda x: augment.apply_policy(x, "autoaugment")  # noqa: E731
    eager = fn(tf.constant(IMAGE)).numpy()
    mapped, _ = run_in_map(fn, IMAGE)
    assert eager.shape == mapped.shape == IMAGE.shape
    assert eager.dtype == mapped.dtype == np.uint8


def test_autoaugment_on_grayscale():
    pytest.importorskip("pipelines.autoaugment")
    gray = IMAGE[..., :1]
    assert augment.apply_policy(gray, "autoaugment").shape == gray.shape


SEEDED = {
    "random_resized_crop": lambda x, s: augment.random_resized_crop(x, 32, seed=s),
    "random_flip": lambda x, s: augment.random_flip(x, seed=s),
    "padded_random_crop": lambda x, s: augment.padded_random_crop(x, 40, seed=s),
}


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_same_seed_same_result(name):
    fn = SEEDED[name]
    results = {fn(IMAGE, tf.constant([1, seed])).numpy().tobytes() for seed in range(8)}
    assert len(results) > 1
    again = {fn(IMAGE, tf.constant([1, seed])).numpy().tobytes() for seed in range(8)}
    assert again == results


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_new_draws_each_pass_under_a_global_seed(name):
    # The trap that per-element seeds avoid: with a global seed set (conftest
    # does), stateful ops would replay the same draws on each new iterator.
    fn = SEEDED[name]
    images = tf.data.Dataset.from_tensors(IMAGE).repeat(6)
    dataset = tf.data.Dataset.zip(images, augment.element_seeds(3)).map(fn)
    first, second = ([x.numpy().tobytes() for x in dataset] for _ in range(2))
    assert first != second
    rebuilt = tf.data.Dataset.zip(images, augment.element_seeds(3)).map(fn)
    assert [x.numpy().tobytes() for x in rebuilt] == first
