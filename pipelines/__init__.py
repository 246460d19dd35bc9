"""Input pipelines: `build_dataset(name, split, ...)` gives batches for `fit`.

Every data set yields `(images, labels)`: float32 images in [0, 1] of shape
(batch, size, size, channels) and int32 labels. This package is the data side
and does not import `mgnet_tf`.
"""

import dataclasses
import functools
import posixpath

import numpy as np
import tensorflow as tf

from pipelines import augment as augment_lib
from pipelines import image_folder, tiny_imagenet, translated_mnist
from pipelines.decode import SkippedFiles, decode_image
from pipelines.transform import EvalTransform

IMAGENET_CROP_FRACTION = 0.875  # torchvision's Resize(256) + CenterCrop(224)
_CLASS_NAMES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
_FILE_SPLITS = ("train", "validation")
# ImageNet's archive calls its validation directory "val"; some copies do not.
_SPLIT_DIRS = {"train": ("train",), "validation": ("val", "validation")}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What is fixed about a data set before its files are read.

    Attributes:
        name: The name train.py's and evaluate.py's --dataset take.
        reader: "translated" (IDX arrays placed on a canvas, `translated_mnist`),
            "tiny_imagenet" (`tiny_imagenet`) or "image_folder" (class directories,
            `image_folder`).
        image_size: Native side of the images the pipeline yields: the paper's
            112 px canvas, Tiny ImageNet's 64 px, the usual 224 px ImageNet crop.
        channels: 1 (grayscale) or 3 (RGB).
        crop_fraction: The evaluation transform (`transform.EvalTransform`): None
            resizes; a float resizes the shorter side and crops the centre. The
            ImageNet-like sets train on random-resized crops and evaluate on
            centre crops.
        variant: For "translated": the IDX files' data set, "mnist" or
            "fashion_mnist".
        num_classes: The first classes kept, in sorted order (ImageNet100 is the
            first 100 sorted wnids, the paper's definition); None keeps all.
    """

    name: str
    reader: str
    image_size: int
    channels: int
    crop_fraction: float = None
    variant: str = None
    num_classes: int = None

    @property
    def imagenet_like(self):
        """Class directories, random-resized crops in training, centre crops after."""
        return self.reader == "image_folder"


# The one registry of data sets: train.py (with presets.PRESETS, one recipe a name,
# checked against this table), evaluate.py and the notebook read it.
SPECS = {
    spec.name: spec
    for spec in (
        DatasetSpec("tiny_imagenet", "tiny_imagenet", 64, 3),
        DatasetSpec(
            "imagenet100", "image_folder", 224, 3, IMAGENET_CROP_FRACTION, num_classes=100
        ),
        DatasetSpec("imagenet", "image_folder", 224, 3, IMAGENET_CROP_FRACTION),
        DatasetSpec("folder", "image_folder", 224, 3, IMAGENET_CROP_FRACTION),
        DatasetSpec("translated_mnist", "translated", 112, 1, variant="mnist"),
        DatasetSpec(
            "translated_fashion_mnist", "translated", 112, 1, variant="fashion_mnist"
        ),
    )
}
DATASETS = tuple(SPECS)


def spec(name):
    """The `DatasetSpec` of `name`; a ValueError lists the known names."""
    if name not in SPECS:
        raise ValueError(f"Expected a data set in {DATASETS}. Received: {name!r}")
    return SPECS[name]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set.

    Attributes:
        name: One of `DATASETS`.
        num_classes: Number of classes.
        class_names: Class names, in label order.
        image_size: Native side of the (square) images the pipeline yields.
        channels: 3 (RGB) or 1 (grayscale).
        splits: The split names `build_dataset` accepts.
    """

    name: str
    num_classes: int
    class_names: tuple
    image_size: int
    channels: int
    splits: tuple


# Cached: listing ImageNet's class directories is slow, above all on gs://.
@functools.lru_cache(maxsize=None)
def dataset_info(name, data_dir=None, classes_file=None):
    """Describes a data set; the class list is read from `data_dir` once.

    Results are cached for the process by argument values: a directory or
    classes file changed afterwards is not read again.

    Args:
        name: One of `DATASETS`.
        data_dir: The data set's directory; required except for the
            translated sets (see `build_dataset`).
        classes_file: Optional file of class names, one a line, for
            "imagenet100" (exactly 100), "imagenet" and "folder".

    Returns:
        A `DatasetInfo`.

    Raises:
        ValueError: If the name is unknown, `data_dir` is missing, or
            `classes_file` is given for a data set that takes none.
        FileNotFoundError: If the class list cannot be read.
    """
    data = spec(name)
    if classes_file is not None and not data.imagenet_like:
        imagenet_like = tuple(n for n in DATASETS if SPECS[n].imagenet_like)
        raise ValueError(
            f"classes_file applies to {imagenet_like}, not {name!r}. "
            f"Received: classes_file={classes_file!r}"
        )
    if data.reader == "translated":
        names = _CLASS_NAMES[data.variant]
        return DatasetInfo(
            name, len(names), names, data.image_size, data.channels, translated_mnist.SPLITS
        )
    if data_dir is None:
        raise ValueError(
            f"--data_dir is required for data set {name!r}: the directory that "
            "holds its split directories."
        )
    if data.reader == "tiny_imagenet":
        names = tiny_imagenet.read_wnids(data_dir)
    else:
        names = image_folder.imagenet_classes(data_dir, data.num_classes, classes_file)
    size = data.image_size
    return DatasetInfo(name, len(names), tuple(names), size, data.channels, _FILE_SPLITS)


def build_dataset(
    name,
    split,
    data_dir,
    batch_size,
    image_size=None,
    training=False,
    augment="none",
    seed=None,
    input_context=None,
    noise_std=0.0,
    classes_file=None,
    skipped=None,
    drop_remainder=None,
    start_step=None,
):
    """Builds the batched input pipeline of one split of a data set.

    Training shuffles, augments and drops the last partial batch (static
    shapes for TPU); evaluation keeps order and every example. Neither
    repeats (`fit` makes one pass per epoch), except training with `start_step`.

    Args:
        name: One of `DATASETS`.
        split: One of `dataset_info(name).splits`: "train", "validation", and
            "test" for the translated sets.
        data_dir: For "folder", "imagenet" and "imagenet100" the root holding
            `train/<class>/` and `val/<class>/` (or `validation/<class>/`);
            for "tiny_imagenet" the `tiny-imagenet-200` directory; for the
            translated sets an optional directory of the four IDX files.
        batch_size: The global batch size.
        image_size: Side of the output images; defaults to the native size.
        training: Whether to shuffle, augment and drop the remainder.
        augment: Policy applied after the geometric augmentation in training:
            one of `augment.POLICIES`; only "none" for translated sets.
        seed: Optional int that makes the shuffle, the augmentation and the
            translated sets' positions reproducible; they still change on
            every pass.
        input_context: Optional `tf.distribute.InputContext`: the pipeline
            then reads its own shard and yields per-replica batches.
        noise_std: Gaussian noise for the translated sets (0.3 is GT-MNIST).
        classes_file: Optional class list (see `dataset_info`).
        skipped: Optional `SkippedFiles` counting unreadable files; create it
            outside any strategy scope to read the count afterwards.
        drop_remainder: Whether to drop the last partial batch; default: in
            training only. Multi-replica evaluation needs it (a replica must not
            get an empty batch; TPUs need static shapes).
        start_step: Training only. None: one pass, reshuffled on each iteration.
            An int: an endless stream whose order and augmentation in pass p
            are a function of `(seed, p)` alone, starting at batch `start_step`
            (per-replica batches under `input_context`). `train.py` uses it so
            that a resumed run sees exactly the batches an uninterrupted one
            would, without reading the files it skips.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`.

    Raises:
        ValueError: On an unknown name, split or policy, a policy or noise for
            a data set that takes none, or a missing `data_dir`.
        FileNotFoundError: If the files of the split cannot be found.
    """
    info = dataset_info(name, data_dir, classes_file)
    if split not in info.splits:
        raise ValueError(
            f"Expected split in {info.splits} for {name!r}. Received: {split!r}"
        )
    if augment not in augment_lib.POLICIES:
        raise ValueError(
            f"Expected augment in {augment_lib.POLICIES}. Received: {augment!r}"
        )
    size = info.image_size if image_size is None else image_size
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"Expected image_size > 0. Received: {image_size!r}")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"Expected batch_size > 0. Received: {batch_size!r}")
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    start = None
    if start_step is not None:
        if not training:
            raise ValueError(
                f"start_step applies to training data only. Received: {start_step!r}"
            )
        if not isinstance(start_step, int) or start_step < 0:
            raise ValueError(f"Expected start_step >= 0. Received: {start_step!r}")
        start = start_step * batch_size
    if spec(name).reader == "translated":
        if augment != "none":
            raise ValueError(
                f"{name!r} takes augment='none' only: its random translation "
                f"is the augmentation. Received: {augment!r}"
            )
        dataset = _translated(
            info, split, data_dir, size, training, seed, noise_std, input_context, start
        )
    else:
        if noise_std:
            raise ValueError(
                f"noise_std applies to the translated sets only, not {name!r}. "
                f"Received: {noise_std!r}"
            )
        dataset = _image_files(
            info,
            split,
            data_dir,
            size,
            training,
            augment,
            seed,
            input_context,
            SkippedFiles() if skipped is None else skipped,
            start,
        )
    if drop_remainder is None:
        drop_remainder = training
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _translated(
    info, split, data_dir, size, training, seed, noise_std, context, start=None
):
    """Unbatched translated (Fashion-)MNIST, resized to `size` if need be."""
    arrays = _load_idx(data_dir, SPECS[info.name].variant)
    images, labels = translated_mnist.select_split(arrays, split)
    dataset = translated_mnist.translated_dataset(
        images,
        labels,
        training,
        seed,
        canvas_size=info.image_size,
        noise_std=noise_std,
        input_context=context,
        start=start,
    )
    if size == info.image_size:
        return dataset

    def resize(image, label):
        image = tf.image.resize(image, [size, size], antialias=True)
        return tf.clip_by_value(image, 0.0, 1.0), label

    return dataset.map(resize, num_parallel_calls=tf.data.AUTOTUNE)


