"""Common corruptions (ImageNet-C): read the published files, or corrupt on the fly.

Two sources of corrupted evaluation batches, both `(images, labels)` with float32
images in [0, 1] and int32 labels, like `build_dataset`:

* `imagenet_c_dataset` reads files in the ImageNet-C layout
  `<root>/<corruption>/<severity>/<class>/<image>` (ImageNet-C, ImageNet100-C,
  Tiny-ImageNet-C), labelled by the model's class list.
* `corrupted_dataset` corrupts the batches of an evaluation dataset with the
  `imagecorruptions-imaug` package (the ImageNet-C code, working with NumPy 2),
  reproducibly for a seed. The published sets were also saved as JPEG after
  corrupting, which the on-the-fly path does not do.

The on-the-fly path needs an optional install (`INSTALL_COMMAND`); the file
path does not. This module is the data side and does not import `mgnet_tf`.
"""

import inspect
import operator
import posixpath
import threading

import numpy as np
import tensorflow as tf

from pipelines import IMAGENET_CROP_FRACTION, eval_map, image_folder
from pipelines.decode import SkippedFiles
from pipelines.transform import EvalTransform

# The benchmark's order (Hendrycks & Dietterich, 2019): noise, blur, weather,
# digital. Tables of mCE list them in this order.
CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
SEVERITIES = (1, 2, 3, 4, 5)
# opencv-python (the GUI build that imagecorruptions-imaug requires) needs
# libGL, absent on servers; the headless build provides the same `cv2`, so the
# package itself goes in without its dependency list.
INSTALL_COMMAND = (
    "pip install opencv-python-headless scikit-image scipy numba pillow && "
    "pip install --no-deps imagecorruptions-imaug==1.1.5"
)
# The smallest side `imagecorruptions` accepts.
MIN_SIZE = 32
# These two take `seed=` and ignore NumPy's global generator: impulse_noise
# draws from scikit-image's generator, glass_blur from Numba's.
_SEEDED_BY_ARGUMENT = ("impulse_noise", "glass_blur")
# The other random corruptions draw from NumPy's global generator, which is
# shared by every thread; the lock keeps seeding and drawing together when
# tf.data runs several batches at once.
_GLOBAL_RNG_LOCK = threading.Lock()


