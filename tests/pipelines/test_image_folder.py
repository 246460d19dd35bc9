import shutil

import pytest

from pipelines.image_folder import (
    imagenet_classes,
    list_image_folder,
    read_classes_file,
)

# As built by conftest's `imagenet_root`.
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]


def test_lists_sorted_classes_and_labels(imagenet_root):
    paths, labels, names = list_image_folder(str(imagenet_root), "train")
    assert names == WNIDS
    assert labels == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for path, label in zip(paths, labels):
        assert f"/train/{WNIDS[label]}/" in path
    # Upper-case .JPEG and .png are images; README.txt is not.
    assert sum(p.endswith(".JPEG") for p in paths) == 8
    assert sum(p.endswith(".png") for p in paths) == 4


def test_given_classes_set_order_and_subset(imagenet_root):
    classes = [WNIDS[2], WNIDS[0]]
    paths, labels, names = list_image_folder(str(imagenet_root), "val", classes)
    assert names == classes
    assert labels == [0, 0, 1, 1]
    assert all(f"/val/{classes[label]}/" in p for p, label in zip(paths, labels))


def test_missing_root_split_and_class_are_named(imagenet_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        list_image_folder(str(tmp_path / "nowhere"), "train")
    with pytest.raises(FileNotFoundError, match=f"{imagenet_root}/test"):
        list_image_folder(str(imagenet_root), "test")
    with pytest.raises(FileNotFoundError, match=f"{imagenet_root}/train/n99"):
        list_image_folder(str(imagenet_root), "train", ["n99"])


def test_empty_class_and_no_classes_are_named(imagenet_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(imagenet_root, root)
    for image in (root / "train" / WNIDS[1]).iterdir():
        if image.suffix != ".txt":
            image.unlink()
    with pytest.raises(ValueError, match=f"{root}/train/{WNIDS[1]}"):
        list_image_folder(str(root), "train")
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{root}/empty"):
        list_image_folder(str(root), "empty")


def test_read_classes_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# my subset\nn02\n\n  n01  # the first\nn03\n")
    assert read_classes_file(str(path)) == ["n02", "n01", "n03"]
    path.write_text("n01\nn02\nn01\n")
    with pytest.raises(ValueError, match=f"{path}.*'n01'"):
        read_classes_file(str(path))
    path.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match=str(path)):
        read_classes_file(str(path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none.txt")):
        read_classes_file(str(tmp_path / "none.txt"))


def test_imagenet_classes_first_n_sorted_or_from_file(imagenet_root, tmp_path):
    root = str(imagenet_root)
    assert imagenet_classes(root) == WNIDS
    assert imagenet_classes(root, num_classes=2) == WNIDS[:2]
    with pytest.raises(ValueError, match="at least 5"):
        imagenet_classes(root, num_classes=5)
    path = tmp_path / "classes.txt"
    path.write_text(f"{WNIDS[3]}\n{WNIDS[1]}\n")
    assert imagenet_classes(root, classes_file=str(path)) == [WNIDS[3], WNIDS[1]]
    with pytest.raises(ValueError, match=f"3 classes in classes file {path}"):
        imagenet_classes(root, num_classes=3, classes_file=str(path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train")):
        imagenet_classes(str(tmp_path))
