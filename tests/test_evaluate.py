"""evaluate.py end to end on a tiny trained run.

evaluate.py runs as users run it, in a subprocess: it and train.py define flags of the
same names, which one process cannot hold twice.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import pipelines
import train
from mgnet_tf import flops
from mgnet_tf.localization import localization_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(module, *args):
    flags.FLAGS(["prog", *args])
    try:
        module.main([])
    finally:
        flags.FLAGS.unparse_flags()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, idx_dir):
    model_dir = tmp_path_factory.mktemp("eval") / "run"
    _run(
        train,
        "--dataset=translated_mnist",
        f"--data_dir={idx_dir}",
        f"--model_dir={model_dir}",
        "--epochs=1",
        "--steps_per_epoch=2",
        "--validation_steps=1",
        "--batch_size=4",
        "--glimpses=3",
    )
    return model_dir


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _evaluate_process(*args):
    return subprocess.run(
        [sys.executable, "evaluate.py", *args], cwd=REPO, capture_output=True, text=True
    )


def _evaluate(run_dir, tmp_path, *args):
    output = tmp_path / "out"
    result = _evaluate_process(
        f"--model_dir={run_dir}",
        f"--output_dir={output}",
        "--max_examples=8",
        "--batch_size=4",
        "--latency_repeats=2",
        *args,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((output / "evaluation.json").read_text()), output


def test_clean_accuracy_mflops_and_dynamic_exit(run_dir, tmp_path, idx_dir):
    report, output = _evaluate(run_dir, tmp_path, "--exit_thresholds=0,0.6,1")
    clean = report["clean"]
    model = keras.saving.load_model(run_dir / "final.keras")
    assert clean["num_examples"] == 8 and report["data"]["split"] == "test"
    assert clean["mflops"] == pytest.approx([m / 1e6 for m in flops.mgnet_macs(model)])
    assert len(clean["latency_ms_batch1"]) == 3
    # Accuracy equals the model's own predictions on the same 8 test images.
    data = pipelines.build_dataset("translated_mnist", "test", str(idx_dir), 8, seed=0)
    images, labels = next(iter(data))
    predictions = np.argmax(model(images)["logits"], axis=-1)
    expected = np.mean(predictions == labels.numpy()[:, None], axis=0)
    np.testing.assert_allclose(clean["accuracy"], expected, atol=1e-6)
    # Where the glimpses look, against the items' boxes: the images' own bright
    # corner pixel (4, 6) of each 28 px item (tests/conftest.py) gives the box.
    rows, cols = [], []
    for image in images.numpy()[..., 0]:
        r, c = np.nonzero(image)
        rows.append(r.min() - 4)
        cols.append(c.min() - 6)
    boxes = np.stack([rows, cols, np.add(rows, 28), np.add(cols, 28)], 1)
    params = model(images)["glimpse_params"].numpy()
    where = localization_report(params, boxes, 112)
    for key in ("mean_scale", "median_iou", "median_center_error_px"):
        np.testing.assert_allclose(clean["localization"][key], where[key], atol=1e-5)
    first, _, last = clean["dynamic_exit"]
    assert (first["threshold"], first["mean_glimpses"]) == (0.0, 1.0)
    assert first["mean_mflops"] == pytest.approx(clean["mflops"][0])
    assert first["accuracy"] == pytest.approx(clean["accuracy"][0])
    assert (last["mean_glimpses"], last["accuracy"]) == (
        3.0,
        pytest.approx(clean["accuracy"][-1]),
    )
    assert (output / "early_exit.png").read_bytes()[:8] == PNG_SIGNATURE
    assert report["flags"]["exit_thresholds"] == ["0", "0.6", "1"]
    # Every field docs/evaluation.md describes for this section.
    assert {"model", "model_config", "flags", "data", "clean", "plots"} <= set(report)
    assert set(clean) == {
        "num_examples",
        "accuracy",
        "mflops",
        "latency_ms_batch1",
        "dynamic_exit",
        "localization",
        "per_class",
    }
    # Per class, with the data set's class names (MNIST's are its digits).
    assert clean["per_class"]["names"] == [str(d) for d in range(10)]
    for k in range(10):
        mine = labels.numpy() == k
        assert clean["per_class"]["count"][k] == mine.sum()
        if mine.any():
            np.testing.assert_allclose(clean["per_class"]["accuracy"][k], np.mean(np.asarray(predictions)[mine] == k, axis=0), atol=1e-6)
    assert {"dataset", "data_dir", "split", "noise_std", "classes_file"} <= set(
        report["data"]
    )
    assert set(first) == {"threshold", "accuracy", "mean_glimpses", "mean_mflops"}


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_attacks(run_dir, tmp_path, attack):
    report, output = _evaluate(
        run_dir, tmp_path, f"--attack={attack}", "--steps=1,3", "--latency_repeats=0"
    )
    section = report["attack"]
    assert set(section) == {
        "attack",
        "space",
        "eps",
        "step_size",
        "num_examples",
        "clean_accuracy",
        "steps",
        "accuracy",
    }
    assert section["steps"] == ([1, 3] if attack == "pgd" else [1])
    assert len(section["accuracy"]) == len(section["steps"])
    assert all(0 <= a <= 1 for a in section["accuracy"])
    assert section["step_size"] == pytest.approx(
        4 / 255 if attack == "fgsm" else 1 / 255
    )
    assert (output / "attack.png").read_bytes()[:8] == PNG_SIGNATURE


def test_corruptions_generated_on_the_fly(run_dir, tmp_path):
    pytest.importorskip("imagecorruptions")
    report, _ = _evaluate(
        run_dir,
        tmp_path,
        "--corruptions=fog,gaussian_noise",
        "--severities=1,5",
        "--latency_repeats=0",
        f"--baseline_model_dir={run_dir}",
    )
    section = report["corruptions"]
    assert set(section) == {
        "source",
        "severities",
        "accuracy_per_severity",
        "accuracy",
        "mean_accuracy",
        "baseline_model_dir",
        "relative_corruption_error",
        "mean_relative_corruption_error",
    }
    assert set(section["accuracy"]) == {"fog", "gaussian_noise"}
    assert all(len(v) == 2 for v in section["accuracy_per_severity"].values())
    assert len(section["mean_accuracy"]) == 3
    # The baseline is the model itself: relative error 1 wherever it errs at all.
    for value in section["relative_corruption_error"].values():
        assert np.isnan(value) or value == pytest.approx(1.0)


def test_corruptions_from_a_directory(run_dir, tmp_path):
    root = tmp_path / "mnist-c"
    rng = np.random.default_rng(0)
    for severity in (1, 2):
        for label in range(10):
            folder = root / "fog" / str(severity) / str(label)
            folder.mkdir(parents=True)
            pixels = rng.integers(0, 256, (112, 112, 1), dtype=np.uint8)
            (folder / "a.png").write_bytes(tf.io.encode_png(pixels).numpy())
    report, _ = _evaluate(
        run_dir,
        tmp_path,
        f"--corruptions_dir={root}",
        "--severities=1,2",
        "--latency_repeats=0",
    )
    assert list(report["corruptions"]["accuracy"]) == ["fog"]
    assert report["corruptions"]["source"] == str(root)


def test_pictures_are_valid_pngs(run_dir, tmp_path):
    report, _ = _evaluate(run_dir, tmp_path, "--visualize=2", "--latency_repeats=0")
    assert len(report["pictures"]) == 2
    for path in report["pictures"]:
        data = open(path, "rb").read()
        assert data[:8] == PNG_SIGNATURE
        picture = tf.io.decode_png(data).numpy()
        assert picture.shape == (2 * 112 + 2, 3 * 112 + 2, 3)
    # The recorded predictions are those the clean section scored: with
    # --max_examples=2 both cover the same two test images.
    details = report["picture_predictions"]
    assert [d["path"] for d in details] == report["pictures"]
    for d in details:
        assert f"_label_{d['label']}.png" in d["path"] and len(d["predictions"]) == 3
    right = np.mean([[p == d["label"] for p in d["predictions"]] for d in details], 0)
    clean, _ = _evaluate(
        run_dir, tmp_path / "clean", "--max_examples=2", "--latency_repeats=0"
    )
    assert right.tolist() == pytest.approx(clean["clean"]["accuracy"])


def test_an_earlier_report_is_not_replaced_without_asking(run_dir, tmp_path):
    report, output = _evaluate(run_dir, tmp_path, "--latency_repeats=0")
    again = _evaluate_process(
        f"--model_dir={run_dir}",
        f"--output_dir={output}",
        "--max_examples=4",
        "--latency_repeats=0",
    )
    assert again.returncode != 0 and "--overwrite" in again.stderr
    assert json.loads((output / "evaluation.json").read_text()) == report


def test_users_own_images(run_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a", "b"):
        pixels = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
        (folder / f"{name}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    (folder / "broken.png").write_bytes(b"not an image")
    report, _ = _evaluate(run_dir, tmp_path, f"--images={folder}/*.png", "--top_k=2")
    assert "clean" not in report
    assert [e["path"].rsplit("/", 1)[1] for e in report["images"]] == ["a.png", "b.png"]
    for entry in report["images"]:
        assert set(entry) == {"path", "top_per_glimpse", "picture"}
        assert (
            len(entry["top_per_glimpse"]) == 3 and len(entry["top_per_glimpse"][0]) == 2
        )
        assert open(entry["picture"], "rb").read(8) == PNG_SIGNATURE
    # A directory reads the image files in it, as the glob does.
    by_dir, _ = _evaluate(run_dir, tmp_path, f"--images={folder}", "--overwrite")
    assert [e["path"] for e in by_dir["images"]] == [
        e["path"] for e in report["images"]
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--model_dir={empty}",), "No model at"),
        (("--model_dir={run}", "--corruptions=blurry"), "blurry"),
        (
            ("--model_dir={run}", "--dataset=tiny_imagenet", "--data_dir={tiny}"),
            "10 classes",
        ),
        (("--model_dir={run}", "--severities=0,6"), "--severities"),
        (("--model={truncated}",), "is not a complete .keras file (a zip archive)"),
        (("--model={run}/final.keras", "--images={empty}"), "no image file in it"),
    ],
)
def test_bad_input_fails_before_any_work(
    run_dir, tmp_path, tiny_imagenet_root, args, message
):
    truncated = tmp_path / "final.keras"  # an interrupted copy of a good model
    truncated.write_bytes((run_dir / "final.keras").read_bytes()[:20000])
    empty = tmp_path / "empty"
    empty.mkdir()
    paths = {"empty": empty, "run": run_dir, "tiny": tiny_imagenet_root}
    paths["truncated"] = truncated
    output = tmp_path / "o"
    result = _evaluate_process(
        *[a.format(**paths) for a in args], f"--output_dir={output}"
    )
    assert result.returncode == 1
    # One message and the pointer to --help: no traceback, no flag list, no GPU probe.
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "See python evaluate.py --help for the flags."
    assert message in lines[-2] and lines[-2].startswith("evaluate.py: ")
    assert "Traceback" not in result.stderr and "cuInit" not in result.stderr
    assert not output.exists()