def object_boxes(name, split, count, seed, image_size=None, data_dir=None):
    """Each image's object box in an evaluation split, where the data set knows it.

    Args:
        name: One of `DATASETS`.
        split: The evaluated split ("validation" or "test").
        count: How many images, from the first, in the order `build_dataset` yields
            them without `training`; None means the whole split.
        seed: The seed given to `build_dataset`.
        image_size: The side the pipeline resizes to (default: native).
        data_dir: As for `build_dataset` (only read when `count` is None).

    Returns:
        float64 array (count, 4) of (top, left, bottom, right) in pixels of the
        yielded images (`mgnet_tf.localization`'s convention), or None for data sets
        without known boxes (all but the translated ones).
    """
    data = spec(name)
    if data.reader != "translated":
        return None
    if count is None:
        count = num_examples(name, split, data_dir)
    boxes = translated_mnist.object_boxes(count, seed, data.image_size)
    return boxes * ((image_size or data.image_size) / data.image_size)


# Cached: train, validation and test all come from the same four files.
@functools.lru_cache(maxsize=None)
def _load_idx(data_dir, variant):
    """`translated_mnist.load_idx`, read once per process."""
    return translated_mnist.load_idx(data_dir, variant)


def num_examples(name, split, data_dir=None, classes_file=None):
    """Number of examples in a split (before any unreadable file is skipped).

    Args:
        name, split, data_dir, classes_file: as for `build_dataset`.

    Returns:
        int.
    """
    info = dataset_info(name, data_dir, classes_file)
    if split not in info.splits:
        raise ValueError(
            f"Expected split in {info.splits} for {name!r}. Received: {split!r}"
        )
    if SPECS[name].reader == "translated":
        arrays = _load_idx(data_dir, SPECS[name].variant)
        return len(translated_mnist.select_split(arrays, split)[1])
    return len(_list_files(info, split, data_dir)[0])


