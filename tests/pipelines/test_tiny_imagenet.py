import re
import shutil

import pytest

from pipelines.tiny_imagenet import list_tiny_imagenet

# As built by conftest's `tiny_imagenet_root`: wnids.txt order, unsorted.
WNIDS = ["n03", "n01", "n02"]


@pytest.fixture
def tiny_copy(tiny_imagenet_root, tmp_path):
    """A copy of the tree that a test may break."""
    root = tmp_path / "tiny-imagenet-200"
    shutil.copytree(tiny_imagenet_root, root)
    return root


def test_train_follows_wnids_file_order(tiny_imagenet_root):
    paths, labels, names = list_tiny_imagenet(str(tiny_imagenet_root), "train")
    assert names == WNIDS
    assert labels == [0] * 4 + [1] * 4 + [2] * 4
    for path, label in zip(paths, labels):
        assert re.search(f"/train/{WNIDS[label]}/images/{WNIDS[label]}_\\d.JPEG$", path)


@pytest.mark.parametrize("split", ["validation", "val"])
def test_validation_labels_come_from_annotations(tiny_imagenet_root, split):
    paths, labels, names = list_tiny_imagenet(str(tiny_imagenet_root), split)
    assert names == WNIDS
    assert [p.rsplit("/", 1)[1] for p in paths] == [f"val_{k}.JPEG" for k in range(6)]
    # conftest annotates val_k with the (k mod 3)-th wnid.
    assert labels == [k % 3 for k in range(6)]


def test_unknown_split():
    with pytest.raises(ValueError, match="'train', 'validation'.*'test'"):
        list_tiny_imagenet("/anywhere", "test")


def test_unknown_wnid_in_annotations_names_the_line(tiny_copy):
    annotations = tiny_copy / "val" / "val_annotations.txt"
    lines = annotations.read_text().splitlines()
    lines[3] = lines[3].replace("n03", "n99")
    annotations.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=f"'n99' at {annotations} line 4"):
        list_tiny_imagenet(str(tiny_copy), "validation")


def test_missing_files_are_named(tiny_copy):
    (tiny_copy / "val" / "images" / "val_2.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match="'val_2.JPEG'.*line 3"):
        list_tiny_imagenet(str(tiny_copy), "validation")
    (tiny_copy / "val" / "val_annotations.txt").unlink()
    with pytest.raises(FileNotFoundError, match=f"{tiny_copy}/val/val_annotations.txt"):
        list_tiny_imagenet(str(tiny_copy), "validation")
    shutil.rmtree(tiny_copy / "train" / "n02")
    with pytest.raises(FileNotFoundError, match=f"{tiny_copy}/train/n02/images"):
        list_tiny_imagenet(str(tiny_copy), "train")
    (tiny_copy / "wnids.txt").unlink()
    with pytest.raises(FileNotFoundError, match=f"{tiny_copy}/wnids.txt"):
        list_tiny_imagenet(str(tiny_copy), "train")


def test_empty_class_is_named(tiny_copy):
    for image in (tiny_copy / "train" / "n01" / "images").iterdir():
        image.unlink()
    with pytest.raises(ValueError, match=f"'n01' in {tiny_copy}/train/n01/images"):
        list_tiny_imagenet(str(tiny_copy), "train")


def test_class_without_validation_images_is_named(tiny_copy):
    annotations = tiny_copy / "val" / "val_annotations.txt"
    kept = [line for line in annotations.read_text().splitlines() if "n02" not in line]
    annotations.write_text("\n".join(kept))
    with pytest.raises(ValueError, match=r"\['n02'\]"):
        list_tiny_imagenet(str(tiny_copy), "validation")
