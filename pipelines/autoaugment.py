"""AutoAugment's ImageNet policy as TensorFlow graph ops on uint8 images.

Use it inside an input pipeline, on one uint8 image (H, W, C) at a time, before
any conversion to float. For a new augmentation of each image in each epoch,
reproducible under ``keras.utils.set_random_seed``, give it per-element seeds
that ``tf.data`` re-draws on each pass over the data::

    from pipelines.autoaugment import autoaugment

    seeds = tf.data.Dataset.random(rerandomize_each_iteration=True).batch(
        2, drop_remainder=True
    )
    dataset = tf.data.Dataset.zip(dataset, seeds).map(
        lambda example, seed: (autoaugment(example[0], seed=seed), example[1]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )

Without a seed (``dataset.map(lambda image, label: (autoaugment(image),
label))``) it draws with stateful ``tf.random`` ops: a different augmentation
for each image, reproducible too, but once a global seed is set TensorFlow
restarts those ops on each new iterator over the dataset, and Keras' ``fit``
makes a new one each epoch (unless given ``steps_per_epoch``), so every epoch
would see the same augmentations.

Every op is plain TensorFlow (no ``tf.py_function``, numpy or PIL at run time),
so it runs in the tf.data graph; only the chosen sub-policy's branch runs.

The policy and the magnitude of each bin are those of torchvision's
``AutoAugment(AutoAugmentPolicy.IMAGENET)`` (the policy of Cubuk et al., 2018,
as in the original TensorFlow implementation). The pixel ops follow PIL /
torchvision on uint8 images. Conventions where the references differ:

- Geometric ops (shear, translate, rotate) fill the area they uncover with gray
  128 in every channel, as the original TensorFlow implementation does
  (torchvision fills with black by default).
- They sample with nearest-neighbour interpolation, torchvision's default.
- Rotation is about the image centre, counter-clockwise for positive angles
  (as PIL and torchvision). Shear is about the top-left corner of the image,
  as torchvision's AutoAugment (``center=[0, 0]``) and the original
  implementation's PIL transform ``(1, level, 0, 0, 1, 0)``: positive ``level``
  moves row ``y`` by ``-level * y`` pixels.
- Translation by a positive number of pixels moves the content right (x) or
  down (y), as torchvision.
- The pixel ops reproduce PIL's uint8 arithmetic (fixed-point luma, rounded
  smoothing, truncating blends, Contrast's rounded mean), so they match PIL
  exactly; torchvision's tensor path (float luma, unrounded mean) can differ
  from it by a level.
"""

import math

import tensorflow as tf

# Gray that geometric ops leave where no input pixel lands (original TF choice).
FILL_VALUE = 128

# The 25 sub-policies of torchvision's AutoAugmentPolicy.IMAGENET, in its order:
# (op name, probability of applying it, magnitude bin in 0..9 or None).
IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)


def _check_image(image):
    """Returns `image` as a tensor after checking it is a uint8 (H, W, 1 or 3)."""
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise ValueError(
            f"AutoAugment ops take uint8 images; received dtype {image.dtype.name}. "
            "Apply them before converting the image to float."
        )
    if image.shape.rank != 3:
        raise ValueError(
            "AutoAugment ops take one image of rank 3 (height, width, channels); "
            f"received shape {image.shape}. Map them over a batch instead."
        )
    if image.shape[-1] not in (1, 3):
        raise ValueError(
            "AutoAugment ops take images with 1 or 3 (statically known) channels; "
            f"received shape {image.shape}."
        )
    return image


def _to_uint8(values, like):
    """Clips float `values` to 0..255 and truncates to uint8 (as PIL's blend)."""
    out = tf.cast(tf.clip_by_value(values, 0.0, 255.0), tf.uint8)
    # Ops built from tf.shape (fill, pad) can lose the static shape of `like`.
    return tf.ensure_shape(out, like.shape)


def _blend(degenerate, image, factor):
    """PIL's ImageEnhance: interpolates (factor < 1) or extrapolates (> 1) from
    `degenerate` towards `image`; both float32."""
    return degenerate + tf.cast(factor, tf.float32) * (image - degenerate)


