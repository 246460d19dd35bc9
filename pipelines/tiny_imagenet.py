"""File lists of the standard `tiny-imagenet-200` directory layout."""

import posixpath

import tensorflow as tf

from pipelines.image_folder import list_images, require_dir

SPLITS = ("train", "validation")
# The archive names its validation directory "val"; accept both spellings.
_SPLIT_DIRS = {"train": "train", "validation": "val", "val": "val"}


def read_wnids(root):
    """The class list: `<root>/wnids.txt`, one wnid a line, in file order.

    Args:
        root: The `tiny-imagenet-200` directory, local or `gs://`.

    Returns:
        The list of wnids.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If it lists no wnid, or one twice.
    """
    path = posixpath.join(root, "wnids.txt")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"Expected the class list at {path}, found none.")
    with tf.io.gfile.GFile(path, "r") as f:
        wnids = [line.strip() for line in f.read().splitlines() if line.strip()]
    if not wnids:
        raise ValueError(f"Expected wnids, one a line, in {path}, found none.")
    if len(set(wnids)) != len(wnids):
        raise ValueError(f"Expected each wnid once in {path}, found repeats.")
    return wnids


def list_tiny_imagenet(root, split):
    """Lists the images and labels of one Tiny ImageNet split.

    Args:
        root: The `tiny-imagenet-200` directory, local or `gs://`.
        split: "train" or "validation" ("val" is accepted too).

    Returns:
        `(paths, labels, class_names)`: file paths, int labels (indices into
        `class_names`) and the wnids in `wnids.txt` order.

    Raises:
        ValueError: If the split is unknown, an annotation line is malformed
            or names a wnid not in `wnids.txt`, or a class has no images.
        FileNotFoundError: If a file or directory of the layout is missing.
    """
    if split not in _SPLIT_DIRS:
        raise ValueError(
            f"Expected split to be one of {SPLITS} (or 'val'). Received: {split!r}"
        )
    require_dir(root, "tiny-imagenet-200 directory")
    wnids = read_wnids(root)
    if _SPLIT_DIRS[split] == "train":
        paths, labels = _list_train(posixpath.join(root, "train"), wnids)
    else:
        paths, labels = _list_val(posixpath.join(root, "val"), wnids)
    return paths, labels, wnids


def _list_train(train_dir, wnids):
    """`train/<wnid>/images/*`, labelled by the wnid's position."""
    paths, labels = [], []
    for label, wnid in enumerate(wnids):
        images_dir = posixpath.join(train_dir, wnid, "images")
        require_dir(images_dir, f"image directory for class {wnid!r}")
        images = list_images(images_dir)
        if not images:
            raise ValueError(f"Expected images of class {wnid!r} in {images_dir}.")
        paths.extend(posixpath.join(images_dir, name) for name in images)
        labels.extend([label] * len(images))
    return paths, labels


def _list_val(val_dir, wnids):
    """`val/images/*`, labelled through `val/val_annotations.txt`."""
    images_dir = posixpath.join(val_dir, "images")
    require_dir(images_dir, "validation image directory")
    annotations = posixpath.join(val_dir, "val_annotations.txt")
    if not tf.io.gfile.exists(annotations):
        raise FileNotFoundError(
            f"Expected validation labels at {annotations}, found none."
        )
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    # One listing instead of a stat per file: far cheaper on gs://.
    present = set(tf.io.gfile.listdir(images_dir))
    paths, labels = [], []
    with tf.io.gfile.GFile(annotations, "r") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{annotations} line {number} ({line!r})"
        if len(fields) < 2:
            raise ValueError(f"Expected 'filename<TAB>wnid<TAB>box' at {where}.")
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in label_of:
            raise ValueError(f"Wnid {wnid!r} at {where} is not in wnids.txt.")
        if name not in present:
            raise FileNotFoundError(
                f"Image {name!r} at {where} is not in {images_dir}."
            )
        paths.append(posixpath.join(images_dir, name))
        labels.append(label_of[wnid])
    seen = set(labels)
    empty = [wnid for wnid in wnids if label_of[wnid] not in seen]
    if empty:
        raise ValueError(f"Expected images of classes {empty} in {annotations}.")
    return paths, labels
