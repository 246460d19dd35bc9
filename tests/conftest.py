"""Shared test setup: quiet TensorFlow logs, a fixed seed, and tiny data sets in each
layout the pipelines read (built once per session)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gzip  # noqa: E402
import io  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


TINY_WNIDS = ("n03", "n01", "n02")  # wnids.txt order, deliberately unsorted
TINY_TRAIN_PER_CLASS = 4
TINY_VAL_PER_CLASS = 2
IMAGENET_CLASSES = ("n01440764", "n01443537", "n01484850", "n01491361")
IMAGENET_TRAIN_SIZES = ((40, 50), (50, 40), (33, 61))
IMAGENET_VAL_PER_CLASS = 2
IDX_TRAIN, IDX_TEST = 36, 12


def random_image(height, width, channels, seed):
    """A uint8 array of noise, different for each seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)


def jpeg(array):
    return tf.io.encode_jpeg(array).numpy()


def png(array):
    return tf.io.encode_png(array).numpy()


def pillow_bytes(array, fmt, mode=None):
    """Encodes with Pillow, converting to `mode` first (e.g. "CMYK")."""
    image = Image.fromarray(array.squeeze() if array.shape[-1] == 1 else array)
    buffer = io.BytesIO()
    (image.convert(mode) if mode else image).save(buffer, fmt)
    return buffer.getvalue()


def truncated(data):
    return data[: len(data) // 2]


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="session")
def tiny_imagenet_root(tmp_path_factory):
    """`tiny-imagenet-200`: 3 wnids x 4 training images (one grayscale JPEG,
    one truncated JPEG, one CMYK JPEG among them), 2 validation images each."""
    root = tmp_path_factory.mktemp("tiny") / "tiny-imagenet-200"
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    specials = {
        ("n01", 0): lambda a: jpeg(a.mean(-1, keepdims=True).astype(np.uint8)),
        ("n02", 1): lambda a: truncated(jpeg(a)),
        ("n03", 2): lambda a: pillow_bytes(a, "JPEG", "CMYK"),
    }
    for c, wnid in enumerate(TINY_WNIDS):
        images = root / "train" / wnid / "images"
        (root / "train" / wnid).mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(TINY_TRAIN_PER_CLASS):
            encode = specials.get((wnid, i), jpeg)
            write(
                images / f"{wnid}_{i}.JPEG", encode(random_image(64, 64, 3, c * 10 + i))
            )
    lines = []
    for k in range(TINY_VAL_PER_CLASS * len(TINY_WNIDS)):
        wnid = TINY_WNIDS[k % len(TINY_WNIDS)]
        write(
            root / "val" / "images" / f"val_{k}.JPEG",
            jpeg(random_image(64, 64, 3, 100 + k)),
        )
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t1\t62\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def imagenet_root(tmp_path_factory):
    """`train/<wnid>/` (3 images of varied sizes, one an RGBA PNG) and
    `val/<wnid>/` (2 images) for 4 wnids, plus a non-image file."""
    root = tmp_path_factory.mktemp("imagenet")
    for c, wnid in enumerate(IMAGENET_CLASSES):
        for i, (h, w) in enumerate(IMAGENET_TRAIN_SIZES):
            if i == 2:
                data, ext = png(random_image(h, w, 4, 1000 + 10 * c + i)), "png"
            else:
                data, ext = jpeg(random_image(h, w, 3, 1000 + 10 * c + i)), "JPEG"
            write(root / "train" / wnid / f"{wnid}_{i}.{ext}", data)
        for i in range(IMAGENET_VAL_PER_CLASS):
            data = jpeg(random_image(45 + i, 38, 3, 2000 + 10 * c + i))
            write(root / "val" / wnid / f"val_{c}_{i}.jpg", data)
        write(root / "train" / wnid / "README.txt", b"not an image")
    return root


@pytest.fixture(scope="session")
def imagenet101_root(tmp_path_factory):
    """An ImageNet-style tree with 101 classes, one small image in each split."""
    root = tmp_path_factory.mktemp("imagenet101")
    data = jpeg(random_image(8, 10, 3, 7))
    for c in range(101):
        write(root / "train" / f"n{c:08d}" / "a.JPEG", data)
        write(root / "val" / f"n{c:08d}" / "b.JPEG", data)
    return root


def idx_bytes(array, magic):
    """An IDX file: magic, big-endian dimensions, then the bytes."""
    header = magic.to_bytes(4, "big")
    header += b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_digits(count, seed):
    """28x28 'digits': a random blob of bright pixels, never touching the
    border, so each one is easy to find on a canvas."""
    rng = np.random.default_rng(seed)
    digits = np.zeros((count, 28, 28), np.uint8)
    digits[:, 4:24, 6:22] = rng.integers(0, 256, (count, 20, 16))
    digits[:, 4, 6] = 255  # a fixed corner pixel, so the bounding box is known
    digits[:, 23, 21] = 255
    return digits


def write_idx(directory, gzipped=True, train=IDX_TRAIN, test=IDX_TEST):
    """Writes the four MNIST IDX files; returns the arrays written."""
    arrays = {
        "train_images": make_digits(train, 1),
        "train_labels": np.arange(train, dtype=np.uint8) % 10,
        "test_images": make_digits(test, 2),
        "test_labels": np.arange(test, dtype=np.uint8) % 10,
    }
    stems = {
        "train_images": ("train-images-idx3-ubyte", 0x0803),
        "train_labels": ("train-labels-idx1-ubyte", 0x0801),
        "test_images": ("t10k-images-idx3-ubyte", 0x0803),
        "test_labels": ("t10k-labels-idx1-ubyte", 0x0801),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for key, (stem, magic) in stems.items():
        data = idx_bytes(arrays[key], magic)
        if gzipped:
            write(directory / f"{stem}.gz", gzip.compress(data))
        else:
            write(directory / stem, data)
    return arrays


@pytest.fixture(scope="session")
def idx_dir(tmp_path_factory):
    """Four gzipped IDX files: 36 training and 12 test 'digits'."""
    directory = tmp_path_factory.mktemp("mnist")
    write_idx(directory)
    return directory


@pytest.fixture
def make_idx():
    """`make_idx(directory, gzipped=True, train=36, test=12)` writes the four
    IDX files and returns the arrays."""
    return write_idx


@pytest.fixture
def encode():
    """`encode(array, fmt, mode=None)`: image bytes in "JPEG", "PNG", "GIF",
    "BMP" or "WEBP", converted by Pillow to `mode` (e.g. "CMYK") first."""
    return pillow_bytes


@pytest.fixture
def roots(tiny_imagenet_root, imagenet_root, imagenet101_root, idx_dir):
    """data_dir of each data set kind."""
    return {
        "tiny_imagenet": str(tiny_imagenet_root),
        "imagenet": str(imagenet_root),
        "folder": str(imagenet_root),
        "imagenet100": str(imagenet101_root),
        "translated_mnist": str(idx_dir),
        "translated_fashion_mnist": str(idx_dir),
    }


def pytest_collection_modifyitems(config, items):
    """On another Keras backend (KERAS_BACKEND=jax), tests marked `tensorflow_only`
    are skipped, saying why."""
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"needs the TensorFlow backend, not {keras.backend.backend()}")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)
