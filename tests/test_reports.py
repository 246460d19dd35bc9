"""The report's sections called in-process with explicit arguments, as a notebook
would call them (evaluate.py itself is tested in a subprocess in test_evaluate.py)."""

import numpy as np
import pytest

import reports
from mgnet_tf import MGNet, localization

T = 3


@pytest.fixture(scope="module")
def model():
    return MGNet(
        backbone="vanilla_cnn", num_classes=10, num_glimpses=T, image_size=112,
        channels=1, downsample=4,
    )


@pytest.fixture
def data(idx_dir):
    return reports.EvalData(
        dataset="translated_mnist", split="test", data_dir=str(idx_dir), batch_size=4,
        seed=3, max_examples=10,
    )


def test_eval_data_caps_counts_and_batches():
    data = reports.EvalData(dataset="translated_mnist", split="test", max_examples=10)
    assert (data.capped(None), data.capped(4), data.capped(50)) == (10, 4, 10)
    uncapped = reports.EvalData(dataset="translated_mnist", split="test")
    assert (uncapped.capped(None), uncapped.capped(7)) == (None, 7)


def test_clean_section_matches_the_model_run_by_hand(model, data):
    section = reports.clean_section(model, data, mflops=[1.0, 2.0, 3.0], thresholds=[0.0, 1.0])
    images, labels = [np.concatenate(x) for x in zip(*[(i.numpy(), l.numpy()) for i, l in data.batches(112)])]
    assert len(labels) == 10 == section["num_examples"]
    outputs = model(images, training=False)
    predictions = np.argmax(np.asarray(outputs["logits"]), axis=-1)  # (N, T)
    expected = [(predictions[:, t] == labels).mean() for t in range(T)]
    np.testing.assert_allclose(section["accuracy"], expected)
    # Threshold 0 stops after glimpse 1; threshold 1 never stops early.
    first, last = section["dynamic_exit"]
    assert first["mean_glimpses"] == 1 and first["accuracy"] == pytest.approx(expected[0])
    assert last["mean_glimpses"] == T and last["accuracy"] == pytest.approx(expected[-1])
    assert first["mean_mflops"] == 1.0 and last["mean_mflops"] == 3.0
    params = np.asarray(outputs["glimpse_params"])
    np.testing.assert_allclose(
        section["localization"]["mean_scale"], params[..., 0].mean(axis=0), rtol=1e-5
    )
    boxes = data.object_boxes(10, 112)
    iou = localization.box_iou(localization.glimpse_boxes(params, 112), boxes[:, None])
    # The section runs the model compiled, this check eagerly: glimpse params agree to
    # float32 rounding, which moves an IoU near 0 by ~1e-7, many times rtol=1e-5 of it.
    np.testing.assert_allclose(
        section["localization"]["median_iou"], np.median(iou, axis=0), rtol=1e-5, atol=1e-6
    )
    assert "latency_ms_batch1" not in section
    # Per class: the images of each label and their accuracy after each glimpse.
    for k in range(10):
        mine = labels == k
        assert section["per_class"]["count"][k] == mine.sum()
        if mine.any():
            np.testing.assert_allclose(
                section["per_class"]["accuracy"][k], (predictions[mine] == k).mean(axis=0)
            )
        else:
            assert section["per_class"]["accuracy"][k] is None
    assert "names" not in section["per_class"]


def test_per_class_table_names_the_classes(model, data):
    names = [f"item{k}" for k in range(10)]
    clean = reports.clean_section(model, data, mflops=[1.0, 2.0, 3.0], class_names=names)
    assert clean["per_class"]["names"] == names
    lines = reports.format_tables({"clean": clean}).splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.split()[:1] and line.split()[0] in names}
    present = [k for k in range(10) if clean["per_class"]["count"][k]]
    assert sorted(rows) == sorted(names[k] for k in present)
    for k in present:
        count, *accuracy = rows[names[k]]
        assert int(count) == clean["per_class"]["count"][k]
        np.testing.assert_allclose([float(a) for a in accuracy], np.multiply(100, clean["per_class"]["accuracy"][k]), atol=0.01)


def test_per_class_table_keeps_the_worst_of_many_classes():
    from reports.tables import MAX_CLASS_ROWS, _per_class_rows  # noqa: PLC0415

    k = MAX_CLASS_ROWS + 5
    per_class = {"count": [1] * k, "accuracy": [[1.0 - c / k] for c in range(k)]}
    lines = _per_class_rows(per_class)
    assert lines[1].split()[:2] == ["class", "images"]  # the header, then one row per class
    shown = [line.split()[1] for line in lines[2:]]
    # The MAX_CLASS_ROWS lowest after the last glimpse: classes 5..k-1.
    assert sorted(int(c) for c in shown) == list(range(k - MAX_CLASS_ROWS, k))
    assert "lowest" in lines[0]


def test_tables_show_each_section(model, data):
    report = {"clean": reports.clean_section(model, data, mflops=[1.0, 2.0, 3.0], thresholds=[0.5])}
    text = reports.format_tables(report)
    assert "Clean accuracy on 10 images" in text
    rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["1"], ["2"], ["3"])]
    # One accuracy row and one localization row per glimpse.
    assert len(rows) == 2 * T
    assert float(rows[0][-1]) == pytest.approx(100 * report["clean"]["accuracy"][0], abs=0.01)


def test_pictures_section_writes_one_png_per_image(model, data, tmp_path):
    paths, details = reports.pictures_section(model, data, 3, str(tmp_path))
    assert len(paths) == 3 == len(details)
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert all(len(d["predictions"]) == T for d in details)


def test_images_section_names_what_it_cannot_read(model, tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"not a PNG")
    with pytest.raises(ValueError, match="none of the 1 files.*not_an_image.png"):
        reports.images_section(model, [str(bad)], str(tmp_path / "out"))


def test_attack_section_rejects_an_unknown_attack(model, data):
    with pytest.raises(ValueError, match="attack='cw'"):
        reports.attack_section(model, data, "cw", eps=0.01)
