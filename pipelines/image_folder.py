"""File lists of `<root>/<split>/<class>/<image>` trees (ImageNet and the like)."""

import posixpath

import tensorflow as tf

# The formats `decode.decode_image` reads, compared lower-case.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def is_image_file(name):
    """Whether a file name has one of `IMAGE_EXTENSIONS`, in any case."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def list_subdirs(path):
    """Sorted names of the directories directly inside `path`.

    Args:
        path: A directory, local or `gs://`.

    Returns:
        A sorted list of names (no trailing slash).
    """
    # GCS lists directories with a trailing slash; strip it to get the name.
    names = [name.rstrip("/") for name in tf.io.gfile.listdir(path)]
    return sorted(n for n in names if tf.io.gfile.isdir(posixpath.join(path, n)))


def list_images(path):
    """Sorted names of the image files directly inside `path`."""
    return sorted(n for n in tf.io.gfile.listdir(path) if is_image_file(n))


def require_dir(path, what):
    """Raises FileNotFoundError naming `path` unless it is a directory.

    Args:
        path: The directory to check.
        what: What it should be, for the message (e.g. "split directory").
    """
    if not tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"Expected a {what} at {path}, but found none.")


def list_image_folder(root, split, classes=None):
    """Lists the images of a `<root>/<split>/<class>/<image>` tree.

    Args:
        root: The data set's root directory, local or `gs://`.
        split: The split's directory name under `root`, e.g. "train" or "val".
        classes: Optional list of class directory names; labels follow its
            order. By default every sub-directory of the split, sorted.

    Returns:
        `(paths, labels, class_names)`: lists of file paths (sorted within each
        class), of int labels (indices into `class_names`), and of class names.

    Raises:
        FileNotFoundError: If the root, the split or a requested class
            directory is missing.
        ValueError: If there are no classes, or a class has no images.
    """
    require_dir(root, "data set root directory")
    split_dir = posixpath.join(root, split)
    require_dir(split_dir, f"split directory for split {split!r}")
    class_names = list(list_subdirs(split_dir) if classes is None else classes)
    if not class_names:
        raise ValueError(
            f"Expected class sub-directories in {split_dir}, but found none."
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = posixpath.join(split_dir, name)
        require_dir(class_dir, f"class directory for class {name!r}")
        images = list_images(class_dir)
        if not images:
            raise ValueError(
                f"Expected images ({', '.join(IMAGE_EXTENSIONS)}) in class "
                f"directory {class_dir}, but found none."
            )
        paths.extend(posixpath.join(class_dir, image) for image in images)
        labels.extend([label] * len(images))
    return paths, labels, class_names


def read_classes_file(path):
    """Reads a list of class names, one a line.

    Blank lines and everything after a `#` are ignored.

    Args:
        path: The text file, local or `gs://`.

    Returns:
        The class names, in file order.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If it names no class, or names one twice.
    """
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"Expected a classes file at {path}, but found none.")
    with tf.io.gfile.GFile(path, "r") as f:
        lines = f.read().splitlines()
    names = [line.split("#", 1)[0].strip() for line in lines]
    names = [name for name in names if name]
    if not names:
        raise ValueError(f"Expected class names in classes file {path}, found none.")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"Classes file {path} names {duplicates} more than once.")
    return names


def imagenet_classes(root, num_classes=None, classes_file=None):
    """The class list of an ImageNet-style tree, or of a subset of it.

    Args:
        root: The root directory holding `train/<wnid>/`.
        num_classes: Keep the first this many of the sorted class directories
            (ImageNet100 is the first 100 sorted wnids). None keeps all, or
            checks the length of `classes_file`'s list.
        classes_file: Optional file naming the classes (see
            `read_classes_file`); it replaces the directory listing.

    Returns:
        The list of class names.

    Raises:
        FileNotFoundError: If `<root>/train` or `classes_file` is missing.
        ValueError: If there are fewer classes than `num_classes`.
    """
    if classes_file is not None:
        names = read_classes_file(classes_file)
        if num_classes is not None and len(names) != num_classes:
            raise ValueError(
                f"Expected {num_classes} classes in classes file {classes_file}, "
                f"found {len(names)}."
            )
        return names
    train_dir = posixpath.join(root, "train")
    require_dir(train_dir, "training directory")
    names = list_subdirs(train_dir)
    if num_classes is None:
        return names
    if len(names) < num_classes:
        raise ValueError(
            f"Expected at least {num_classes} class directories in {train_dir}, "
            f"found {len(names)}."
        )
    return names[:num_classes]
