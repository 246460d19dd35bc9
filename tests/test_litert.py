"""The LiteRT export: every file run by LiteRT and compared with the Keras model."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mgnet_tf import MGNet, litert
from mgnet_tf.early_exit import exit_glimpses
from mgnet_tf.export import export_litert
from mgnet_tf.visualize import glimpse_boxes

pytestmark = pytest.mark.tensorflow_only


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = MGNet(
        "vanilla_cnn", num_classes=5, image_size=40, num_glimpses=3, downsample=2, channels=1
    )
    directory = tmp_path_factory.mktemp("litert") / "lt"
    names = export_litert(model, str(directory))
    return model, directory, names


def _keras(model, images, num_glimpses=None):
    out = model(images, num_glimpses=num_glimpses)
    return (
        tf.nn.softmax(out["logits"]).numpy(),
        glimpse_boxes(out["glimpse_params"], 40, 40).numpy(),
    )


def test_files(exported):
    _, _, names = exported
    assert names == [
        "mgnet.tflite",
        "mgnet_glimpses_1.tflite",
        "mgnet_glimpses_2.tflite",
        "mgnet_litert.json",
        "mgnet_step.tflite",
    ]


def test_matmul_sampler_files_have_no_gather_and_equal_keras(exported, tmp_path):
    """`sampler_method="matmul"`: no GATHER in the files (XNNPACK runs none), the same
    outputs as the Keras model, and the model still samples with gathers afterwards;
    the export's own files keep the gathers."""
    import json  # noqa: PLC0415

    model, directory, _ = exported

    def ops(path):
        runner = litert.interpreter(str(path))
        runner.allocate_tensors()
        return {detail["op_name"] for detail in runner._get_ops_details()}

    assert "GATHER" in ops(directory / "mgnet.tflite")
    matmul = tmp_path / "matmul"
    matmul.mkdir()
    litert.write_files(model, str(matmul), sampler_method="matmul")
    for name in ("mgnet", "mgnet_step"):
        assert not ops(matmul / f"{name}.tflite") & {"GATHER", "GATHER_ND"}
    assert json.loads((matmul / "mgnet_litert.json").read_text())["sampler_method"] == "matmul"
    assert model.sampler.method == "gather"
    image = litert.smooth_image(40, 1, seed=4)
    probabilities, boxes = _keras(model, image)
    out = litert.Runner(str(matmul)).run(image)
    np.testing.assert_allclose(out["probabilities_per_glimpse"], probabilities, atol=1e-4)
    np.testing.assert_allclose(out["glimpse_boxes"], boxes, atol=1e-4)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_litert_equals_keras_on_smooth_images(exported, seed):
    model, directory, _ = exported
    runner = litert.Runner(str(directory), threads=1)
    image = litert.smooth_image(40, 1, seed=seed)
    probabilities, boxes = _keras(model, image)
    out = runner.run(image)
    np.testing.assert_allclose(out["probabilities_per_glimpse"], probabilities, atol=1e-4)
    np.testing.assert_allclose(out["glimpse_boxes"], boxes, atol=1e-4)
    for t in (1, 2):
        fewer = runner.run(image, num_glimpses=t)
        np.testing.assert_allclose(
            fewer["probabilities_per_glimpse"], probabilities[:, :t], atol=1e-4
        )


def test_litert_agrees_on_top1_on_noise_images(exported):
    model, directory, _ = exported
    runner = litert.Runner(str(directory))
    images = np.random.default_rng(0).random((20, 40, 40, 1), dtype=np.float32)
    probabilities, _ = _keras(model, images)
    got = np.concatenate([runner.run(image)["probabilities_per_glimpse"] for image in images])
    ordered = np.sort(probabilities, axis=-1)
    clear = ordered[..., -1] - ordered[..., -2] > 1e-4  # not a tie at float precision
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(got.argmax(-1)[clear], probabilities.argmax(-1)[clear])
    assert np.all(np.isfinite(got))