def _grayscale(image):
    """PIL's convert("L") as int32 (H, W, 1): ITU-R 601-2 luma, rounded."""
    image = tf.cast(image, tf.int32)
    if image.shape[-1] == 1:
        return image
    # Fixed-point weights and rounding exactly as PIL, so results match it bit for bit.
    weights = tf.constant([19595, 38470, 7471], tf.int32)
    luma = tf.reduce_sum(image * weights, axis=-1, keepdims=True)
    return tf.bitwise.right_shift(luma + 0x8000, 16)


def _transform(image, transform):
    """Resamples `image` (nearest, gray fill) with the 8-vector projective
    `transform` that maps output pixel (x, y) to the input point it reads."""
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=tf.reshape(tf.stack(transform), [1, 8]),
        output_shape=tf.shape(image)[:2],
        fill_value=tf.constant(FILL_VALUE, tf.float32),
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )[0]
    return tf.ensure_shape(out, image.shape)


def _affine(image, a0, a1, a2, b0, b1, b2):
    """`_transform` for the affine map x_in = a0 x + a1 y + a2, y_in = b0 x + b1 y + b2."""
    values = [a0, a1, a2, b0, b1, b2, 0.0, 0.0]
    return _transform(image, [tf.cast(v, tf.float32) for v in values])


def shear_x(image, level):
    """Shears horizontally: output (x, y) reads input (x + level * y, y).

    As torchvision's AutoAugment, the shear is about the image's top-left corner
    (pixel corners at integers, so pixel centres are at +0.5).

    Args:
        image: uint8 tensor (H, W, C).
        level: shear factor (tangent of the shear angle); the policy uses up to 0.3.

    Returns:
        uint8 tensor of the same shape, uncovered pixels gray 128.
    """
    image = _check_image(image)
    level = tf.cast(level, tf.float32)
    return _affine(image, 1.0, level, 0.5 * level, 0.0, 1.0, 0.0)


def shear_y(image, level):
    """Shears vertically: output (x, y) reads input (x, y + level * x).

    Args:
        image: uint8 tensor (H, W, C).
        level: shear factor (tangent of the shear angle); the policy uses up to 0.3.

    Returns:
        uint8 tensor of the same shape, uncovered pixels gray 128.
    """
    image = _check_image(image)
    level = tf.cast(level, tf.float32)
    return _affine(image, 1.0, 0.0, 0.0, level, 1.0, 0.5 * level)


def translate_x(image, pixels):
    """Moves the content `pixels` to the right (left when negative).

    Args:
        image: uint8 tensor (H, W, C).
        pixels: shift in pixels; fractions round to the nearest pixel.

    Returns:
        uint8 tensor of the same shape, uncovered pixels gray 128.
    """
    image = _check_image(image)
    return _affine(image, 1.0, 0.0, -tf.cast(pixels, tf.float32), 0.0, 1.0, 0.0)


def translate_y(image, pixels):
    """Moves the content `pixels` down (up when negative).

    Args:
        image: uint8 tensor (H, W, C).
        pixels: shift in pixels; fractions round to the nearest pixel.

    Returns:
        uint8 tensor of the same shape, uncovered pixels gray 128.
    """
    image = _check_image(image)
    return _affine(image, 1.0, 0.0, 0.0, 0.0, 1.0, -tf.cast(pixels, tf.float32))


def rotate(image, degrees):
    """Rotates about the image centre, counter-clockwise for positive `degrees`.

    Args:
        image: uint8 tensor (H, W, C).
        degrees: rotation angle in degrees.

    Returns:
        uint8 tensor of the same shape, uncovered pixels gray 128.
    """
    image = _check_image(image)
    radians = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(radians), tf.sin(radians)
    shape = tf.cast(tf.shape(image), tf.float32)
    # Centre in pixel-index coordinates: the middle of the pixel grid.
    cx, cy = (shape[1] - 1.0) / 2.0, (shape[0] - 1.0) / 2.0
    # Inverse of the on-screen (y down) counter-clockwise rotation, about (cx, cy).
    return _affine(
        image,
        cos,
        -sin,
        cx - cos * cx + sin * cy,
        sin,
        cos,
        cy - sin * cx - cos * cy,
    )


def brightness(image, factor):
    """PIL's ImageEnhance.Brightness: blends with black (0 black, 1 unchanged).

    Args:
        image: uint8 tensor (H, W, C).
        factor: enhancement factor; the policy uses 1 +/- 0..0.9.

    Returns:
        uint8 tensor of the same shape.
    """
    image = _check_image(image)
    pixels = tf.cast(image, tf.float32)
    return _to_uint8(_blend(tf.zeros_like(pixels), pixels, factor), image)


