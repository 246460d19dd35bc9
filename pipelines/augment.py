"""Geometric augmentation and the augmentation-policy switch.

Every op takes and returns a uint8 `(height, width, channels)` image and is
made of graph ops, so it runs eagerly and inside `tf.data.Dataset.map`.

The random ops draw statelessly from a `seed` (an int tensor of shape [2]).
In tf.data give each element its own seed from `element_seeds`:
stateful tf.random ops restart on each new iterator once a global seed is set,
and Keras' `fit` makes a new iterator each epoch, so every epoch would see the
same flips and crops. Without a seed, one is drawn statefully (fine eagerly).
"""

import functools

import keras
import tensorflow as tf

POLICIES = ("autoaugment", "randaugment", "none")


def element_seeds(seed):
    """An endless dataset of int64 seeds of shape [2], new on each pass.

    Zip it with a dataset to give each element its own seed.

    Args:
        seed: Optional int that makes the stream reproducible.

    Returns:
        A `tf.data.Dataset` of int64 tensors of shape [2].
    """
    # Offset: a shuffle in the same pipeline is seeded with `seed` too, and the
    # two should not share a random stream.
    seed = None if seed is None else seed + 1
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return draws.batch(2)


def keyed_order(num_examples, seed=None, start=0):
    """An endless, resumable stream of `(index, key)` over passes through a data set.

    Pass p visits each of the `num_examples` indices once, in the order of a
    permutation keyed by `(seed, p)`; each element's key (an int64 seed of shape
    [2] for the stateless augmentation ops) is a function of `(seed, p, index)`.
    Element k of the stream is therefore the same whether the stream starts at 0
    or at `start` <= k, which is what lets an interrupted run resume with exactly
    the data an uninterrupted one would have seen: `start` skips whole passes for
    free and, within a pass, only cheap index arithmetic (no file is read).

    Args:
        num_examples: int > 0, the size of the data set (or of this shard).
        seed: Optional int; None draws one (the stream is then not reproducible).
        start: int >= 0, the first element of the stream to yield.

    Returns:
        A `tf.data.Dataset` of `(index, key)`: int64 scalars and int64 [2] tensors.
    """
    if not isinstance(num_examples, int) or num_examples < 1:
        raise ValueError(f"Expected num_examples > 0. Received: {num_examples!r}")
    if not isinstance(start, int) or start < 0:
        raise ValueError(f"Expected start >= 0. Received: {start!r}")
    if seed is None:
        seed = int(tf.random.uniform([], maxval=tf.int32.max, dtype=tf.int32))
    size = tf.constant(num_examples, tf.int64)
    seed = tf.constant(seed, tf.int64)
    first_pass, offset = divmod(start, num_examples)

    def one_pass(number):
        def pick(position):
            index = tf.random.experimental.index_shuffle(
                position, tf.stack([seed, number]), size - 1
            )
            # Offset from the permutation's seed: the two should not share a stream.
            return index, tf.stack([seed + 1, number * size + index])

        return tf.data.Dataset.range(num_examples).map(pick)

    passes = tf.data.Dataset.range(first_pass, tf.int64.max)
    return passes.flat_map(one_pass).skip(offset)


def keyed_examples(columns, seed=None, start=0):
    """`keyed_order` over in-memory examples: an endless, resumable stream of
    `(*columns[i], key)`.

    Args:
        columns: Sequence of arrays (or lists) with one row per example, e.g.
            `(images, labels)` or `(paths, labels)`.
        seed, start: as for `keyed_order`.

    Returns:
        A `tf.data.Dataset` of `(*column values, key)`.
    """
    tensors = [tf.constant(column) for column in columns]
    return keyed_order(len(columns[0]), seed, start).map(
        lambda i, key: (*[tf.gather(tensor, i) for tensor in tensors], key)
    )


def _seed_or_draw(seed):
    """`seed`, or else a fresh stateful draw of one."""
    if seed is not None:
        return seed
    return tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)


def to_uint8(image):
    """Rounds a float image in [0, 255] to uint8, saturating outliers."""
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def resize(image, size):
    """Resizes to `size` x `size`, ignoring the aspect ratio.

    Args:
        image: uint8 (H, W, C), or a batch (B, H, W, C) of one size.
        size: int, the output side.

    Returns:
        uint8 (size, size, C), or (B, size, size, C).
    """
    # An image already at the size passes through untouched (e.g. ImageNet-C's
    # published pixels are evaluated as they are).
    at_size = tf.reduce_all(tf.shape(image)[-3:-1] == size)
    resized = tf.cond(
        at_size,
        lambda: image,
        # Antialiasing keeps downscaling close to PIL's (what torchvision uses).
        lambda: to_uint8(tf.image.resize(image, [size, size], antialias=True)),
    )
    return tf.ensure_shape(resized, [*image.shape[:-3], size, size, image.shape[-1]])


