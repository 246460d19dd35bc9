"""Image decoding, a cheap completeness check, and a counter of skipped files."""

import sys

import tensorflow as tf

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The IEND chunk: zero length, type "IEND", then its fixed CRC.
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_GIF_MAGIC = b"GIF8"  # GIF87a and GIF89a
_BMP_MAGIC = b"BM"
_RIFF_MAGIC = b"RIFF"
_WEBP_MAGIC = b"WEBP"  # at offset 8, after the RIFF size
# Trailing zero bytes this long are forgiven after a JPEG or PNG's end marker:
# files padded to a 4 KiB disk block or page decode fine, so they should not be
# skipped. Longer runs of zeros look like a preallocated, unfinished download.
_MAX_ZERO_PADDING = 4096


def decode_image(image_bytes, channels):
    """Decodes JPEG, PNG, GIF, BMP or WebP bytes to a `channels`-channel image.

    Grayscale sources are replicated to RGB, colour sources are converted to
    luma, and alpha is dropped, so grayscale and CMYK JPEGs, RGBA and grey
    PNGs all come out alike. TensorFlow's JPEG decoder converts CMYK to RGB
    itself (within rounding of Pillow's conversion). Animated GIFs give their
    first frame.

    Args:
        image_bytes: Scalar string tensor, the encoded file.
        channels: 3 for RGB or 1 for grayscale.

    Returns:
        A uint8 tensor of shape `(height, width, channels)`.

    Raises:
        ValueError: If `channels` is not 1 or 3.
    """
    if channels not in (1, 3):
        raise ValueError(f"Expected channels to be 1 or 3. Received: {channels!r}")
    # channels=0 (as stored) because asking for 3 fails on RGBA WebP and asking
    # for 1 fails on GIF, BMP and CMYK JPEG; the conversion below covers all.
    image = tf.io.decode_image(image_bytes, channels=0, expand_animations=False)
    return to_channels(image, channels)


def to_channels(image, channels):
    """A uint8 image (or batch) with 1, 2, 3 or 4 channels as `channels` channels.

    Grey (and grey + alpha) is replicated to RGB, colour is converted to luma
    (`tf.image.rgb_to_grayscale`), alpha is dropped. `decode_image` and the
    SavedModel's image inputs both go through it, so a served model sees the pixels
    an evaluated one does.

    Args:
        image: uint8 (H, W, C) or (B, H, W, C).
        channels: 3 for RGB or 1 for grayscale.

    Returns:
        uint8 (..., H, W, channels).
    """
    if channels not in (1, 3):
        raise ValueError(f"Expected channels to be 1 or 3. Received: {channels!r}")
    is_colour = tf.shape(image)[-1] >= 3
    if channels == 3:
        image = tf.cond(
            is_colour,
            lambda: image[..., :3],
            lambda: tf.image.grayscale_to_rgb(image[..., :1]),
        )
    else:
        image = tf.cond(
            is_colour,
            lambda: tf.image.rgb_to_grayscale(image[..., :3]),
            lambda: image[..., :1],
        )
    return tf.ensure_shape(image, [*image.shape[:-1], channels])