def color(image, factor):
    """PIL's ImageEnhance.Color: blends with the grayscale image (0 gray, 1
    unchanged). The identity for grayscale images.

    Args:
        image: uint8 tensor (H, W, C).
        factor: enhancement factor; the policy uses 1 +/- 0..0.9.

    Returns:
        uint8 tensor of the same shape.
    """
    image = _check_image(image)
    if image.shape[-1] == 1:
        return image
    gray = tf.cast(_grayscale(image), tf.float32)
    return _to_uint8(_blend(gray, tf.cast(image, tf.float32), factor), image)


def contrast(image, factor):
    """PIL's ImageEnhance.Contrast: blends with the mean of the grayscale image,
    rounded to an integer as PIL does (0 uniform gray, 1 unchanged).

    Args:
        image: uint8 tensor (H, W, C).
        factor: enhancement factor; the policy uses 1 +/- 0..0.9.

    Returns:
        uint8 tensor of the same shape.
    """
    image = _check_image(image)
    mean = tf.round(tf.reduce_mean(tf.cast(_grayscale(image), tf.float32)))
    pixels = tf.cast(image, tf.float32)
    return _to_uint8(_blend(tf.fill(tf.shape(pixels), mean), pixels, factor), image)


def sharpness(image, factor):
    """PIL's ImageEnhance.Sharpness: blends with the image smoothed by
    [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (0 smooth, 1 unchanged, > 1 sharper).

    The smoothed image keeps the one-pixel border of the input, as PIL and
    torchvision, so the border never changes.

    Args:
        image: uint8 tensor (H, W, C).
        factor: enhancement factor; the policy uses 1 +/- 0..0.9.

    Returns:
        uint8 tensor of the same shape.
    """
    image = _check_image(image)
    channels = image.shape[-1]
    pixels = tf.cast(image, tf.float32)
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, tf.newaxis, tf.newaxis], [1, 1, channels, 1])
    smooth = tf.nn.depthwise_conv2d(
        pixels[tf.newaxis], kernel, strides=[1, 1, 1, 1], padding="VALID"
    )[0]
    # The smoothed image is itself a uint8 image in PIL and torchvision: round it.
    smooth = tf.round(smooth)
    border = [[1, 1], [1, 1], [0, 0]]
    interior = tf.pad(tf.ones_like(smooth, tf.bool), border)
    degenerate = tf.where(interior, tf.pad(smooth, border), pixels)
    return _to_uint8(_blend(degenerate, pixels, factor), image)


def posterize(image, bits):
    """Keeps the top `bits` bits of every pixel (8 unchanged, 0 black).

    Args:
        image: uint8 tensor (H, W, C).
        bits: number of bits to keep, 0..8 (a float is truncated).

    Returns:
        uint8 tensor of the same shape.
    """
    image = _check_image(image)
    bits = tf.clip_by_value(tf.cast(bits, tf.int32), 0, 8)
    # A mask rather than shifts: shifting a uint8 by 8 bits is undefined in TF.
    mask = 256 - tf.bitwise.left_shift(1, 8 - bits)
    return tf.cast(tf.bitwise.bitwise_and(tf.cast(image, tf.int32), mask), tf.uint8)


def solarize(image, threshold):
    """Inverts the pixels at or above `threshold` (in 0..255 units).

    Args:
        image: uint8 tensor (H, W, C).
        threshold: pixels >= threshold become 255 - pixel; 256 or more is a no-op.

    Returns:
        uint8 tensor of the same shape.
    """
    image = _check_image(image)
    above = tf.cast(image, tf.float32) >= tf.cast(threshold, tf.float32)
    return tf.where(above, 255 - image, image)


def invert(image):
    """Returns 255 - image.

    Args:
        image: uint8 tensor (H, W, C).

    Returns:
        uint8 tensor of the same shape.
    """
    return 255 - _check_image(image)


