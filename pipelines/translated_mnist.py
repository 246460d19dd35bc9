"""Translated MNIST (the paper's Appendix B): digits at random places on a canvas.

The four IDX files of MNIST or Fashion-MNIST are read from a directory, from
Debian's `dataset-fashion-mnist` package, or from Keras' download cache.
"""

import gzip
import posixpath

import keras
import numpy as np
import tensorflow as tf

from pipelines.augment import element_seeds, keyed_examples

VARIANTS = ("mnist", "fashion_mnist")
SPLITS = ("train", "validation", "test")
# Where Debian's `dataset-fashion-mnist` package puts the four files.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
DIGIT_SIZE = 28
NUM_CLASSES = 10
# File stem for each array, and the IDX magic number it must carry: 0x08 is
# "unsigned byte", the low byte the number of dimensions.
_IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", 0x0803),
    "train_labels": ("train-labels-idx1-ubyte", 0x0801),
    "test_images": ("t10k-images-idx3-ubyte", 0x0803),
    "test_labels": ("t10k-labels-idx1-ubyte", 0x0801),
}
# MNIST's 60,000 training images give 55,000 for training and 5,000 for
# validation: the validation split is the last twelfth of the training file.
_VALIDATION_FRACTION = 12


def load_idx(data_dir=None, variant="mnist"):
    """Loads the four MNIST-format arrays.

    Sources, in order: `data_dir` if given; for "fashion_mnist", Debian's
    `/usr/share/datasets/fashion-mnist` if present; Keras' `load_data()`,
    which downloads when online.

    Args:
        data_dir: Optional directory (local or `gs://`) holding the four IDX
            files, gzipped (`*.gz`) or not.
        variant: "mnist" or "fashion_mnist".

    Returns:
        A dict of uint8 arrays: `train_images` (N, 28, 28), `train_labels`
        (N,), `test_images` (M, 28, 28) and `test_labels` (M,).

    Raises:
        ValueError: If `variant` is unknown or a file is not valid IDX.
        FileNotFoundError: If files are missing from `data_dir`, or no source
            works; the message says how to get the files.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Expected variant in {VARIANTS}. Received: {variant!r}")
    if data_dir is not None:
        return read_idx_dir(data_dir)
    if variant == "fashion_mnist" and tf.io.gfile.isdir(DEBIAN_FASHION_MNIST):
        return read_idx_dir(DEBIAN_FASHION_MNIST)
    try:
        (train_x, train_y), (test_x, test_y) = getattr(
            keras.datasets, variant
        ).load_data()
    except Exception as error:  # offline, proxy, corrupt cache: all end here
        raise FileNotFoundError(_how_to_get(variant, error)) from error
    arrays = dict(
        train_images=train_x,
        train_labels=train_y,
        test_images=test_x,
        test_labels=test_y,
    )
    return {key: np.asarray(value, np.uint8) for key, value in arrays.items()}


def _how_to_get(variant, error):
    """The message for when no source of the IDX files works."""
    names = ", ".join(f"{stem}.gz" for stem, _ in _IDX_FILES.values())
    debian = (
        "install Debian's package (`apt-get install dataset-fashion-mnist`), or "
        if variant == "fashion_mnist"
        else ""
    )
    return (
        f"Could not load {variant}: keras.datasets.{variant}.load_data() failed "
        f"({type(error).__name__}: {error}). To get the data, {debian}pass "
        f"--data_dir=DIR with the four IDX files ({names}; un-gzipped works too)."
    )


def read_idx_dir(data_dir):
    """Reads and checks the four IDX files in `data_dir`.

    Args:
        data_dir: Directory (local or `gs://`) holding the files named in
            `load_idx`, gzipped or not.

    Returns:
        The dict of arrays that `load_idx` returns.

    Raises:
        FileNotFoundError: Naming every missing file.
        ValueError: If a file is not valid IDX or the files disagree.
    """
    paths, missing = {}, []
    for key, (stem, _) in _IDX_FILES.items():
        path = posixpath.join(data_dir, stem)
        if tf.io.gfile.exists(path + ".gz"):
            paths[key] = path + ".gz"
        elif tf.io.gfile.exists(path):
            paths[key] = path
        else:
            missing.append(f"{stem}.gz")
    if missing:
        raise FileNotFoundError(
            f"Expected IDX files {missing} (or un-gzipped) in {data_dir}."
        )
    arrays = {key: read_idx(path, _IDX_FILES[key][1]) for key, path in paths.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
            raise ValueError(
                f"Expected {DIGIT_SIZE}x{DIGIT_SIZE} images in {paths[f'{part}_images']}"
                f", found shape {images.shape}."
            )
        if len(images) != len(labels):
            raise ValueError(
                f"{paths[f'{part}_images']} holds {len(images)} images but "
                f"{paths[f'{part}_labels']} holds {len(labels)} labels."
            )
        if labels.size and labels.max() >= NUM_CLASSES:
            raise ValueError(
                f"Expected labels below {NUM_CLASSES} in {paths[f'{part}_labels']}, "
                f"found {labels.max()}."
            )
    return arrays


def read_idx(path, expected_magic):
    """Reads one IDX file of unsigned bytes into an array.

    Args:
        path: The file, gunzipped first if its name ends in `.gz`.
        expected_magic: The magic number it must start with (0x0803 for
            images, 0x0801 for labels).

    Returns:
        A uint8 array with the file's dimensions.

    Raises:
        ValueError: Naming the file, if it does not decompress, has another
            magic number, or its size disagrees with its header.
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise ValueError(f"Could not gunzip IDX file {path}: {error}") from error
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise ValueError(
            f"Expected IDX magic number {expected_magic:#06x} at the start of "
            f"{path}, found {magic:#06x}."
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    if len(data) != header + int(np.prod(shape)):
        raise ValueError(
            f"IDX file {path} has a header for shape {shape} ({header} + "
            f"{int(np.prod(shape))} bytes) but holds {len(data)} bytes."
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def select_split(arrays, split):
    """`(images, labels)` of one split of `load_idx`'s arrays.

    Args:
        arrays: The dict from `load_idx`.
        split: "train" (the training file less its last twelfth: 55,000 of
            MNIST's 60,000), "validation" (that last twelfth) or "test".

    Returns:
        `(images, labels)`, uint8 arrays.

    Raises:
        ValueError: If the split is unknown.
    """
    if split not in SPLITS:
        raise ValueError(f"Expected split in {SPLITS}. Received: {split!r}")
    if split == "test":
        return arrays["test_images"], arrays["test_labels"]
    images, labels = arrays["train_images"], arrays["train_labels"]
    num_train = len(images) - len(images) // _VALIDATION_FRACTION
    if split == "train":
        return images[:num_train], labels[:num_train]
    return images[num_train:], labels[num_train:]


def translated_dataset(
    images,
    labels,
    training,
    seed,
    canvas_size=112,
    noise_std=0.0,
    input_context=None,
    start=None,
):
    """Places each digit at a uniformly random position on a black canvas.

    In training the positions (and noise) are drawn anew on every pass over
    the dataset, in an order that `seed` makes reproducible, and the examples
    are shuffled. In evaluation they are a function of `(seed, index)`, the
    same on every pass and under any sharding.

    Args:
        images: uint8 array (N, 28, 28) or (N, 28, 28, 1).
        labels: int array (N,).
        training: Whether to shuffle and redraw positions each pass.
        seed: int or None. None in evaluation means 0, so that the evaluation
            set is fixed; in training it means unseeded.
        canvas_size: Side of the square canvas; 112 is the paper's.
        noise_std: If > 0, zero-mean Gaussian noise of this standard deviation
            is added and the result clipped to [0, 1] (0.3 is the paper's
            GT-MNIST).
        input_context: Optional `tf.distribute.InputContext`; each input
            pipeline keeps every `num_input_pipelines`-th example.
        start: Training only. None: one pass, reshuffled on every iteration.
            An int: an endless stream in which pass p's order, positions and
            noise are a function of `(seed, p)`, beginning at its `start`-th
            example (see `augment.keyed_order`); a resumed run passes the
            number of examples it has already trained on.

    Returns:
        An unbatched `tf.data.Dataset` of `(image, label)`: float32
        (canvas_size, canvas_size, 1) in [0, 1] and int32.

    Raises:
        ValueError: On bad shapes, a canvas smaller than a digit, or a
            negative `noise_std`.
    """
    images = np.asarray(images, np.uint8)
    labels = np.asarray(labels, np.int32)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE, 1) or len(images) != len(labels):
        raise ValueError(
            f"Expected images (N, {DIGIT_SIZE}, {DIGIT_SIZE}) and labels (N,). "
            f"Received: images {images.shape}, labels {labels.shape}"
        )
    if not isinstance(canvas_size, int) or canvas_size < DIGIT_SIZE:
        raise ValueError(
            f"Expected canvas_size to be an int >= {DIGIT_SIZE}. "
            f"Received: {canvas_size!r}"
        )
    if noise_std < 0:
        raise ValueError(f"Expected noise_std >= 0. Received: {noise_std!r}")
    # Global indices key the evaluation positions, so sharding does not move them.
    indices = np.arange(len(images), dtype=np.int64)
    if input_context is not None:
        shard = slice(
            input_context.input_pipeline_id, None, input_context.num_input_pipelines
        )
        images, labels, indices = images[shard], labels[shard], indices[shard]
    if training and start is not None:
        dataset = keyed_examples((images, labels), seed, start)
    elif training:
        # A full shuffle: the 28x28 uint8 digits are small enough to hold.
        dataset = tf.data.Dataset.from_tensor_slices((images, labels))
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, element_seeds(seed)).map(
            lambda example, key: (*example, key)
        )
    else:
        eval_seed = tf.constant(0 if seed is None else seed, tf.int64)
        dataset = tf.data.Dataset.from_tensor_slices((images, labels, indices)).map(
            lambda image, label, index: (image, label, tf.stack([eval_seed, index]))
        )

    def place(image, label, key):
        offsets, noise_key = _offsets(key, canvas_size)
        canvas = tf.image.pad_to_bounding_box(
            tf.cast(image, tf.float32) / 255.0,
            offsets[0],
            offsets[1],
            canvas_size,
            canvas_size,
        )
        if noise_std > 0:
            noise = tf.random.stateless_normal(
                canvas.shape, noise_key, stddev=noise_std
            )
            canvas = tf.clip_by_value(canvas + noise, 0.0, 1.0)
        return canvas, label

    return dataset.map(place, num_parallel_calls=tf.data.AUTOTUNE)


