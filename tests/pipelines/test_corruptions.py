import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from conftest import png, write

from pipelines.corruptions import (
    CORRUPTIONS,
    available_corruptions,
    corrupt_images,
    corrupted_dataset,
    imagenet_c_dataset,
    validate_corruptions,
)

# The fixture tree: the model's classes in label order (not sorted), and one
# more class directory, sorted first, that the model does not have.
MODEL_CLASSES = ("n03", "n01", "n02")
TREE_CLASSES = ("n00", "n01", "n02", "n03")
TREE_CORRUPTIONS = ("fog", "gaussian_noise")  # deliberately not in benchmark order
TREE_SEVERITIES = (1, 3)
PER_CLASS = 2
SIDE = 40
# Corruptions that draw random numbers; the others are fixed functions.
RANDOM = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
}


def pixel_value(corruption, severity, wnid, index):
    """A grey level unique to each fixture image, so it can be recognized."""
    return (
        10
        + 50 * TREE_CORRUPTIONS.index(corruption)
        + 25 * TREE_SEVERITIES.index(severity)
        + 6 * TREE_CLASSES.index(wnid)
        + index
    )


@pytest.fixture(scope="module")
def c_root(tmp_path_factory):
    """`<corruption>/<severity>/<wnid>/` with constant-grey PNGs, plus clutter
    that must be ignored: an unknown corruption, a bad severity, a text file."""
    root = tmp_path_factory.mktemp("imagenet_c")
    for corruption in TREE_CORRUPTIONS:
        for severity in TREE_SEVERITIES:
            for wnid in TREE_CLASSES:
                for i in range(PER_CLASS):
                    value = pixel_value(corruption, severity, wnid, i)
                    image = np.full((SIDE, SIDE, 3), value, np.uint8)
                    write(
                        root / corruption / str(severity) / wnid / f"{i}.png",
                        png(image),
                    )
    write(root / "speckle_noise" / "1" / "n01" / "0.png", png(image))
    (root / "fog" / "6").mkdir()
    write(root / "fog" / "1" / "n01" / "notes.txt", b"not an image")
    return root