def auto_contrast(image):
    """Stretches each channel's min..max to 0..255 (truncating, as PIL and
    torchvision); a constant channel is left unchanged.

    Args:
        image: uint8 tensor (H, W, C).

    Returns:
        uint8 tensor of the same shape.
    """
    image = _check_image(image)
    pixels = tf.cast(image, tf.float32)
    low = tf.reduce_min(pixels, axis=[0, 1])
    high = tf.reduce_max(pixels, axis=[0, 1])
    # Multiply before dividing so the channel maximum maps to exactly 255.
    stretched = (pixels - low) * 255.0 / tf.maximum(high - low, 1.0)
    return _to_uint8(tf.where(high > low, stretched, pixels), image)


def equalize(image):
    """PIL's ImageOps.equalize: per-channel histogram equalization.

    For each channel, with `step = (pixel count - count of the largest value) //
    255`, value v maps to (step // 2 + number of pixels below v) // step, clipped
    to 255; a channel whose step is 0 (e.g. a single value) is unchanged.

    Args:
        image: uint8 tensor (H, W, C).

    Returns:
        uint8 tensor of the same shape.
    """
    image = _check_image(image)
    channels = image.shape[-1]
    values = tf.reshape(tf.cast(image, tf.int32), [-1, channels])
    # One histogram per channel in a single bincount: channel c counts in bins 256c..
    offsets = 256 * tf.range(channels)
    counts = tf.math.bincount(
        values + offsets, minlength=256 * channels, maxlength=256 * channels
    )
    histogram = tf.reshape(counts, [channels, 256])
    total = tf.shape(values)[0]
    # PIL drops the count of the largest value present (the last non-empty bin).
    last = tf.gather(histogram, tf.reduce_max(values, axis=0), batch_dims=1)
    step = (total - last) // 255
    below = tf.cumsum(histogram, axis=1, exclusive=True)
    safe_step = tf.maximum(step, 1)[:, tf.newaxis]
    lut = tf.minimum((below + safe_step // 2) // safe_step, 255)
    lut = tf.where(step[:, tf.newaxis] > 0, lut, tf.range(256)[tf.newaxis])
    out = tf.gather(tf.reshape(lut, [-1]), values + offsets)
    out = tf.reshape(tf.cast(out, tf.uint8), tf.shape(image))
    return tf.ensure_shape(out, image.shape)


def _linear(high):
    """Magnitude of a bin on torchvision's linspace(0, high, num_bins)."""
    return lambda image, level, num_bins: high * level / (num_bins - 1)


def _translate_magnitude(axis):
    """Translation of a bin: linspace(0, 150/331 * size along `axis`, num_bins),
    truncated to whole pixels as torchvision does."""

    def magnitude(image, level, num_bins):
        size = tf.cast(tf.shape(image)[axis], tf.float32)
        return tf.floor(150.0 / 331.0 * size * level / (num_bins - 1))

    return magnitude


def _posterize_bits(image, level, num_bins):
    # torchvision: 8 - round(arange(num_bins) / ((num_bins - 1) / 4)); Python's
    # round is half-to-even like torch.round.
    return 8 - round(level / ((num_bins - 1) / 4))


def _solarize_threshold(image, level, num_bins):
    # torchvision: linspace(255, 0, num_bins).
    return 255.0 - 255.0 * level / (num_bins - 1)


# Op name -> (function, magnitude of a bin or None, whether the sign is random).
_OPS = {
    "ShearX": (shear_x, _linear(0.3), True),
    "ShearY": (shear_y, _linear(0.3), True),
    "TranslateX": (translate_x, _translate_magnitude(1), True),
    "TranslateY": (translate_y, _translate_magnitude(0), True),
    "Rotate": (rotate, _linear(30.0), True),
    "Brightness": (brightness, _linear(0.9), True),
    "Color": (color, _linear(0.9), True),
    "Contrast": (contrast, _linear(0.9), True),
    "Sharpness": (sharpness, _linear(0.9), True),
    "Posterize": (posterize, _posterize_bits, False),
    "Solarize": (solarize, _solarize_threshold, False),
    "AutoContrast": (auto_contrast, None, False),
    "Equalize": (equalize, None, False),
    "Invert": (invert, None, False),
}

# Ops whose magnitude is an enhancement factor 1 + m rather than m itself.
_ENHANCE_OPS = ("Brightness", "Color", "Contrast", "Sharpness")


def _check_policy(policy, num_bins):
    """Raises ValueError unless `policy` is a sequence of known (name, p, bin)."""
    if num_bins < 2:
        raise ValueError(f"num_bins must be at least 2; received {num_bins}.")
    if not policy:
        raise ValueError("The policy has no sub-policies.")
    for sub_policy in policy:
        for name, prob, level in sub_policy:
            if name not in _OPS:
                raise ValueError(
                    f"Unknown op {name!r} in the policy; known ops: {sorted(_OPS)}."
                )
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f"Probability {prob} of {name} is not in [0, 1].")
            needs_level = _OPS[name][1] is not None
            if needs_level and not (isinstance(level, int) and 0 <= level < num_bins):
                raise ValueError(
                    f"{name} needs a magnitude bin in 0..{num_bins - 1}; "
                    f"received {level!r}."
                )


def _uniform(seeds, stream, maxval=None):
    """One scalar draw: uniform in [0, 1), or an int32 in [0, maxval).

    Without `seeds`, a stateful tf.random op. Otherwise a stateless op on
    `seeds[stream]`, one of the independent seeds split from the caller's.
    """
    dtype = tf.float32 if maxval is None else tf.int32
    minval = 0.0 if maxval is None else 0
    if seeds is None:
        return tf.random.uniform([], minval, maxval, dtype=dtype)
    return tf.random.stateless_uniform([], seeds[stream], minval, maxval, dtype=dtype)


def _apply_op(image, name, prob, level, num_bins, seeds, stream):
    """Applies op `name` at magnitude bin `level` with probability `prob`,
    drawing from `stream` (coin) and `stream + 1` (sign)."""
    function, magnitude_of, signed = _OPS[name]

    def apply():
        if magnitude_of is None:
            return function(image)
        magnitude = tf.cast(magnitude_of(image, level, num_bins), tf.float32)
        if signed:
            flip = _uniform(seeds, stream + 1) < 0.5
            magnitude = tf.where(flip, -magnitude, magnitude)
        if name in _ENHANCE_OPS:
            magnitude = 1.0 + magnitude
        return function(image, magnitude)

    return tf.cond(_uniform(seeds, stream) < prob, apply, lambda: image)


def autoaugment(image, policy=IMAGENET_POLICY, num_bins=10, seed=None):
    """Applies one randomly chosen AutoAugment sub-policy to one image.

    Picks a sub-policy uniformly, then applies each of its ops with its
    probability, at the magnitude of its bin and, for shear, translate, rotate
    and the enhance ops, with a random sign (as torchvision's AutoAugment).
    Only the chosen sub-policy runs (`tf.switch_case`).

    Args:
        image: uint8 tensor (H, W, C) with C = 3 (or 1).
        policy: sequence of sub-policies, each a sequence of
            (op name, probability, magnitude bin or None); default the ImageNet
            policy.
        num_bins: number of magnitude bins the policy's bins index.
        seed: None for stateful tf.random draws; or an integer tensor of shape
            [2] for stateless draws, the same seed giving the same augmentation
            (see the module docstring for per-epoch seeds in tf.data).

    Returns:
        uint8 tensor with the static shape of `image`.

    Raises:
        ValueError: for an image that is not uint8 of rank 3 with 1 or 3
            channels, a malformed policy or a seed that is not 2 integers.
    """
    image = _check_image(image)
    _check_policy(policy, num_bins)
    seeds = None
    if seed is not None:
        seed = tf.convert_to_tensor(seed)
        if not (seed.dtype.is_integer and seed.shape.is_compatible_with([2])):
            raise ValueError(
                "seed must be None or an integer tensor of shape [2]; received "
                f"dtype {seed.dtype.name} and shape {seed.shape}."
            )
        # Stream 0 picks the sub-policy; op i draws on streams 2i + 1 and 2i + 2.
        num_streams = 1 + 2 * max(len(sub_policy) for sub_policy in policy)
        seeds = tf.random.experimental.stateless_split(seed, num_streams)

    def branch(sub_policy):
        def run():
            out = image
            for i, (name, prob, level) in enumerate(sub_policy):
                out = _apply_op(out, name, prob, level, num_bins, seeds, 2 * i + 1)
            return out

        return run

    index = _uniform(seeds, 0, maxval=len(policy))
    out = tf.switch_case(index, [branch(sub_policy) for sub_policy in policy])
    return tf.ensure_shape(out, image.shape)
