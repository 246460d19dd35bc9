import shutil

import numpy as np
import pytest
import tensorflow as tf

import pipelines
from pipelines import build_dataset, dataset_info
from pipelines.decode import SkippedFiles


# (data set, split, training) -> (number of examples, channels). Tiny
# ImageNet's training split has 12 files, one of them truncated.
CASES = {
    ("tiny_imagenet", "train", True): (11, 3),
    ("tiny_imagenet", "validation", False): (6, 3),
    ("imagenet", "train", True): (12, 3),
    ("imagenet", "validation", False): (8, 3),
    ("folder", "train", True): (12, 3),
    ("folder", "validation", False): (8, 3),
    ("imagenet100", "train", True): (100, 3),
    ("imagenet100", "validation", False): (100, 3),
    ("translated_mnist", "train", True): (33, 1),
    ("translated_mnist", "test", False): (12, 1),
    ("translated_fashion_mnist", "validation", False): (3, 1),
}
BATCH = 4


def collect(dataset):
    """All batches as numpy arrays: ([images], [labels])."""
    images, labels = [], []
    for image, label in dataset:
        images.append(image.numpy())
        labels.append(label.numpy())
    return images, labels


@pytest.mark.parametrize("name, split, training", sorted(CASES))
def test_batches(roots, name, split, training):
    count, channels = CASES[(name, split, training)]
    dataset = build_dataset(
        name, split, roots[name], BATCH, image_size=24, training=training, seed=0
    )
    assert dataset.element_spec[0].dtype == tf.float32
    assert dataset.element_spec[1].dtype == tf.int32
    first = None if not training else BATCH  # static batch in training only
    assert dataset.element_spec[0].shape.as_list() == [first, 24, 24, channels]
    images, labels = collect(dataset)
    sizes = [len(batch) for batch in labels]
    if training:
        assert sizes == [BATCH] * (count // BATCH)
    else:
        assert sum(sizes) == count and all(size == BATCH for size in sizes[:-1])
    images = np.concatenate(images)
    assert images.dtype == np.float32 and images.shape[1:] == (24, 24, channels)
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5
    labels = np.concatenate(labels)
    assert labels.dtype == np.int32
    assert (
        0 <= labels.min() and labels.max() < dataset_info(name, roots[name]).num_classes
    )


@pytest.mark.parametrize(
    "name, size, channels",
    [("tiny_imagenet", 64, 3), ("folder", 224, 3), ("translated_mnist", 112, 1)],
)
def test_native_size_by_default(roots, name, size, channels):
    info = dataset_info(name, roots[name])
    assert (info.image_size, info.channels) == (size, channels)
    dataset = build_dataset(name, "validation", roots[name], 2)
    assert dataset.element_spec[0].shape.as_list() == [None, size, size, channels]
    images, _ = next(iter(dataset))
    assert images.shape == (2, size, size, channels)


def test_eval_labels_follow_the_file_lists(roots):
    _, labels = collect(
        build_dataset("tiny_imagenet", "validation", roots["tiny_imagenet"], 4)
    )
    np.testing.assert_array_equal(np.concatenate(labels), [k % 3 for k in range(6)])
    _, labels = collect(build_dataset("imagenet", "validation", roots["imagenet"], 3))
    np.testing.assert_array_equal(np.concatenate(labels), [0, 0, 1, 1, 2, 2, 3, 3])


def test_truncated_file_is_skipped_named_and_counted(roots, capfd):
    skipped = SkippedFiles()
    dataset = build_dataset(
        "tiny_imagenet",
        "train",
        roots["tiny_imagenet"],
        1,
        training=True,
        skipped=skipped,
    )
    _, labels = collect(dataset)
    assert len(labels) == 11
    assert np.bincount(np.concatenate(labels)).tolist() == [4, 4, 3]
    assert skipped.count() == 1
    path = f"{roots['tiny_imagenet']}/train/n02/images/n02_1.JPEG"
    assert f"Skipping unreadable image: {path}\n" in capfd.readouterr().err
    skipped.reset()
    collect(dataset)
    assert skipped.count() == 1


def test_training_shuffles_reproducibly(roots):
    def labels_of(seed):
        dataset = build_dataset(
            "imagenet",
            "train",
            roots["imagenet"],
            12,
            image_size=8,
            training=True,
            seed=seed,
        )
        return [collect(dataset)[1][0].tolist() for _ in range(2)]

    first_pass, second_pass = labels_of(1)
    assert sorted(first_pass) == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert first_pass != sorted(first_pass) and first_pass != second_pass
    assert labels_of(1) == [first_pass, second_pass]


@pytest.mark.parametrize("name", ["imagenet", "translated_mnist"])
def test_sharding_gives_disjoint_halves_and_per_replica_batches(roots, name):
    split = "validation"
    whole, _ = collect(build_dataset(name, split, roots[name], 4, image_size=16))
    whole = np.concatenate(whole)
    shards = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        images, _ = collect(
            build_dataset(
                name, split, roots[name], 4, image_size=16, input_context=context
            )
        )
        assert all(len(batch) <= 2 for batch in images)
        shards.append({batch.tobytes() for batch in np.concatenate(images)})
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == {image.tobytes() for image in whole}


def test_training_batch_per_replica_is_static(roots):
    context = tf.distribute.InputContext(2, 0, 2)
    dataset = build_dataset(
        "translated_mnist",
        "train",
        roots["translated_mnist"],
        8,
        training=True,
        input_context=context,
    )
    assert dataset.element_spec[0].shape.as_list() == [4, 112, 112, 1]
    with pytest.raises(ValueError):
        build_dataset(
            "translated_mnist",
            "train",
            roots["translated_mnist"],
            7,
            input_context=context,
        )


def test_translated_noise_stays_in_range(roots):
    dataset = build_dataset(
        "translated_mnist", "test", roots["translated_mnist"], 12, noise_std=0.3
    )
    images = next(iter(dataset))[0].numpy()
    assert images.min() == 0.0 and images.max() == 1.0 and (images > 0).mean() > 0.4


@pytest.mark.parametrize("policy", ["randaugment", "autoaugment"])
def test_policies_in_training(roots, policy):
    if policy == "autoaugment":
        pytest.importorskip("pipelines.autoaugment")
    dataset = build_dataset(
        "imagenet",
        "train",
        roots["imagenet"],
        4,
        image_size=16,
        training=True,
        augment=policy,
    )
    images, labels = next(iter(dataset))
    assert images.shape == (4, 16, 16, 3) and labels.shape == (4,)
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0


def test_imagenet100_is_the_first_100_sorted_classes(roots):
    info = dataset_info("imagenet100", roots["imagenet100"])
    assert info.num_classes == 100
    assert info.class_names == tuple(f"n{c:08d}" for c in range(100))
    assert len(dataset_info("imagenet", roots["imagenet100"]).class_names) == 101


def test_imagenet100_from_classes_file(roots, tmp_path):
    path = tmp_path / "imagenet100.txt"
    names = [f"n{c:08d}" for c in range(100, 0, -1)]
    path.write_text("# a subset\n" + "\n".join(names))
    info = dataset_info("imagenet100", roots["imagenet100"], str(path))
    assert info.class_names == tuple(names)
    dataset = build_dataset(
        "imagenet100",
        "validation",
        roots["imagenet100"],
        100,
        image_size=8,
        classes_file=str(path),
    )
    _, labels = collect(dataset)
    np.testing.assert_array_equal(labels[0], np.arange(100))
    short = tmp_path / "short.txt"
    short.write_text("n00000001\n")
    with pytest.raises(ValueError, match="100 classes"):
        dataset_info("imagenet100", roots["imagenet100"], str(short))


def test_validation_directory_may_be_named_validation(imagenet_root, tmp_path):
    root = tmp_path / "renamed"
    shutil.copytree(imagenet_root, root)
    (root / "val").rename(root / "validation")
    _, labels = collect(
        build_dataset("folder", "validation", str(root), 8, image_size=8)
    )
    assert len(labels[0]) == 8
    shutil.rmtree(root / "validation")
    # Split listings are cached per process (ImageNet is slow to list); start afresh.
    pipelines._list_files.cache_clear()
    with pytest.raises(FileNotFoundError, match=f"{root}/val"):
        build_dataset("folder", "validation", str(root), 8)


def test_bad_arguments_are_named(roots):
    with pytest.raises(
        ValueError, match="'tiny_imagenet'.*'translated_fashion_mnist'.*'cifar'"
    ):
        build_dataset("cifar", "train", "/data", 8)
    with pytest.raises(ValueError, match="'train', 'validation'.*'test'"):
        build_dataset("imagenet", "test", roots["imagenet"], 8)
    with pytest.raises(ValueError, match="--data_dir is required.*'imagenet'"):
        build_dataset("imagenet", "train", None, 8)
    with pytest.raises(ValueError, match="augment='none' only"):
        build_dataset("translated_mnist", "train", None, 8, augment="randaugment")
    with pytest.raises(
        ValueError, match="'autoaugment', 'randaugment', 'none'.*'rand'"
    ):
        build_dataset("imagenet", "train", roots["imagenet"], 8, augment="rand")
    with pytest.raises(ValueError, match="noise_std"):
        build_dataset("imagenet", "train", roots["imagenet"], 8, noise_std=0.3)
    with pytest.raises(ValueError, match="classes_file"):
        dataset_info("tiny_imagenet", roots["tiny_imagenet"], "classes.txt")
    with pytest.raises(ValueError, match="batch_size"):
        build_dataset("imagenet", "train", roots["imagenet"], 0)


def test_dataset_info_is_cached(roots):
    assert dataset_info("imagenet", roots["imagenet"]) is dataset_info(
        "imagenet", roots["imagenet"]
    )
    assert pipelines.DATASETS == (
        "tiny_imagenet",
        "imagenet100",
        "imagenet",
        "folder",
        "translated_mnist",
        "translated_fashion_mnist",
    )


@pytest.mark.parametrize("training", [False, True])
def test_file_that_looks_complete_but_fails_to_decode_is_named_and_counted(
    imagenet_root, tmp_path, capfd, training
):
    root = tmp_path / "corrupt"
    shutil.copytree(imagenet_root, root)
    split = "train" if training else "val"
    bad = root / split / "n01443537" / "bad.jpg"
    bad.write_bytes(b"\xff\xd8garbage\xff\xd9")  # passes the JPEG marker check
    skipped = SkippedFiles()
    dataset = build_dataset(
        "folder",
        "train" if training else "validation",
        str(root),
        1,
        image_size=8,
        training=training,
        seed=0,
        skipped=skipped,
    )
    _, labels = collect(dataset)
    labels = np.concatenate(labels)
    if training:
        assert sorted(labels.tolist()) == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    else:
        np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2, 3, 3])
    assert skipped.count() == 1
    assert f"Skipping unreadable image: {bad}\n" in capfd.readouterr().err


