import gzip

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipelines import translated_mnist
from pipelines.translated_mnist import load_idx, select_split, translated_dataset


def test_load_idx_gzipped_and_plain(idx_dir, make_idx, tmp_path):
    arrays = load_idx(str(idx_dir))
    assert arrays["train_images"].shape == (36, 28, 28)
    assert arrays["train_labels"].shape == (36,)
    assert arrays["test_images"].shape == (12, 28, 28)
    assert all(a.dtype == np.uint8 for a in arrays.values())
    written = make_idx(tmp_path / "plain", gzipped=False)
    plain = load_idx(str(tmp_path / "plain"))
    for key, value in written.items():
        np.testing.assert_array_equal(plain[key], value)
        np.testing.assert_array_equal(arrays[key], value)


def test_missing_files_are_named(make_idx, tmp_path):
    make_idx(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        FileNotFoundError, match=f"t10k-labels-idx1-ubyte.gz.*{tmp_path}"
    ):
        load_idx(str(tmp_path))


def test_bad_magic_is_named(make_idx, tmp_path):
    make_idx(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[3] = 0x03
    path.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(ValueError, match=f"0x0801.*{path}, found 0x0803"):
        load_idx(str(tmp_path))


def test_wrong_size_and_bad_gzip_are_named(make_idx, tmp_path):
    make_idx(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5]))
    with pytest.raises(ValueError, match=f"{path} has a header for shape"):
        load_idx(str(tmp_path))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match=f"gunzip IDX file {path}"):
        load_idx(str(tmp_path))


def test_image_and_label_counts_must_agree(make_idx, tmp_path):
    make_idx(tmp_path)
    make_idx(tmp_path / "other", train=24)
    (tmp_path / "other" / "train-labels-idx1-ubyte.gz").replace(
        tmp_path / "train-labels-idx1-ubyte.gz"
    )
    with pytest.raises(ValueError, match="36 images but .* 24 labels"):
        load_idx(str(tmp_path))


def test_fashion_falls_back_to_debian_directory(make_idx, tmp_path, monkeypatch):
    written = make_idx(tmp_path)
    monkeypatch.setattr(translated_mnist, "DEBIAN_FASHION_MNIST", str(tmp_path))
    arrays = load_idx(None, "fashion_mnist")
    np.testing.assert_array_equal(arrays["test_labels"], written["test_labels"])


@pytest.mark.parametrize("variant", ["mnist", "fashion_mnist"])
def test_no_source_says_how_to_get_the_files(variant, tmp_path, monkeypatch):
    def offline():
        raise OSError("no network")

    monkeypatch.setattr(getattr(keras.datasets, variant), "load_data", offline)
    monkeypatch.setattr(translated_mnist, "DEBIAN_FASHION_MNIST", str(tmp_path / "no"))
    with pytest.raises(FileNotFoundError, match="--data_dir") as error:
        load_idx(None, variant)
    assert "no network" in str(error.value)
    assert ("apt-get install dataset-fashion-mnist" in str(error.value)) == (
        variant == "fashion_mnist"
    )


def test_unknown_variant():
    with pytest.raises(ValueError, match="'mnist', 'fashion_mnist'"):
        load_idx(None, "kmnist")


def test_splits():
    arrays = {
        "train_images": np.arange(60000),
        "train_labels": np.arange(60000),
        "test_images": np.arange(10000),
        "test_labels": np.arange(10000),
    }
    train, _ = select_split(arrays, "train")
    validation, _ = select_split(arrays, "validation")
    test, _ = select_split(arrays, "test")
    assert (len(train), len(validation), len(test)) == (55000, 5000, 10000)
    np.testing.assert_array_equal(validation, np.arange(55000, 60000))
    small = {k: v[:36] for k, v in arrays.items()}
    assert len(select_split(small, "train")[0]) == 33
    assert len(select_split(small, "validation")[0]) == 3
    with pytest.raises(ValueError, match="'train', 'validation', 'test'"):
        select_split(arrays, "val")


def digits_and_labels(idx_dir):
    arrays = load_idx(str(idx_dir))
    return arrays["test_images"], arrays["test_labels"].astype(np.int32)