def test_step_file_replays_the_loop_and_early_exit_follows_the_rule(exported):
    model, directory, _ = exported
    runner = litert.Runner(str(directory))
    image = litert.smooth_image(40, 1, seed=4)
    probabilities, boxes = _keras(model, image)
    # A loop left after one step first: the next image's loop must not see its state
    # (the image is set once per loop, the state at every step).
    next(runner.steps(litert.smooth_image(40, 1, seed=9)))
    steps = list(runner.steps(image))
    assert len(steps) == 3
    for t, out in enumerate(steps):
        np.testing.assert_allclose(out["probabilities"], probabilities[:, t], atol=1e-4)
        np.testing.assert_allclose(out["glimpse_box"], boxes[:, t], atol=1e-4)
    top = probabilities[0].max(-1)
    for threshold in (0.0, 1.0, float(np.sort(top)[1]) - 1e-3):
        expected = int(exit_glimpses(probabilities, threshold).numpy()[0])
        chosen, used = runner.early_exit(image, threshold)
        assert used == expected
        np.testing.assert_allclose(chosen, probabilities[0, used - 1], atol=1e-4)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda v: np.full_like(v, np.nan), "is not finite"),
        (lambda v: v + 1e-3, "differs from TensorFlow's by 1.00e-03"),
    ],
)
def test_a_file_that_disagrees_with_tensorflow_is_not_shipped(
    tmp_path, monkeypatch, corrupt, message
):
    """Converted through a SavedModel, Keras 3's variables stay resources and LiteRT
    returns NaN, silently; the export runs every file and refuses such output."""
    run_file = litert.run_file

    def corrupted(*args, **kwargs):
        return {k: corrupt(v) for k, v in run_file(*args, **kwargs).items()}

    monkeypatch.setattr(litert, "run_file", corrupted)
    model = MGNet("vanilla_cnn", num_classes=3, image_size=32, num_glimpses=2, downsample=2, channels=1)
    with pytest.raises(RuntimeError, match=message):
        export_litert(model, str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("quantize, tolerance", [("float16", 1e-3), ("dynamic_range", 2e-2)])
def test_quantized_files_are_smaller_and_close(exported, tmp_path, quantize, tolerance):
    model, directory, _ = exported
    export_litert(model, str(tmp_path / quantize), quantize)
    image = litert.smooth_image(40, 1, seed=5)
    full = litert.Runner(str(directory)).run(image)["probabilities_per_glimpse"]
    got = litert.Runner(str(tmp_path / quantize)).run(image)["probabilities_per_glimpse"]
    np.testing.assert_allclose(got, full, atol=tolerance)
    size = (tmp_path / quantize / "mgnet.tflite").stat().st_size
    assert size < 0.6 * (directory / "mgnet.tflite").stat().st_size


def test_ff_net_and_resnet_convert_to_builtin_ops(tmp_path):
    """FF-Net (one glimpse: one file, no steps) and ResNet-18 (batch norm, residual
    adds, max-pool) run in LiteRT without the Flex delegate, equal to Keras."""
    model = MGNet("resnet18", num_classes=4, image_size=32, num_glimpses=1, downsample=1, channels=3)
    names = export_litert(model, str(tmp_path / "ff"))
    assert names == ["mgnet.tflite", "mgnet_litert.json"]
    runner = litert.Runner(str(tmp_path / "ff"))
    image = litert.smooth_image(32, 3, seed=6)
    expected = tf.nn.softmax(model(image)["logits"]).numpy()
    np.testing.assert_allclose(runner.run(image)["probabilities_per_glimpse"], expected, atol=1e-4)
    probabilities, used = runner.early_exit(image, 0.0)
    assert used == 1
    np.testing.assert_allclose(probabilities, expected[0, 0], atol=1e-4)


@pytest.mark.parametrize("placement_map", [None, "conv3"])
def test_spatial_placement_converts_and_equals_keras(tmp_path, placement_map):
    """The translated presets' placement (a soft-argmax over a backbone map, the last
    or conv3's) in the whole-loop file and the step file, with cell scores that move
    the glimpses (zero scores would leave the relative move alone)."""
    model = MGNet(
        "vanilla_cnn", num_classes=5, image_size=40, num_glimpses=3, downsample=2,
        channels=1, placement="spatial", placement_map=placement_map,
    )
    kernel, bias = model.localization.cell_scores.get_weights()
    rng = np.random.default_rng(7)
    model.localization.cell_scores.set_weights([rng.normal(0, 3, kernel.shape).astype("float32"), bias])
    export_litert(model, str(tmp_path / "spatial"))
    runner = litert.Runner(str(tmp_path / "spatial"))
    image = litert.smooth_image(40, 1, seed=8)
    probabilities, boxes = _keras(model, image)
    np.testing.assert_allclose(runner.run(image)["probabilities_per_glimpse"], probabilities, atol=1e-4)
    steps = list(runner.steps(image))
    for t, out in enumerate(steps):
        np.testing.assert_allclose(out["glimpse_box"], boxes[:, t], atol=1e-4)
    # The map was read: with zero scores (no spatial move) glimpse 2 goes elsewhere.
    model.localization.cell_scores.set_weights([np.zeros_like(kernel), bias])
    _, relative_boxes = _keras(model, image)
    assert np.abs(relative_boxes[:, 1] - boxes[:, 1]).max() > 0.02  # of the image side


def test_cli(tmp_path):
    model = MGNet("vanilla_cnn", num_classes=2, image_size=32, num_glimpses=2, downsample=2, channels=1)
    model.save(tmp_path / "m.keras")
    command = [sys.executable, "-m", "mgnet_tf.export", f"--model={tmp_path / 'm.keras'}"]
    done = subprocess.run(
        [*command, f"--output={tmp_path / 'lt'}", "--format=litert", "--quantize=float16"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mgnet_step.tflite" in done.stdout
    assert litert.Runner(str(tmp_path / "lt")).metadata["quantize"] == "float16"
    refused = subprocess.run(
        [*command, f"--output={tmp_path / 'sm'}", "--quantize=float16"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "--quantize: only with --format=litert" in refused.stderr


def test_an_export_without_the_step_file_is_named(exported, tmp_path):
    """An export of an earlier version (a file per step, no mgnet_step.tflite) runs
    its whole-loop files and says what to do for the step loop."""
    import json  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    _, directory, _ = exported
    old = tmp_path / "old"
    shutil.copytree(directory, old)
    metadata = json.loads((old / "mgnet_litert.json").read_text())
    del metadata["files"]["mgnet_step"]
    (old / "mgnet_litert.json").write_text(json.dumps(metadata))
    runner = litert.Runner(str(old))
    image = litert.smooth_image(40, 1, seed=4)
    assert runner.run(image)["probabilities_per_glimpse"].shape == (1, 3, 5)
    with pytest.raises(ValueError, match=f"{old} has no mgnet_step.tflite.*export the model again"):
        runner.early_exit(image, 0.5)