@pytest.mark.parametrize("name", ["tiny_imagenet", "imagenet"])
def test_training_augmentation_reproducible_from_the_seed(roots, name):
    def two_passes(seed):
        dataset = build_dataset(
            name, "train", roots[name], 4, image_size=16, training=True, seed=seed
        )
        return [np.concatenate(collect(dataset)[0]) for _ in range(2)]

    first, second = two_passes(7)
    assert not np.array_equal(first, second)
    again = two_passes(7)
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)
    assert not np.array_equal(two_passes(8)[0], first)


def _take(dataset, count):
    images, labels = [], []
    for image, label in dataset.take(count):
        images.append(image.numpy())
        labels.append(label.numpy())
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("name", ["imagenet", "translated_mnist"])
def test_resumed_stream_continues_the_uninterrupted_one(roots, name):
    """start_step=k yields exactly batches k, k+1, ... of the stream from 0."""

    def stream(start_step, seed=3):
        return build_dataset(
            name,
            "train",
            roots[name],
            4,
            image_size=16,
            training=True,
            seed=seed,
            start_step=start_step,
        )

    # 12 images a pass, so 7 batches of 4 span three passes.
    images, labels = _take(stream(0), 7)
    for start in (1, 3, 5):
        resumed_images, resumed_labels = _take(stream(start), 7 - start)
        np.testing.assert_array_equal(resumed_labels, labels[4 * start :])
        np.testing.assert_array_equal(resumed_images, images[4 * start :])
    size = 12 if name == "imagenet" else 33
    first, second = labels[:size], labels[size : 2 * size]
    if name == "imagenet":  # every pass visits each image once, in a new order
        expected = [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
        assert sorted(first) == expected and sorted(second) == expected
        assert first.tolist() != second.tolist()
    assert not np.array_equal(images, _take(stream(0, seed=4), 7)[0])


def test_translated_stream_passes_are_permutations(roots):
    data = build_dataset(
        "translated_mnist",
        "train",
        roots["translated_mnist"],
        11,
        training=True,
        seed=0,
        start_step=0,
    )
    _, labels = _take(data, 6)  # 33 a pass: two passes
    reference = collect(
        build_dataset("translated_mnist", "train", roots["translated_mnist"], 33)
    )[1][0]
    for one_pass in (labels[:33], labels[33:]):
        assert sorted(one_pass.tolist()) == sorted(reference.tolist())
    assert labels[:33].tolist() != labels[33:].tolist()


def test_start_step_is_checked(roots):
    with pytest.raises(ValueError, match="training data only"):
        build_dataset(
            "imagenet", "validation", roots["imagenet"], 4, image_size=8, start_step=0
        )
    with pytest.raises(ValueError, match="start_step >= 0"):
        build_dataset(
            "imagenet",
            "train",
            roots["imagenet"],
            4,
            image_size=8,
            training=True,
            start_step=-1,
        )