# Cached: num_examples and build_dataset list the same split.
@functools.lru_cache(maxsize=None)
def _list_files(info, split, data_dir):
    """`(paths, labels)` of a file-based split, labelled as in `info`."""
    if SPECS[info.name].reader == "tiny_imagenet":
        paths, labels, _ = tiny_imagenet.list_tiny_imagenet(data_dir, split)
        return paths, labels
    candidates = [posixpath.join(data_dir, d) for d in _SPLIT_DIRS[split]]
    existing = [
        name
        for name, path in zip(_SPLIT_DIRS[split], candidates)
        if tf.io.gfile.isdir(path)
    ]
    if not existing:
        raise FileNotFoundError(
            f"Expected a directory for split {split!r} at one of {candidates}, "
            "found none."
        )
    paths, labels, _ = image_folder.list_image_folder(
        data_dir, existing[0], classes=list(info.class_names)
    )
    return paths, labels


def _image_files(
    info, split, data_dir, size, training, policy, seed, context, skipped, start=None
):
    """Unbatched decoded, transformed images of a file-based split."""
    paths, labels = _list_files(info, split, data_dir)
    labels = np.int32(labels)
    if context is not None:
        shard = slice(context.input_pipeline_id, None, context.num_input_pipelines)
        paths, labels = list(paths)[shard], labels[shard]
    if training and start is not None:
        dataset = augment_lib.keyed_examples((paths, labels), seed, start)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
        if training:
            # The whole list: it is sorted by class, so a smaller buffer would fill
            # each batch from a few classes. Paths are small enough to hold.
            dataset = dataset.shuffle(
                len(paths), seed=seed, reshuffle_each_iteration=True
            )
            dataset = tf.data.Dataset.zip(
                dataset, augment_lib.element_seeds(seed)
            ).map(lambda example, element_seed: (*example, element_seed))
    dataset = dataset.map(
        lambda path, *rest: (path, tf.io.read_file(path), *rest),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    dataset = dataset.filter(
        lambda path, data, *rest: skipped.keep_complete(path, data)
    )
    data = SPECS[info.name]
    if training:
        transform = _train_transform(data.imagenet_like, info.channels, size, policy)
    else:
        transform = eval_map(EvalTransform(size, info.channels, data.crop_fraction))
    # Files that look complete but still fail to decode are named and counted too.
    return skipped.map_or_skip(dataset, transform)


def _train_transform(imagenet_like, channels, size, policy):
    """The map function from (path, bytes, label, seed) to a training example."""

    def transform(path, data, label, seed):
        crop_seed, flip_seed, policy_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3)
        )
        image = decode_image(data, channels)
        if imagenet_like:
            image = augment_lib.random_resized_crop(image, size, seed=crop_seed)
        else:
            image = augment_lib.resize(image, size)
            image = augment_lib.padded_random_crop(image, size, seed=crop_seed)
        image = augment_lib.random_flip(image, seed=flip_seed)
        image = augment_lib.apply_policy(image, policy, seed=policy_seed)
        return _to_unit_float(image), label

    return transform


def eval_map(image_transform):
    """The `Dataset.map` function from (path, file bytes, label) to an evaluation
    example (image in [0, 1], label) through an `EvalTransform`."""

    def transform(path, data, label):
        return image_transform.file_bytes(data), label

    return transform


def crop_fraction(name):
    """The evaluation crop of a data set (`EvalTransform.crop_fraction`)."""
    return spec(name).crop_fraction


def _to_unit_float(image):
    """uint8 [0, 255] to float32 [0, 1]."""
    return tf.cast(image, tf.float32) / 255.0