def collect(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return list(images), list(labels)


@pytest.mark.parametrize("corruption", TREE_CORRUPTIONS)
@pytest.mark.parametrize("severity", TREE_SEVERITIES)
def test_reads_the_model_classes_in_model_order(c_root, corruption, severity):
    dataset = imagenet_c_dataset(
        str(c_root), corruption, severity, MODEL_CLASSES, batch_size=4, image_size=SIDE
    )
    assert dataset.element_spec[0].shape.as_list() == [None, SIDE, SIDE, 3]
    assert dataset.element_spec[0].dtype == tf.float32
    assert dataset.element_spec[1].dtype == tf.int32
    images, labels = collect(dataset)
    assert [len(batch) for batch in labels] == [4, 2]
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    expected = [
        pixel_value(corruption, severity, wnid, i) / 255.0
        for wnid in MODEL_CLASSES
        for i in range(PER_CLASS)
    ]
    # Native size: the pixels come through unchanged.
    expected = np.broadcast_to(np.reshape(expected, (6, 1, 1, 1)), images.shape)
    np.testing.assert_allclose(images, expected, atol=1e-6)


@pytest.mark.parametrize(
    "size, channels, center_crop", [(32, 3, False), (32, 3, True), (48, 1, False)]
)
def test_resizes_crops_and_converts(c_root, size, channels, center_crop):
    dataset = imagenet_c_dataset(
        str(c_root),
        "fog",
        1,
        MODEL_CLASSES,
        batch_size=8,
        image_size=size,
        channels=channels,
        center_crop=center_crop,
    )
    assert dataset.element_spec[0].shape.as_list() == [None, size, size, channels]
    (images,), (labels,) = collect(dataset)
    assert images.shape == (6, size, size, channels)
    assert 0.0 <= images.min() and images.max() <= 1.0
    # Constant images stay constant (up to rounding) under any resize.
    first = pixel_value("fog", 1, "n03", 0) / 255.0
    np.testing.assert_allclose(images[0], first, atol=1.5 / 255)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_available_corruptions(c_root):
    assert available_corruptions(str(c_root)) == {
        "gaussian_noise": (1, 3),
        "fog": (1, 3),
    }
    assert list(available_corruptions(str(c_root))) == ["gaussian_noise", "fog"]


def test_available_corruptions_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        available_corruptions(str(tmp_path / "missing"))
    (tmp_path / "speckle_noise" / "1").mkdir(parents=True)
    (tmp_path / "fog").mkdir()  # no severity directory
    with pytest.raises(ValueError, match="speckle_noise"):
        available_corruptions(str(tmp_path))


def test_reader_errors_name_the_value(c_root, tmp_path):
    def read(root=str(c_root), corruption="fog", severity=1, classes=MODEL_CLASSES):
        return imagenet_c_dataset(root, corruption, severity, classes, 2, SIDE)

    with pytest.raises(FileNotFoundError, match="nowhere"):
        read(root=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="'fogg'.*gaussian_noise"):
        read(corruption="fogg")
    with pytest.raises(FileNotFoundError, match="'snow'"):
        read(corruption="snow")  # valid, but not in the tree
    for severity in (0, 6, "1", True):
        with pytest.raises(ValueError, match=f"Received: {severity!r}"):
            read(severity=severity)
    with pytest.raises(FileNotFoundError, match="severity 2"):
        read(severity=2)
    with pytest.raises(FileNotFoundError, match="'n09'"):
        read(classes=("n01", "n09"))
    with pytest.raises(ValueError, match="class name"):
        read(classes=())


def test_validate_corruptions():
    assert validate_corruptions("all") == CORRUPTIONS
    assert validate_corruptions(["all"]) == CORRUPTIONS
    assert validate_corruptions(["snow", "fog", "snow"]) == ("snow", "fog")
    assert validate_corruptions("fog") == ("fog",)
    with pytest.raises(ValueError, match="'blurr'.*jpeg_compression"):
        validate_corruptions(["fog", "blurr"])
    with pytest.raises(ValueError, match="at least one"):
        validate_corruptions([])


def test_corruption_list_is_the_benchmark():
    assert len(CORRUPTIONS) == 15
    assert CORRUPTIONS[0] == "gaussian_noise" and CORRUPTIONS[-1] == "jpeg_compression"


# ---- On the fly (needs imagecorruptions-imaug) ----


@pytest.fixture(scope="module")
def imagecorruptions():
    # ImportError, not only a missing module: a broken cv2 (the GUI build of
    # OpenCV without libGL) also makes the package unusable.
    return pytest.importorskip("imagecorruptions", exc_type=ImportError)


def smooth_images(count, side=32, channels=3, seed=0):
    """Gradients with mild noise: closer to photographs than pure noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, side)
    base = (ramp[:, None] + ramp[None, :]) / 2
    noise = rng.normal(0, 12, (count, side, side, channels))
    return np.clip(base[None, :, :, None] + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("severity", [1, 5])
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_every_corruption(imagecorruptions, corruption, severity):
    images = smooth_images(2)
    out = corrupt_images(images, corruption, severity, seed=3)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert all((out[i] != images[i]).any() for i in range(len(images)))
    np.testing.assert_array_equal(out, corrupt_images(images, corruption, severity, 3))
    if corruption in RANDOM:
        assert (out != corrupt_images(images, corruption, severity, seed=4)).any()


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_grayscale_keeps_one_channel(imagecorruptions, corruption):
    images = smooth_images(1, side=33, channels=1)
    out = corrupt_images(images, corruption, 3, seed=0)
    assert out.shape == (1, 33, 33, 1) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, corrupt_images(images, corruption, 3, seed=0))


def test_seeds_are_per_image_and_follow_the_index(imagecorruptions):
    images = np.repeat(smooth_images(1), 3, axis=0)
    out = corrupt_images(images, "gaussian_noise", 2, seed=1)
    assert (out[0] != out[1]).any()  # same image, different noise
    np.testing.assert_array_equal(
        out[1:], corrupt_images(images[1:], "gaussian_noise", 2, 1, start_index=1)
    )


def test_leaves_the_global_generator_alone(imagecorruptions):
    np.random.seed(7)
    expected = np.random.rand(3)
    np.random.seed(7)
    corrupt_images(smooth_images(1), "snow", 1, seed=0)
    np.testing.assert_array_equal(np.random.rand(3), expected)


def test_corrupt_images_errors(imagecorruptions):
    with pytest.raises(ValueError, match="31 x 40"):
        corrupt_images(np.zeros((1, 31, 40, 3), np.uint8), "fog", 1, 0)
    with pytest.raises(ValueError, match="float32"):
        corrupt_images(np.zeros((1, 32, 32, 3), np.float32), "fog", 1, 0)
    with pytest.raises(ValueError, match="Received: 2"):
        corrupt_images(np.zeros((1, 32, 32, 2), np.uint8), "fog", 1, 0)
    with pytest.raises(ValueError, match="'haze'"):
        corrupt_images(np.zeros((1, 32, 32, 3), np.uint8), "haze", 1, 0)
    with pytest.raises(ValueError, match="Received: 0"):
        corrupt_images(np.zeros((1, 32, 32, 3), np.uint8), "fog", 0, 0)
    with pytest.raises(ValueError, match="Received: -1"):
        corrupt_images(np.zeros((1, 32, 32, 3), np.uint8), "fog", 1, -1)


def test_missing_package_says_how_to_install(monkeypatch):
    # A None entry makes `import imagecorruptions` fail, installed or not.
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)
    with pytest.raises(ImportError, match="--no-deps imagecorruptions-imaug"):
        corrupt_images(np.zeros((1, 32, 32, 3), np.uint8), "fog", 1, 0)
    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.zeros([2, 32, 32, 3]), tf.zeros([2], tf.int32))
    ).batch(2)
    with pytest.raises(ImportError, match="opencv-python-headless"):
        corrupted_dataset(dataset, "fog", 1, 0)


def test_rejects_the_original_package(monkeypatch):
    # The original package's glass_blur takes no seed.
    original = types.ModuleType("imagecorruptions")
    original.glass_blur = lambda x, severity=1: x
    monkeypatch.setitem(sys.modules, "imagecorruptions", original)
    with pytest.raises(ImportError, match="original imagecorruptions"):
        corrupt_images(np.zeros((1, 32, 32, 3), np.uint8), "fog", 1, 0)


def float_dataset(images, labels, batch_size):
    return tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float32) / 255.0, labels)
    ).batch(batch_size)


def test_corrupted_dataset(imagecorruptions):
    images = smooth_images(5)
    labels = np.arange(5, dtype=np.int32) + 10
    dataset = float_dataset(images, labels, 2)
    corrupted = corrupted_dataset(dataset, "shot_noise", 3, seed=5)
    assert corrupted.element_spec == dataset.element_spec
    batches, batch_labels = collect(corrupted)
    assert [len(batch) for batch in batches] == [2, 2, 1]
    out = np.concatenate(batches)
    assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_array_equal(np.concatenate(batch_labels), labels)
    # The same pixels as corrupting the whole set at once: the batch size and
    # the float round trip change nothing.
    expected = corrupt_images(images, "shot_noise", 3, seed=5)
    np.testing.assert_array_equal(np.round(out * 255).astype(np.uint8), expected)
    regrouped = corrupted_dataset(float_dataset(images, labels, 3), "shot_noise", 3, 5)
    np.testing.assert_array_equal(np.concatenate(collect(regrouped)[0]), out)


def test_corrupted_dataset_keeps_static_shapes(imagecorruptions):
    images = smooth_images(4, side=36, channels=1)
    dataset = float_dataset(images, np.zeros(4, np.int32), 2)
    dataset = dataset.map(lambda x, y: (tf.ensure_shape(x, [2, 36, 36, 1]), y))
    corrupted = corrupted_dataset(dataset, "contrast", 2, seed=0)
    assert corrupted.element_spec[0].shape.as_list() == [2, 36, 36, 1]
    for batch, _ in corrupted:
        assert batch.shape == (2, 36, 36, 1)


def test_corrupted_dataset_errors(imagecorruptions):
    small = float_dataset(smooth_images(2, side=32)[:, :16, :16], np.zeros(2), 2)
    with pytest.raises(ValueError, match="16 x 16"):
        corrupted_dataset(small, "fog", 1, 0)
    images_only = tf.data.Dataset.from_tensor_slices(tf.zeros([2, 32, 32, 3])).batch(2)
    with pytest.raises(ValueError, match="element spec"):
        corrupted_dataset(images_only, "fog", 1, 0)
    good = float_dataset(smooth_images(2), np.zeros(2), 2)
    with pytest.raises(ValueError, match="'mist'"):
        corrupted_dataset(good, "mist", 1, 0)
    with pytest.raises(ValueError, match="Received: 7"):
        corrupted_dataset(good, "fog", 7, 0)