def looks_complete(image_bytes):
    """Whether the bytes look like a whole image file, without decoding them.

    A JPEG must start with SOI (FF D8) and end with EOI (FF D9); a PNG must
    start with its signature and end with the IEND chunk. Up to 4 KiB of zero
    padding after those end markers is allowed. GIF, BMP and WebP are only
    checked for their magic number. Truncated JPEGs and PNGs fail.

    Args:
        image_bytes: Scalar string tensor, the file's contents.

    Returns:
        A scalar bool tensor.
    """
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    length = tf.strings.length(image_bytes)
    tail_start = tf.maximum(length - _MAX_ZERO_PADDING, 0)
    tail = tf.io.decode_raw(
        tf.strings.substr(image_bytes, tail_start, _MAX_ZERO_PADDING), tf.uint8
    )
    is_zero = tf.cast(tf.reverse(tail, [0]) == 0, tf.int32)
    end = length - tf.reduce_sum(tf.math.cumprod(is_zero))

    def starts_with(magic, pos=0):
        # Substr fails on a start past the end; clamp it (files that short fail).
        pos = tf.minimum(pos, length)
        return tf.strings.substr(image_bytes, pos, len(magic)) == magic

    def ends_with(marker):
        pos = tf.maximum(end - len(marker), 0)
        return tf.strings.substr(image_bytes, pos, len(marker)) == marker

    jpeg = starts_with(_JPEG_START) & ends_with(_JPEG_END)
    png = starts_with(_PNG_SIGNATURE) & ends_with(_PNG_END)
    gif = starts_with(_GIF_MAGIC)
    bmp = starts_with(_BMP_MAGIC)
    webp = starts_with(_RIFF_MAGIC) & starts_with(_WEBP_MAGIC, 8)
    return jpeg | png | gif | bmp | webp


def _zeros_of(spec):
    """Zeros of a `tf.TensorSpec`, with 0 for each unknown dimension."""
    shape = [0 if size is None else size for size in spec.shape.as_list()]
    return tf.zeros(shape, spec.dtype)


class SkippedFiles:
    """Counts (and names on stderr) the files that a pipeline drops.

    Create it outside any distribution strategy's scope, so that the counter is
    a plain variable on the host that runs the input pipeline.
    """

    def __init__(self):
        self._count = tf.Variable(0, dtype=tf.int64, trainable=False)

    def keep_complete(self, path, image_bytes):
        """Filter predicate: True for complete-looking files, else logs and counts.

        Args:
            path: Scalar string tensor, the file's path (for the message).
            image_bytes: Scalar string tensor, the file's contents.

        Returns:
            A scalar bool tensor, for `tf.data.Dataset.filter`.
        """

        def skip():
            # Joined first: tf.print would quote a string tensor of its own.
            message = tf.strings.join(["Skipping unreadable image: ", path])
            tf.print(message, output_stream=sys.stderr)
            self._count.assign_add(1)
            return tf.constant(False)

        return tf.cond(looks_complete(image_bytes), lambda: tf.constant(True), skip)

    def map_or_skip(self, dataset, transform):
        """`dataset.map(transform)`, dropping the elements whose transform fails.

        For a file that passes `keep_complete` but still fails to decode: it is
        named on stderr and counted like an incomplete file. Order is kept.

        Args:
            dataset: A `tf.data.Dataset` of `(path, image_bytes, *rest)`.
            transform: The map function of those elements, e.g. a decode.

        Returns:
            The `tf.data.Dataset` of `transform`'s outputs.
        """

        def attempt(path, *rest):
            # One element in a dataset of its own: ignore_errors drops it when the
            # transform fails, and the placeholder behind it then comes out instead.
            done = (
                tf.data.Dataset.from_tensors((path, *rest))
                .map(lambda *element: (element[0], transform(*element), True))
                .ignore_errors()
            )
            placeholder = tf.nest.map_structure(_zeros_of, done.element_spec[1])
            failed = tf.data.Dataset.from_tensors((path, placeholder, False))
            return done.concatenate(failed).take(1)

        def keep(path, output, decoded):
            def skip():
                message = tf.strings.join(["Skipping unreadable image: ", path])
                tf.print(message, output_stream=sys.stderr)
                self._count.assign_add(1)
                return tf.constant(False)

            return tf.cond(decoded, lambda: tf.constant(True), skip)

        dataset = dataset.interleave(
            attempt,
            cycle_length=tf.data.AUTOTUNE,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return dataset.filter(keep).map(lambda path, output, decoded: output)

    def count(self):
        """The number of files skipped so far, as an int."""
        return int(self._count.numpy())

    def reset(self):
        """Sets the count back to zero."""
        self._count.assign(0)