def validate_corruptions(names):
    """Checks corruption names; "all" stands for all of `CORRUPTIONS`.

    Args:
        names: A name, or a list of names (e.g. a command-line list flag).

    Returns:
        A tuple of distinct names, in the order given; "all" gives
        `CORRUPTIONS` in the benchmark's order.

    Raises:
        ValueError: If a name is unknown, naming it and the allowed ones, or
            if there are no names.
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError(
            f"Expected at least one corruption of {CORRUPTIONS} or 'all'. "
            "Received none."
        )
    unknown = [name for name in names if name not in CORRUPTIONS + ("all",)]
    if unknown:
        raise ValueError(
            f"Unknown corruption(s) {unknown}. Expected 'all' or names from "
            f"{CORRUPTIONS}."
        )
    if "all" in names:
        return CORRUPTIONS
    return tuple(dict.fromkeys(names))


def _check_corruption(corruption):
    """Raises ValueError unless `corruption` is one name of `CORRUPTIONS`."""
    if corruption not in CORRUPTIONS:
        raise ValueError(
            f"Unknown corruption {corruption!r}. Expected one of {CORRUPTIONS}."
        )


def _check_severity(severity):
    """Raises ValueError unless `severity` is an int in `SEVERITIES`."""
    # bool is an int subclass; True is no severity.
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ValueError(f"Expected severity in {SEVERITIES}. Received: {severity!r}")


def available_corruptions(root):
    """The corruptions and severities present in an ImageNet-C-style tree.

    Directories under `root` that are not in `CORRUPTIONS` (e.g. ImageNet-C's
    extra speckle_noise, gaussian_blur, spatter and saturate) are ignored, as
    are severity directories other than "1" to "5".

    Args:
        root: The directory holding `<corruption>/<severity>/`, local or
            `gs://`.

    Returns:
        A dict from corruption name to a tuple of the severities present, in
        the benchmark's order; corruptions with no severity directory are left
        out.

    Raises:
        FileNotFoundError: If `root` is not a directory.
        ValueError: If `root` holds no known corruption with a severity
            directory.
    """
    image_folder.require_dir(root, "corruption root directory")
    present = set(image_folder.list_subdirs(root))
    found = {}
    for corruption in CORRUPTIONS:
        if corruption not in present:
            continue
        severities = set(image_folder.list_subdirs(posixpath.join(root, corruption)))
        levels = tuple(s for s in SEVERITIES if str(s) in severities)
        if levels:
            found[corruption] = levels
    if not found:
        raise ValueError(
            f"Expected <corruption>/<severity>/ directories in {root} for "
            f"corruptions in {CORRUPTIONS}, but found none (sub-directories: "
            f"{sorted(present)})."
        )
    return found


def imagenet_c_dataset(
    root,
    corruption,
    severity,
    class_names,
    batch_size,
    image_size,
    channels=3,
    center_crop=False,
    skipped=None,
):
    """Batches of one corruption and severity of an ImageNet-C-style tree.

    Reads `<root>/<corruption>/<severity>/<class>/<image>` for the classes in
    `class_names` only: ImageNet-C has 1000 class directories, of which an
    ImageNet100 model reads its 100. Every listed class must have a directory
    with images. Order is kept and no example is dropped, except files that
    cannot be read (counted in `skipped`, as in `build_dataset`).

    Args:
        root: The directory holding `<corruption>/`, local or `gs://`.
        corruption: One of `CORRUPTIONS`.
        severity: One of `SEVERITIES`.
        class_names: The model's class directory names (e.g. wnids); label
            `i` is `class_names[i]`.
        batch_size: Examples per batch; the last batch may be smaller.
        image_size: Side of the output images.
        channels: 3 for RGB or 1 for grayscale.
        center_crop: Whether to apply the ImageNet evaluation transform
            (`augment.center_crop_resize`). ImageNet-C images are already
            224 centre crops and Tiny-ImageNet-C images whole 64 px images, so
            by default they are only resized, and only when their size differs.
        skipped: Optional `SkippedFiles` counting unreadable files.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32 (batch, image_size,
        image_size, channels) in [0, 1] and int32 (batch,).

    Raises:
        ValueError: On an unknown corruption, a bad severity, batch size or
            image size, no class names, or a class directory without images.
        FileNotFoundError: If the corruption, severity or a class directory
            is missing.
    """
    _check_corruption(corruption)
    _check_severity(severity)
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"Expected batch_size > 0. Received: {batch_size!r}")
    if not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"Expected image_size > 0. Received: {image_size!r}")
    if channels not in (1, 3):
        raise ValueError(f"Expected channels to be 1 or 3. Received: {channels!r}")
    class_names = list(class_names)
    if not class_names:
        raise ValueError("Expected at least one class name. Received none.")
    image_folder.require_dir(root, "corruption root directory")
    corruption_dir = posixpath.join(root, corruption)
    image_folder.require_dir(corruption_dir, f"directory for corruption {corruption!r}")
    image_folder.require_dir(
        posixpath.join(corruption_dir, str(severity)),
        f"directory for {corruption!r} at severity {severity}",
    )
    paths, labels, _ = image_folder.list_image_folder(
        corruption_dir, str(severity), classes=class_names
    )
    skipped = SkippedFiles() if skipped is None else skipped
    dataset = tf.data.Dataset.from_tensor_slices((paths, np.int32(labels)))
    dataset = dataset.map(
        lambda path, label: (path, tf.io.read_file(path), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    dataset = dataset.filter(
        lambda path, data, label: skipped.keep_complete(path, data)
    )
    # As in `build_dataset`: files that look complete but still fail to decode
    # are named and counted too.
    crop = IMAGENET_CROP_FRACTION if center_crop else None
    dataset = skipped.map_or_skip(
        dataset, eval_map(EvalTransform(image_size, channels, crop))
    )
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _load_corrupt():
    """`imagecorruptions.corrupt`, or an ImportError that says how to install it."""
    try:
        import imagecorruptions
    except ImportError as error:
        raise ImportError(
            "On-the-fly corruptions need the imagecorruptions-imaug package. "
            f"Install it with: {INSTALL_COMMAND}"
        ) from error
    # The original `imagecorruptions` package has the same module name but
    # fails on NumPy 2 and cannot seed glass_blur.
    if "seed" not in inspect.signature(imagecorruptions.glass_blur).parameters:
        raise ImportError(
            "Found the original imagecorruptions package, which does not work "
            "with NumPy 2 and cannot be seeded. Replace it: pip uninstall "
            f"imagecorruptions && {INSTALL_COMMAND}"
        )
    return imagecorruptions.corrupt


def _image_seed(seed, index):
    """A 32-bit seed for image `index`, mixed from `seed` and `index`."""
    # SeedSequence hashes the pair, so nearby seeds and indices do not give
    # overlapping streams; 32 bits is what np.random.seed and Numba accept.
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def corrupt_images(images, corruption, severity, seed, start_index=0):
    """Applies one ImageNet-C corruption to a batch, reproducibly.

    Image `i` of the batch is corrupted with a seed mixed from `seed` and
    `start_index + i`, so an image's corruption depends on its position in the
    data set, not on how the data set is batched. NumPy's global generator,
    which most corruptions draw from, is seeded for each image under a lock
    and restored afterwards, so the caller's random stream is left as it was.
    Code in other threads that draws from the global generator meanwhile is
    not locked out, and would change the result.

    Grayscale images are replicated to RGB by `imagecorruptions`; the first
    (red) channel of the result is kept. For grayscale input the three channels
    come out equal for every corruption but the three noises and frost: one
    channel of a noise has the benchmark's noise strength, which a mean of the
    three independent channels would reduce, and frost's overlay is a colour
    photograph, of which this keeps the red channel rather than its luma.

    Args:
        images: uint8 numpy array (batch, height, width, channels), at least
            32 x 32, with 1 or 3 channels.
        corruption: One of `CORRUPTIONS`.
        severity: One of `SEVERITIES`.
        seed: Non-negative int.
        start_index: The data set index of the first image of the batch.

    Returns:
        uint8 numpy array of the shape of `images`.

    Raises:
        ValueError: On an unknown corruption, a bad severity or seed, or
            images of the wrong rank, dtype, channel count or size.
        ImportError: If imagecorruptions-imaug is not installed.
    """
    _check_corruption(corruption)
    _check_severity(severity)
    seed, start_index = _check_seed(seed), operator.index(start_index)
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(
            "Expected a uint8 batch of shape (batch, height, width, channels). "
            f"Received: {images.dtype} of shape {images.shape}"
        )
    _check_image_shape(images.shape[1:])
    corrupt = _load_corrupt()
    corrupted = np.empty_like(images)
    for i, image in enumerate(images):
        image_seed = _image_seed(seed, start_index + i)
        kwargs = {"seed": image_seed} if corruption in _SEEDED_BY_ARGUMENT else {}
        with _GLOBAL_RNG_LOCK:
            state = np.random.get_state()
            np.random.seed(image_seed)
            try:
                result = corrupt(
                    image, severity=severity, corruption_name=corruption, **kwargs
                )
            finally:
                np.random.set_state(state)
        corrupted[i] = result[..., : images.shape[-1]]
    return corrupted


def _check_seed(seed):
    """The seed as an int; ValueError unless it is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Expected seed to be an int >= 0. Received: {seed!r}")
    return int(seed)