def offsets_of(dataset):
    """Checks every canvas holds its digit exactly, wholly inside and on
    black; returns the (top, left) of each."""
    offsets = []
    for index, (canvas, label) in enumerate(dataset):
        canvas = canvas.numpy()
        assert canvas.shape == (112, 112, 1) and canvas.dtype == np.float32
        assert label.dtype == tf.int32
        # conftest's digits have their bounding box at rows 4.., columns 6...
        rows, cols = np.nonzero(canvas[..., 0])
        top, left = rows.min() - 4, cols.min() - 6
        assert 0 <= top <= 84 and 0 <= left <= 84
        offsets.append((top, left, int(label)))
    return offsets


def test_eval_places_digits_whole_and_fixed(idx_dir):
    digits, labels = digits_and_labels(idx_dir)
    dataset = translated_dataset(digits, labels, training=False, seed=5)
    first = offsets_of(dataset)
    assert offsets_of(dataset) == first
    assert [label for _, _, label in first] == list(labels)
    assert len({(top, left) for top, left, _ in first}) > 6
    for (top, left, _), (canvas, _), digit in zip(first, dataset, digits):
        canvas = canvas.numpy()[..., 0]
        window = canvas[top : top + 28, left : left + 28]
        np.testing.assert_allclose(window, digit / 255.0, atol=1e-6)
        np.testing.assert_allclose(canvas.sum(), digit.sum() / 255.0, rtol=1e-5)
    other_seed = offsets_of(translated_dataset(digits, labels, False, seed=6))
    assert other_seed != first


def test_training_redraws_positions_each_pass_reproducibly(idx_dir):
    digits, labels = digits_and_labels(idx_dir)

    def two_passes():
        dataset = translated_dataset(digits, labels, training=True, seed=3)
        return offsets_of(dataset), offsets_of(dataset)

    first, second = two_passes()
    assert first != second
    assert sorted(label for *_, label in first) == sorted(labels)
    assert two_passes() == (first, second)


def test_eval_positions_survive_sharding(idx_dir):
    digits, labels = digits_and_labels(idx_dir)
    whole = offsets_of(translated_dataset(digits, labels, False, seed=1))
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
    shard = translated_dataset(digits, labels, False, seed=1, input_context=context)
    assert offsets_of(shard) == whole[1::2]


def test_noise_is_clipped_and_fixed_in_eval(idx_dir):
    digits, labels = digits_and_labels(idx_dir)
    dataset = translated_dataset(digits[:3], labels[:3], False, seed=0, noise_std=0.3)
    first = np.stack([canvas.numpy() for canvas, _ in dataset])
    second = np.stack([canvas.numpy() for canvas, _ in dataset])
    np.testing.assert_array_equal(first, second)
    assert first.min() == 0.0 and first.max() == 1.0
    assert 0.05 < first.std() and (first > 0).mean() > 0.4  # noise on the black


def test_canvas_size_and_bad_arguments(idx_dir):
    digits, labels = digits_and_labels(idx_dir)
    dataset = translated_dataset(digits, labels, False, seed=0, canvas_size=28)
    assert dataset.element_spec[0].shape == (28, 28, 1)
    np.testing.assert_allclose(next(iter(dataset))[0][..., 0], digits[0] / 255.0)
    with pytest.raises(ValueError, match="canvas_size"):
        translated_dataset(digits, labels, False, seed=0, canvas_size=20)
    with pytest.raises(ValueError, match="noise_std"):
        translated_dataset(digits, labels, False, seed=0, noise_std=-1.0)
    with pytest.raises(ValueError, match="labels"):
        translated_dataset(digits, labels[:3], False, seed=0)


@pytest.mark.skipif(
    not tf.io.gfile.isdir(translated_mnist.DEBIAN_FASHION_MNIST),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_from_debian():
    arrays = load_idx(None, "fashion_mnist")
    assert arrays["train_images"].shape == (60000, 28, 28)
    assert arrays["test_labels"].shape == (10000,)
    assert len(select_split(arrays, "train")[0]) == 55000
