"""One road for an image: the evaluation pipeline, `evaluate.py --images`
(`EvalTransform.of_model(model).read_files`) and the SavedModel's signatures feed the
model the same tensor for the same file."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import pipelines
from mgnet_tf import MGNet
from mgnet_tf.export import signatures
from pipelines.transform import EvalTransform


def _picture(height, width, seed):
    """A smooth colour picture with detail (gradients + a bright square)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack(
        [255 * x / width, 255 * y / height, 128 + 100 * np.sin((x + y) / 5.0)], -1
    )
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    image[top : top + height // 3, left : left + width // 3] = (250, 30, 200)
    return np.clip(image, 0, 255).astype(np.uint8)


def _write(path, rgb, kind):
    """Writes `rgb` as JPEG, RGB PNG, greyscale PNG or RGBA PNG."""
    if kind == "jpeg":
        Image.fromarray(rgb).save(path, format="JPEG", quality=90)
    elif kind == "png_rgb":
        Image.fromarray(rgb).save(path, format="PNG")
    elif kind == "png_grey":
        Image.fromarray(rgb).convert("L").save(path, format="PNG")
    else:
        alpha = np.full(rgb.shape[:2] + (1,), 180, np.uint8)
        Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA").save(path, format="PNG")


KINDS = ("jpeg", "png_rgb", "png_grey", "png_rgba")
EXTENSIONS = {"jpeg": "jpg", "png_rgb": "png", "png_grey": "png", "png_rgba": "png"}


def _files(directory, sizes):
    """One file of each kind (and each size) in `directory`, sorted as listed."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for index, (kind, (height, width)) in enumerate(
        (kind, size) for size in sizes for kind in KINDS
    ):
        path = os.path.join(directory, f"{index:02d}_{kind}.{EXTENSIONS[kind]}")
        _write(path, _picture(height, width, index), kind)
        paths.append(path)
    return sorted(paths)


def _served_inputs(model, paths):
    """What the SavedModel's two input forms hand the model for `paths`: bytes
    (`serving_bytes`) and decoded uint8 RGB (`serving_default`, one image a call)."""
    serving, _ = signatures(model)
    data = [tf.io.read_file(p) for p in paths]
    from_bytes = serving.decode(tf.stack(data)).numpy()
    # A client decodes to RGB itself (greyscale replicated, alpha dropped).
    from_pixels = np.concatenate(
        [
            serving._prepare(tf.io.decode_png(d, channels=3)[None]).numpy()
            if not p.endswith(".jpg")
            else serving._prepare(tf.io.decode_jpeg(d, channels=3)[None]).numpy()
            for p, d in zip(paths, data)
        ]
    )
    return from_bytes, from_pixels


def _model(size, channels, crop_fraction):
    return MGNet(
        "vanilla_cnn",
        num_classes=3,
        image_size=size,
        num_glimpses=2,
        downsample=2,
        channels=channels,
        crop_fraction=crop_fraction,
    )


def test_an_imagenet_like_set_is_evaluated_and_served_on_the_same_pixels(tmp_path):
    # Odd, non-square sizes so that the centre crop, the shorter-side resize and
    # the rounding all matter.
    root = tmp_path / "folder"
    for split in ("train", "val"):
        _files(str(root / split / "cls_a"), [(45, 61), (70, 52)])
    size = 32
    pipeline = pipelines.build_dataset(
        "folder", "validation", str(root), batch_size=16, image_size=size
    )
    evaluated = np.concatenate([images.numpy() for images, _ in pipeline])
    paths = sorted(str(p) for p in (root / "val" / "cls_a").iterdir())
    assert evaluated.shape == (len(paths), size, size, 3)

    model = _model(size, 3, pipelines.crop_fraction("folder"))
    assert model.crop_fraction == 0.875
    read, kept = EvalTransform.of_model(model).read_files(paths)
    from_bytes, from_pixels = _served_inputs(model, paths)
    assert kept == paths
    np.testing.assert_array_equal(read, evaluated)
    np.testing.assert_array_equal(from_bytes, evaluated)
    np.testing.assert_array_equal(from_pixels, evaluated)
    # The crop is real: a plain resize of the same files gives other pixels.
    plain = EvalTransform(size, 3).file_bytes(tf.io.read_file(paths[0])).numpy()
    assert np.abs(plain - evaluated[0]).max() > 0.05


def test_a_translated_canvas_written_to_a_file_reaches_the_model_unchanged(tmp_path):
    # The translated sets are evaluated on canvases the pipeline draws; a canvas
    # saved as a file and sent to --images or the SavedModel must come back as the
    # same tensor (no resize at the native size, greyscale kept or converted back).
    name = "translated_fashion_mnist"
    canvases = next(
        iter(pipelines.build_dataset(name, "test", None, batch_size=4, seed=0))
    )[0].numpy()
    info = pipelines.dataset_info(name)
    model = _model(info.image_size, info.channels, pipelines.crop_fraction(name))
    assert model.crop_fraction is None
    paths = []
    for index, canvas in enumerate(canvases):
        pixels = np.round(canvas[..., 0] * 255).astype(np.uint8)
        grey = str(tmp_path / f"{index}_grey.png")
        Image.fromarray(pixels, "L").save(grey)
        rgb = str(tmp_path / f"{index}_rgb.png")
        Image.fromarray(np.repeat(pixels[..., None], 3, -1)).save(rgb)
        paths += [grey, rgb]
    expected = np.repeat(canvases, 2, axis=0)
    read, _ = EvalTransform.of_model(model).read_files(paths)
    from_bytes, from_pixels = _served_inputs(model, paths)
    np.testing.assert_array_equal(read, expected)
    np.testing.assert_array_equal(from_bytes, expected)
    np.testing.assert_array_equal(from_pixels, expected)


def test_a_batch_of_one_size_is_transformed_as_its_images_one_by_one():
    images = np.stack([_picture(50, 38, seed) for seed in range(3)])
    for crop in (None, 0.875):
        transform = EvalTransform(24, 3, crop)
        batched = transform.image(images).numpy()
        single = np.stack([transform.image(image).numpy() for image in images])
        np.testing.assert_array_equal(batched, single)


def test_the_transform_is_recorded_with_the_model(tmp_path):
    model = _model(32, 3, 0.875)
    path = str(tmp_path / "model.keras")
    model(np.zeros((1, 32, 32, 3), np.float32))
    model.save(path)
    import keras  # noqa: PLC0415

    loaded = keras.saving.load_model(path)
    assert EvalTransform.of_model(loaded) == EvalTransform(32, 3, 0.875)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"size": 0, "channels": 3}, "size"),
        ({"size": 8, "channels": 2}, "channels"),
        ({"size": 8, "channels": 3, "crop_fraction": 1.5}, "crop_fraction"),
    ],
)
def test_bad_transforms_name_the_value(kwargs, name):
    with pytest.raises(ValueError, match=name):
        EvalTransform(**kwargs)