def _check_image_shape(shape):
    """ValueError unless `shape` (height, width, channels) can be corrupted.

    Unknown (None) dimensions pass, so static shapes can be checked early.
    """
    height, width, channels = shape
    known = [side for side in (height, width) if side is not None]
    if known and min(known) < MIN_SIZE:
        raise ValueError(
            f"Expected images of at least {MIN_SIZE} x {MIN_SIZE} pixels for "
            f"imagecorruptions. Received: {height} x {width}"
        )
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"Expected 1 or 3 channels. Received: {channels}")


def corrupted_dataset(dataset, corruption, severity, seed):
    """Corrupts every batch of an evaluation dataset on the fly.

    The corruption runs in NumPy through `tf.numpy_function`, on the host that
    runs the input pipeline. That is fine for evaluation, which has no
    accelerator-side input step; it would not be for training, as the Python
    call cannot be serialized or run in a `tf.data` service. Images pass
    through uint8 (`round(x * 255)`), which is exact for images decoded from
    8-bit files. Results are reproducible for a seed and do not depend on the
    batch size (see `corrupt_images`).

    Args:
        dataset: A `tf.data.Dataset` of `(images, labels)` batches: float
            images in [0, 1] of shape (batch, height, width, channels), at
            least 32 x 32 with 1 or 3 channels, as from `build_dataset`.
        corruption: One of `CORRUPTIONS`.
        severity: One of `SEVERITIES`.
        seed: Non-negative int.

    Returns:
        A `tf.data.Dataset` of `(images, labels)` with the element spec of
        `dataset`; the labels are unchanged.

    Raises:
        ValueError: On an unknown corruption, a bad severity or seed, or
            elements that are not `(images, labels)` batches of a usable shape.
        ImportError: If imagecorruptions-imaug is not installed (raised here,
            not on the first batch).
    """
    _check_corruption(corruption)
    _check_severity(severity)
    seed = _check_seed(seed)
    spec = dataset.element_spec
    if not (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], tf.TensorSpec)
        and spec[0].dtype.is_floating
        and spec[0].shape.rank == 4
    ):
        raise ValueError(
            "Expected a dataset of (images, labels) with float images of shape "
            f"(batch, height, width, channels). Received element spec: {spec}"
        )
    _check_image_shape(tuple(spec[0].shape)[1:])
    _load_corrupt()

    def with_start_index(start, batch):
        images, labels = batch
        end = start + tf.cast(tf.shape(images)[0], tf.int64)
        return end, (images, labels, start)

    def corrupt_batch(images, labels, start):
        pixels = tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)
        # stateful=False: the output depends on the inputs only (the seed is
        # fixed and the index is an input), which lets tf.data treat the map
        # as a pure function.
        corrupted = tf.numpy_function(
            lambda batch, index: corrupt_images(
                batch, corruption, severity, seed, int(index)
            ),
            [pixels, start],
            tf.uint8,
            stateful=False,
        )
        corrupted = tf.ensure_shape(corrupted, images.shape)
        return tf.cast(corrupted, images.dtype) / 255.0, labels

    dataset = dataset.scan(tf.constant(0, tf.int64), with_start_index)
    dataset = dataset.map(corrupt_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