def _offsets(key, canvas_size):
    """(row, column) of an item's top-left pixel from its key, and the noise key."""
    offset_key, noise_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    offsets = tf.random.stateless_uniform(
        [2],
        offset_key,
        minval=0,
        maxval=canvas_size - DIGIT_SIZE + 1,
        dtype=tf.int32,
    )
    return offsets, noise_key


def object_boxes(num_examples, seed, canvas_size=112):
    """The item boxes of the first `num_examples` images of an evaluation split.

    Evaluation positions are a function of `(seed, index)` (`translated_dataset`
    with `training=False`), so the boxes are recomputed here without the images.

    Args:
        num_examples: int, how many (from index 0).
        seed: the evaluation seed given to `translated_dataset` (None means 0).
        canvas_size: side of the canvas.

    Returns:
        float64 array (num_examples, 4) of (top, left, bottom, right) in pixels, the
        convention of `mgnet_tf.localization`.
    """
    eval_seed = tf.constant(0 if seed is None else seed, tf.int64)
    keys = tf.stack(
        [tf.fill([num_examples], eval_seed), tf.range(num_examples, dtype=tf.int64)],
        axis=1,
    )
    offsets = tf.map_fn(
        lambda key: _offsets(key, canvas_size)[0],
        keys,
        fn_output_signature=tf.int32,
    ).numpy()
    return np.concatenate([offsets, offsets + DIGIT_SIZE], axis=1).astype(np.float64)
