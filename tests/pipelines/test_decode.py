import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines.decode import SkippedFiles, decode_image, looks_complete

RGB = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
GRAY = RGB[..., :1]


def in_map(fn, value):
    """Runs `fn` on `value` inside `Dataset.map`; returns the result and the
    element spec (to check static shapes)."""
    dataset = tf.data.Dataset.from_tensors(value).map(fn)
    return next(iter(dataset)).numpy(), dataset.element_spec


def sources(encode):
    """Name -> (bytes, expected RGB or None when lossy)."""
    rgba = np.concatenate([RGB, np.full_like(GRAY, 7)], -1)
    gray_alpha = np.concatenate([GRAY, np.full_like(GRAY, 7)], -1)
    return {
        "gray_jpeg": (tf.io.encode_jpeg(GRAY).numpy(), None),
        "cmyk_jpeg": (encode(RGB, "JPEG", "CMYK"), None),
        "rgba_png": (tf.io.encode_png(rgba).numpy(), RGB),
        "gray_png": (tf.io.encode_png(GRAY).numpy(), np.repeat(GRAY, 3, -1)),
        "gray_alpha_png": (
            tf.io.encode_png(gray_alpha).numpy(),
            np.repeat(GRAY, 3, -1),
        ),
        "rgb_bmp": (encode(RGB, "BMP"), RGB),
        "gray_bmp": (encode(GRAY, "BMP"), np.repeat(GRAY, 3, -1)),
        "gif": (encode(RGB, "GIF"), None),
        "rgba_webp": (encode(rgba, "WEBP", "RGBA"), None),
    }


@pytest.mark.parametrize(
    "name",
    [
        "gray_jpeg",
        "cmyk_jpeg",
        "rgba_png",
        "gray_png",
        "gray_alpha_png",
        "rgb_bmp",
        "gray_bmp",
        "gif",
        "rgba_webp",
    ],
)
def test_decode_to_rgb_eager_and_in_map(encode, name):
    data, expected = sources(encode)[name]
    eager = decode_image(tf.constant(data), 3).numpy()
    mapped, spec = in_map(lambda b: decode_image(b, 3), data)
    assert spec.shape.as_list() == [None, None, 3] and spec.dtype == tf.uint8
    assert eager.shape == (20, 30, 3) and eager.dtype == np.uint8
    np.testing.assert_array_equal(mapped, eager)
    if expected is not None:
        np.testing.assert_array_equal(eager, expected)
    if name.startswith("gray"):
        assert (eager == eager[..., :1]).all()


def test_cmyk_jpeg_decodes_to_its_rgb(encode):
    data = encode(RGB, "JPEG", "CMYK")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    decoded = decode_image(data, 3).numpy().astype(int)
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    # TensorFlow's and Pillow's CMYK->RGB differ by rounding only.
    assert np.abs(decoded - reference).max() <= 3


@pytest.mark.parametrize("name", ["cmyk_jpeg", "rgba_png", "gray_jpeg", "gif"])
def test_decode_to_grayscale(encode, name):
    data, _ = sources(encode)[name]
    eager = decode_image(data, 1).numpy()
    mapped, spec = in_map(lambda b: decode_image(b, 1), data)
    assert eager.shape == (20, 30, 1) and spec.shape.as_list() == [None, None, 1]
    np.testing.assert_array_equal(mapped, eager)


def test_grayscale_of_rgb_is_luma():
    data = tf.io.encode_png(RGB)
    expected = tf.image.rgb_to_grayscale(RGB).numpy()
    np.testing.assert_array_equal(decode_image(data, 1).numpy(), expected)


def test_bad_channels_named():
    with pytest.raises(ValueError, match="channels"):
        decode_image(tf.io.encode_png(RGB), 4)


def complete_and_broken(encode):
    jpeg = tf.io.encode_jpeg(RGB).numpy()
    png = tf.io.encode_png(RGB).numpy()
    complete = {
        "jpeg": jpeg,
        "jpeg_zero_padded": jpeg + bytes(1000),
        "png": png,
        "gif": encode(RGB, "GIF"),
        "bmp": encode(RGB, "BMP"),
        "webp": encode(RGB, "WEBP"),
    }
    broken = {
        "jpeg_truncated": jpeg[: len(jpeg) // 2],
        "jpeg_cut_by_two_bytes": jpeg[:-2],
        "jpeg_truncated_then_zeros": jpeg[: len(jpeg) // 2] + bytes(100),
        "jpeg_too_much_padding": jpeg + bytes(5000),
        "png_truncated": png[:-1],
        "empty": b"",
        "text": b"hello, world",
    }
    return complete, broken


def test_looks_complete_eager_and_in_map(encode):
    complete, broken = complete_and_broken(encode)
    for name, data in {**complete, **broken}.items():
        expected = name in complete
        assert bool(looks_complete(data)) == expected, name
        assert bool(in_map(looks_complete, data)[0]) == expected, name


def test_skipped_files_are_named_counted_and_the_rest_kept(tmp_path, capfd):
    good = [tmp_path / f"good_{i}.jpg" for i in range(3)]
    for i, path in enumerate(good):
        path.write_bytes(tf.io.encode_jpeg(RGB + i).numpy())
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(tf.io.encode_jpeg(RGB).numpy()[:100])
    paths = [str(good[0]), str(bad), str(good[1]), str(good[2])]
    skipped = SkippedFiles()
    dataset = (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(lambda path: (path, tf.io.read_file(path)))
        .filter(skipped.keep_complete)
        .map(lambda path, data: (path, decode_image(data, 3)))
    )
    kept = [path.numpy().decode() for path, _ in dataset]
    assert kept == [str(p) for p in good]
    assert skipped.count() == 1
    assert f"Skipping unreadable image: {bad}" in capfd.readouterr().err
    list(dataset)  # a second pass counts again
    assert skipped.count() == 2
    skipped.reset()
    assert skipped.count() == 0