def random_resized_crop(
    image, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None
):
    """Crops a random area and aspect ratio, resized to `size` x `size`.

    The ImageNet training crop (torchvision's `RandomResizedCrop`); after 10
    failed draws the whole image is used.

    Args:
        image: uint8 (H, W, C).
        size: int, the output side.
        scale: Range of the crop's area as a fraction of the image's.
        ratio: Range of the crop's aspect ratio (width / height).
        seed: Optional int tensor of shape [2] (see the module docstring).

    Returns:
        uint8 (size, size, C).
    """
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=_seed_or_draw(seed),
        # The box is the whole image, so this is just the smallest area.
        min_object_covered=scale[0],
        aspect_ratio_range=ratio,
        area_range=scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.image.crop_to_bounding_box(
        image, begin[0], begin[1], crop_size[0], crop_size[1]
    )
    return resize(crop, size)


def random_flip(image, seed=None):
    """Flips left-right with probability 1/2.

    Args:
        image: uint8 (H, W, C).
        seed: Optional int tensor of shape [2] (see the module docstring).

    Returns:
        uint8 (H, W, C).
    """
    return tf.image.stateless_random_flip_left_right(image, _seed_or_draw(seed))


def center_crop_resize(image, size, crop_fraction=0.875):
    """The ImageNet evaluation transform: resize the shorter side, crop the centre.

    The shorter side becomes `round(size / crop_fraction)` (256 for 224, as in
    torchvision's `Resize(256)` + `CenterCrop(224)`), keeping the aspect ratio.

    Args:
        image: uint8 (H, W, C), or a batch (B, H, W, C) of one size.
        size: int, the output side.
        crop_fraction: The crop's share of the resized shorter side.

    Returns:
        uint8 (size, size, C), or (B, size, size, C).
    """
    resize_to = round(size / crop_fraction)
    height_width = tf.cast(tf.shape(image)[-3:-1], tf.float32)
    scaled = height_width * (resize_to / tf.reduce_min(height_width))
    # max() guards against rounding the shorter side just below resize_to.
    new_size = tf.maximum(tf.cast(tf.round(scaled), tf.int32), resize_to)
    resized = tf.image.resize(image, new_size, antialias=True)
    top, left = tf.unstack((new_size - size) // 2)
    crop = resized[..., top : top + size, left : left + size, :]
    return tf.ensure_shape(
        to_uint8(crop), [*image.shape[:-3], size, size, image.shape[-1]]
    )


def padded_random_crop(image, size, padding=4, seed=None):
    """Zero-pads each side by `padding`, then crops `size` x `size` at random.

    The Tiny ImageNet training crop (torchvision's `RandomCrop(64, padding=4)`).

    Args:
        image: uint8 (H, W, C), at least `size - 2 * padding` on each side;
            `size` x `size` is the intended input.
        size: int, the output side.
        padding: Pixels of zeros added on each side.
        seed: Optional int tensor of shape [2] (see the module docstring).

    Returns:
        uint8 (size, size, C).
    """
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    crop = tf.image.stateless_random_crop(
        padded, [size, size, tf.shape(image)[-1]], _seed_or_draw(seed)
    )
    return tf.ensure_shape(crop, [size, size, image.shape[-1]])


@functools.lru_cache(maxsize=None)
def _rand_augment():
    """The one RandAugment layer, built on first use (building one per call
    would add a new layer, and its random state, each time a map is traced)."""
    # float32 whatever the global dtype policy, e.g. mixed_bfloat16 on TPU.
    return keras.layers.RandAugment(value_range=(0, 255), dtype="float32")


def apply_policy(image, policy, seed=None):
    """Applies an augmentation policy.

    Args:
        image: uint8 (H, W, C) tensor, C = 3 or 1.
        policy: "autoaugment" (`pipelines.autoaugment.autoaugment`, the
            ImageNet policy), "randaugment" (Keras' `RandAugment` with its
            defaults: 2 ops, magnitude factor up to 0.5) or "none".
        seed: Optional int tensor of shape [2] for "autoaugment" (see the
            module docstring). Keras' `RandAugment` takes no per-call seed: it
            draws from its own generator, which is new on each pass over a
            dataset and reproducible under `keras.utils.set_random_seed`.

    Returns:
        uint8 image of the same shape.

    Raises:
        ValueError: If the policy is unknown.
    """
    if policy not in POLICIES:
        raise ValueError(f"Expected policy in {POLICIES}. Received: {policy!r}")
    if policy == "none":
        return image
    if policy == "autoaugment":
        # Imported on use: only this policy needs the module.
        from pipelines.autoaugment import autoaugment

        return autoaugment(image, seed=seed)
    augmented = _rand_augment()(image)
    return tf.ensure_shape(to_uint8(augmented), image.shape)
