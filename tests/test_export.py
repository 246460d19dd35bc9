"""The SavedModel export, checked in a process that never imports mgnet_tf."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import keras
from mgnet_tf import MGNet
from mgnet_tf.export import export_saved_model
from mgnet_tf.visualize import glimpse_boxes

# Runs in a fresh interpreter: loads the SavedModel with TensorFlow alone, calls every
# signature, and records the outputs and how each bad request failed.
CLIENT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    directory, inputs, output = sys.argv[1:]
    assert "mgnet_tf" not in sys.modules
    loaded = tf.saved_model.load(directory)
    assert "mgnet_tf" not in sys.modules
    data = np.load(inputs, allow_pickle=True)  # the encoded images are objects
    results = {"signatures": sorted(loaded.signatures)}
    arrays = {}
    for name, function in loaded.signatures.items():
        if name == "serving_bytes":
            for kind in ("jpeg", "png"):
                out = function(image_bytes=tf.constant(list(data[kind])))
                for key, value in out.items():
                    arrays[f"{name}_{kind}_{key}"] = value.numpy()
        elif name == "serving_early_exit":
            for i, threshold in enumerate(data["thresholds"]):
                out = function(
                    images=tf.constant(data["images"]),
                    threshold=tf.constant(threshold, tf.float32),
                )
                for key, value in out.items():
                    arrays[f"{name}_{i}_{key}"] = value.numpy()
        elif name == "glimpse_step":
            # A client's own loop: the state goes back in as it came out.
            tokens = np.zeros(data["tokens_shape"], np.float32)
            params = np.zeros((len(data["images"]), 3), np.float32)
            step = np.int32(0)
            for t in range(int(data["tokens_shape"][1])):
                out = function(
                    images=tf.constant(data["images"]),
                    tokens=tf.constant(tokens),
                    glimpse_params=tf.constant(params),
                    step=tf.constant(step),
                )
                for key, value in out.items():
                    arrays[f"{name}_{t}_{key}"] = value.numpy()
                tokens, params = out["tokens"].numpy(), out["glimpse_params"].numpy()
                step = out["step"].numpy()
        else:
            for key, value in function(images=tf.constant(data["images"])).items():
                arrays[f"{name}_{key}"] = value.numpy()
    for case, call in {
        "negative_threshold": lambda: loaded.signatures["serving_early_exit"](
            images=tf.constant(data["images"]), threshold=tf.constant(-0.5)
        ),
        "step_past_the_last": lambda: loaded.signatures["glimpse_step"](
            images=tf.constant(data["images"]),
            tokens=tf.zeros(data["tokens_shape"]),
            glimpse_params=tf.zeros((len(data["images"]), 3)),
            step=tf.constant(int(data["tokens_shape"][1]), tf.int32),
        ),
    }.items():
        try:
            call()
            results.setdefault("bad", {})[case] = "accepted"
        except Exception as error:
            results.setdefault("bad", {})[case] = type(error).__name__
            results.setdefault("messages", {})[case] = str(error)[:3000]
    bad = {
        "rank3": lambda f: f(images=tf.constant(data["images"][0])),
        "two_channels": lambda f: f(images=tf.constant(data["images"][..., :2])),
        "float": lambda f: f(images=tf.constant(data["images"].astype("float32"))),
        "one_channel": lambda f: f(images=tf.constant(data["images"][..., :1])),
        "empty_batch": lambda f: f(images=tf.constant(data["images"][:0])),
        "empty_image": lambda f: f(images=tf.constant(data["images"][:, :0])),
    }
    results.setdefault("bad", {}), results.setdefault("messages", {})
    for signature in ("serving_default", "glimpses_1"):
        for case, call in bad.items():
            key = case if signature == "serving_default" else f"{signature}_{case}"
            try:
                call(loaded.signatures[signature])
                results["bad"][key] = "accepted"
            except Exception as error:
                results["bad"][key] = type(error).__name__
                results["messages"][key] = str(error)[:3000]
    try:
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([b"not an image"]))
        results["bad"]["not_an_image"] = "accepted"
    except Exception as error:
        results["bad"]["not_an_image"] = type(error).__name__
    np.savez(output + ".npz", **arrays)
    with open(output + ".json", "w") as file:
        json.dump(results, file)
    """)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    directory = tmp_path_factory.mktemp("export")
    # Fixed weights: whether a threshold between the images' top probabilities gives
    # a mixed batch depends on them (unseeded, it did not once in a run of this file
    # after test_checkpoints' fits).
    keras.utils.set_random_seed(0)
    model = MGNet(
        "vanilla_cnn",
        num_classes=5,
        image_size=40,
        num_glimpses=3,
        downsample=2,
        channels=3,
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    jpeg = [tf.io.encode_jpeg(image, quality=100).numpy() for image in images]
    png = [tf.io.encode_png(image).numpy() for image in images]
    probabilities, _ = _expected(model, images)
    np.savez(
        directory / "inputs.npz",
        images=images,
        thresholds=_thresholds(probabilities),
        tokens_shape=np.array([len(images), model.num_glimpses, model.feature_dim + 3]),
        jpeg=np.array(jpeg, dtype=object),
        png=np.array(png, dtype=object),
    )
    names = export_saved_model(model, str(directory / "saved_model"))
    script = directory / "client.py"
    script.write_text(CLIENT)
    subprocess.run(
        [
            sys.executable,
            str(script),
            str(directory / "saved_model"),
            str(directory / "inputs.npz"),
            str(directory / "results"),
        ],
        check=True,
        capture_output=True,
    )
    results = json.loads((directory / "results.json").read_text())
    arrays = dict(np.load(directory / "results.npz"))
    return model, images, names, results, arrays, directory


def _expected(model, images, num_glimpses=None):
    out = model(images.astype("float32") / 255.0, num_glimpses=num_glimpses)
    probabilities = tf.nn.softmax(out["logits"]).numpy()
    boxes = glimpse_boxes(out["glimpse_params"], 40, 40).numpy()
    return probabilities, boxes


def _thresholds(probabilities):
    """0 (every image stops at glimpse 1), 1 (none before the last), and two between
    the images' top probabilities (a mixed batch), away from any of them."""
    top = np.sort(probabilities.max(-1).ravel())
    between = (top[:-1] + top[1:]) / 2
    return np.array([0.0, 1.0, between[len(between) // 3], between[2 * len(between) // 3]])


def test_signatures_are_listed(exported):
    _, _, names, results, _, _ = exported
    expected = [
        "glimpse_step",
        "glimpses_1",
        "glimpses_2",
        "serving_bytes",
        "serving_default",
        "serving_early_exit",
    ]
    assert names == expected and results["signatures"] == expected


def test_early_exit_signature_stops_each_image_by_the_rule(exported):
    from mgnet_tf.early_exit import exit_glimpses  # noqa: PLC0415

    model, images, _, _, arrays, _ = exported
    probabilities, boxes = _expected(model, images)
    thresholds = _thresholds(probabilities)
    mixed = False
    for i, threshold in enumerate(thresholds):
        name = f"serving_early_exit_{i}"
        glimpses = exit_glimpses(probabilities, threshold).numpy()
        np.testing.assert_array_equal(arrays[f"{name}_glimpses"], glimpses)
        mixed |= len(set(glimpses)) > 1
        chosen = probabilities[np.arange(len(images)), glimpses - 1]
        np.testing.assert_allclose(arrays[f"{name}_probabilities"], chosen, atol=1e-4)
        np.testing.assert_array_equal(arrays[f"{name}_classes"], chosen.argmax(-1))
        used = np.arange(model.num_glimpses)[None, :] < glimpses[:, None]
        np.testing.assert_allclose(
            arrays[f"{name}_probabilities_per_glimpse"],
            np.where(used[..., None], probabilities, 0.0),
            atol=1e-4,
        )
        np.testing.assert_allclose(
            arrays[f"{name}_glimpse_boxes"], np.where(used[..., None], boxes, 0.0), atol=1e-5
        )
    np.testing.assert_array_equal(arrays["serving_early_exit_0_glimpses"], 1)
    np.testing.assert_array_equal(arrays["serving_early_exit_1_glimpses"], 3)
    assert mixed, "no threshold gave a batch whose images stop at different glimpses"


def test_glimpse_step_signature_replays_the_glimpse_loop(exported):
    model, images, _, _, arrays, _ = exported
    probabilities, boxes = _expected(model, images)
    for t in range(model.num_glimpses):
        np.testing.assert_allclose(
            arrays[f"glimpse_step_{t}_probabilities"], probabilities[:, t], atol=1e-4
        )
        np.testing.assert_allclose(
            arrays[f"glimpse_step_{t}_glimpse_box"], boxes[:, t], atol=1e-5
        )
        assert arrays[f"glimpse_step_{t}_step"] == t + 1


def test_bad_threshold_and_step_are_refused(exported):
    _, _, _, results, _, _ = exported
    assert results["bad"]["negative_threshold"] == "InvalidArgumentError"
    assert "threshold must be >= 0" in results["messages"]["negative_threshold"]
    assert results["bad"]["step_past_the_last"] == "InvalidArgumentError"
    assert "step must be the number of glimpses taken so far, 0 to 2" in (
        results["messages"]["step_past_the_last"]
    )


@pytest.mark.parametrize("threshold, runs", [(0.0, 1), (1.0, 3)])
def test_early_exit_at_batch_one_runs_only_the_glimpses_it_needs(
    monkeypatch, threshold, runs
):
    """Executed eagerly, tf.cond runs one branch: the glimpse steps counted are the
    backbone passes a served request pays for."""
    from mgnet_tf import export  # noqa: PLC0415

    model = MGNet("vanilla_cnn", num_classes=5, image_size=40, num_glimpses=3,
                  downsample=2, channels=3)
    calls = []
    step = model.glimpse_step
    monkeypatch.setattr(
        model, "glimpse_step", lambda *a, **k: calls.append(1) or step(*a, **k)
    )
    images = np.random.default_rng(2).integers(0, 256, (1, 40, 40, 3), dtype=np.uint8)
    out = export._Serving(model).early_exit(tf.constant(images), threshold)
    assert len(calls) == runs and out["glimpses"].numpy().tolist() == [runs]


def test_serving_default_equals_keras(exported):
    model, images, _, _, arrays, _ = exported
    probabilities, boxes = _expected(model, images)
    np.testing.assert_allclose(
        arrays["serving_default_probabilities_per_glimpse"], probabilities, atol=1e-4
    )
    np.testing.assert_allclose(
        arrays["serving_default_probabilities"], probabilities[:, -1], atol=1e-4
    )
    np.testing.assert_array_equal(
        arrays["serving_default_classes"], np.argmax(probabilities[:, -1], axis=-1)
    )
    np.testing.assert_allclose(
        arrays["serving_default_glimpse_boxes"], boxes, atol=1e-5
    )


@pytest.mark.parametrize("steps", [1, 2])
def test_fewer_glimpse_signatures_run_fewer_glimpses(exported, steps):
    model, images, _, _, arrays, _ = exported
    probabilities, boxes = _expected(model, images, steps)
    got = arrays[f"glimpses_{steps}_probabilities_per_glimpse"]
    assert got.shape == (3, steps, 5)
    np.testing.assert_allclose(got, probabilities, atol=1e-4)
    np.testing.assert_allclose(
        arrays[f"glimpses_{steps}_glimpse_boxes"], boxes, atol=1e-5
    )


def test_fewer_glimpse_graphs_hold_fewer_backbone_passes(exported):
    _, _, _, _, _, directory = exported
    loaded = tf.saved_model.load(str(directory / "saved_model"))

    def convolutions(name):
        graph = loaded.signatures[name].graph
        ops = [op for op in graph.get_operations()]
        nested = [
            graph._get_function(op.get_attr("f").name).graph.get_operations()
            for op in ops
            if op.type in ("PartitionedCall", "StatefulPartitionedCall")
        ]
        return sum(op.type == "Conv2D" for group in [ops, *nested] for op in group)

    # The vanilla CNN has 4 convolutions; t glimpses run it t times.
    assert convolutions("glimpses_1") == 4
    assert convolutions("glimpses_2") == 8
    assert convolutions("serving_default") == 12


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_serving_bytes(exported, kind):
    model, images, _, _, arrays, _ = exported
    decoded = np.stack(
        [tf.io.decode_image(tf.io.encode_png(i)).numpy() for i in images]
    )
    if kind == "jpeg":  # lossy: compare with the model on what the JPEG decodes to
        decoded = np.stack(
            [
                tf.io.decode_jpeg(tf.io.encode_jpeg(i, quality=100)).numpy()
                for i in images
            ]
        )
    probabilities, boxes = _expected(model, decoded)
    np.testing.assert_allclose(
        arrays[f"serving_bytes_{kind}_probabilities_per_glimpse"],
        probabilities,
        atol=1e-4,
    )
    np.testing.assert_allclose(
        arrays[f"serving_bytes_{kind}_glimpse_boxes"], boxes, atol=1e-5
    )


def test_bad_requests_are_errors(exported):
    _, _, _, results, _, _ = exported
    assert results["bad"]["rank3"] != "accepted"
    assert results["bad"]["two_channels"] != "accepted"
    assert results["bad"]["float"] != "accepted"
    assert results["bad"]["not_an_image"] == "InvalidArgumentError"


@pytest.mark.parametrize(
    "case", ["two_channels", "one_channel", "empty_batch", "empty_image"]
)
@pytest.mark.parametrize("prefix", ["", "glimpses_1_"])
def test_bad_shapes_are_refused_with_the_expected_shape_and_dtype(
    exported, case, prefix
):
    _, _, _, results, _, _ = exported
    assert results["bad"][prefix + case] == "InvalidArgumentError"
    message = results["messages"][prefix + case]
    assert "expected uint8 RGB images of shape (batch, height, width, 3)" in message
    cause = "Empty batch or image" if case.startswith("empty") else "Wrong number of channels"
    assert cause in message


def test_other_sizes_are_resized_as_evaluated_and_grey_models_get_grey(tmp_path):
    model = MGNet(
        "vanilla_cnn",
        num_classes=4,
        image_size=32,
        num_glimpses=2,
        downsample=2,
        channels=1,
    )
    export_saved_model(model, str(tmp_path / "grey"))
    loaded = tf.saved_model.load(str(tmp_path / "grey"))
    images = np.random.default_rng(1).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    # The evaluation transform, spelled out: luma, antialiased resize, whole pixels.
    grey = tf.image.rgb_to_grayscale(images)
    resized = tf.image.resize(grey, (32, 32), antialias=True)
    pixels = tf.clip_by_value(tf.round(resized), 0.0, 255.0) / 255.0
    expected = tf.nn.softmax(model(pixels)["logits"]).numpy()
    np.testing.assert_allclose(
        out["probabilities_per_glimpse"].numpy(), expected, atol=1e-4
    )


def test_existing_directory_is_not_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("user data")
    model = MGNet(
        "vanilla_cnn",
        num_classes=2,
        image_size=32,
        num_glimpses=1,
        downsample=1,
        channels=1,
    )
    with pytest.raises(FileExistsError, match="taken"):
        export_saved_model(model, str(tmp_path / "taken"))
    assert (tmp_path / "taken" / "keep.txt").read_text() == "user data"


def _small_model():
    return MGNet(
        "vanilla_cnn",
        num_classes=2,
        image_size=32,
        num_glimpses=1,
        downsample=1,
        channels=1,
    )


def test_partial_directory_not_ours_is_refused_and_kept(tmp_path):
    partial = tmp_path / "sm.partial"
    partial.mkdir()
    (partial / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="sm.partial"):
        export_saved_model(_small_model(), str(tmp_path / "sm"))
    assert (partial / "keep.txt").read_text() == "user data"
    assert not (tmp_path / "sm").exists()


def test_interrupted_export_is_replaced_by_the_next_export_of_that_output(
    tmp_path, monkeypatch
):
    from mgnet_tf import export  # noqa: PLC0415

    model = _small_model()
    rename = tf.io.gfile.rename

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # a kill just before the rename into place

    monkeypatch.setattr(tf.io.gfile, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(model, str(tmp_path / "sm"))
    monkeypatch.setattr(tf.io.gfile, "rename", rename)
    assert (tmp_path / "sm.partial" / export.PARTIAL_MARKER).exists()
    # Not another output's: an export to another path does not claim it.
    (tmp_path / "sm.partial").rename(tmp_path / "other.partial")
    with pytest.raises(FileExistsError, match="other.partial"):
        export_saved_model(model, str(tmp_path / "other"))
    (tmp_path / "other.partial").rename(tmp_path / "sm.partial")
    export_saved_model(model, str(tmp_path / "sm"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]
    assert not (tmp_path / "sm" / export.PARTIAL_MARKER).exists()
    tf.saved_model.load(str(tmp_path / "sm"))


def test_cli_and_saved_model_cli(tmp_path):
    model = MGNet(
        "vanilla_cnn",
        num_classes=2,
        image_size=32,
        num_glimpses=2,
        downsample=2,
        channels=1,
    )
    model.save(tmp_path / "m.keras")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mgnet_tf.export",
            f"--model={tmp_path / 'm.keras'}",
            f"--output={tmp_path / 'sm'}",
        ],
        check=True,
        capture_output=True,
    )
    shown = subprocess.run(
        ["saved_model_cli", "show", "--dir", str(tmp_path / "sm"), "--all"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for text in (
        "signature_def['serving_default']",
        "signature_def['glimpses_1']",
        "signature_def['serving_bytes']",
        "dtype: DT_UINT8",
        "dtype: DT_STRING",
        "probabilities_per_glimpse",
        "glimpse_boxes",
    ):
        assert text in shown


@pytest.mark.parametrize("first_localization", [False, True])
def test_padded_step_follows_a_relative_placement(first_localization):
    """The SavedModel early exit's step (`padded_step`) hands each
    glimpse's own (s, x, y) to the localization: with relative placement the served
    walk is the model's, not eq. 4's; with a first localization head of its own,
    glimpse 2 is that head's."""
    from mgnet_tf.export import padded_step  # noqa: PLC0415

    model = MGNet(
        backbone="vanilla_cnn", num_classes=4, image_size=32, num_glimpses=4,
        downsample=2, channels=1, placement="relative",
        first_localization=first_localization,
    )
    kernel, _ = model.localization.dense.get_weights()
    # A steady move right and up: each glimpse starts from the one before.
    model.localization.dense.set_weights([kernel * 0.1, np.array([0.0, 1.0, -1.0], "float32")])
    if first_localization:  # glimpse 2 to the left and down instead
        head = model.first_localization_head.dense
        head.set_weights([head.get_weights()[0] * 0.1, np.array([0.0, -1.0, 1.0], "float32")])
    images = np.random.default_rng(2).random((3, 32, 32, 1)).astype("float32")
    expected = model(images)["glimpse_params"].numpy()
    assert np.all(np.diff(expected[:, 1:, 1], axis=1) > 0.01)  # it walks
    if first_localization:
        assert np.all(expected[:, 1, 1] < -0.1)  # glimpse 2 went left
    x = model.normalize(images)
    tokens = tf.zeros((3, 4, model.feature_dim + 3))
    params = tf.zeros((3, 3))
    for t in range(4):
        out = padded_step(model, x, tokens, params, t)
        np.testing.assert_allclose(out["params"].numpy(), expected[:, t], atol=1e-5)
        tokens, params = out["tokens"], out["next_params"]


@pytest.mark.parametrize(
    "settings",
    [
        {"placement": "relative", "first_localization": True},
        {"placement": "spatial", "first_localization": True},
        {"placement": "absolute"},
    ],
)
def test_indexed_step_replays_the_glimpse_loop(settings):
    """The LiteRT step file's graph (`indexed_step`: the step a tensor, no branches)
    gives the model's glimpses and probabilities at every step, with the rows not
    taken yet holding anything (NaN here), and places glimpse 2 with the first
    localization head where there is one."""
    from mgnet_tf.export import indexed_step  # noqa: PLC0415

    model = MGNet(
        backbone="vanilla_cnn", num_classes=4, image_size=40, num_glimpses=4,
        downsample=2, channels=1, **settings,
    )
    rng = np.random.default_rng(3)
    for head in (model.localization, model.first_localization_head):
        if head is not None:  # glimpses that move, differently per head
            kernel, bias = head.dense.get_weights()
            head.dense.set_weights([rng.normal(0, 0.3, kernel.shape).astype("float32"), bias])
    images = rng.random((3, 40, 40, 1)).astype("float32")
    out = model(images)
    expected = tf.nn.softmax(out["logits"]).numpy()
    params_expected = out["glimpse_params"].numpy()
    assert np.abs(np.diff(params_expected[:, 1:], axis=1)).max() > 0.01  # they move
    x = model.normalize(images)
    tokens = np.full((3, 4, model.feature_dim + 3), np.nan, "float32")
    params = np.full((3, 3), np.nan, "float32")  # ignored at step 0
    for t in range(4):
        got = indexed_step(model, x, tokens, params, tf.constant(t))
        np.testing.assert_allclose(got["params"].numpy(), params_expected[:, t], atol=1e-5)
        np.testing.assert_allclose(got["probabilities"].numpy(), expected[:, t], atol=1e-5)
        tokens = got["tokens"].numpy()
        assert np.isfinite(tokens[:, : t + 1]).all() and not tokens[:, t + 1 :].any()
        params = got["next_params"].numpy()
    np.testing.assert_array_equal(params, got["params"].numpy())  # the last: its own


def test_a_spatial_placement_model_serves_its_own_glimpse_loop(tmp_path):
    """With placement='spatial' the next glimpse depends on the map of the glimpse just
    taken: the served model and the served step (which places the next glimpse inside
    the call that took this one) give the Keras model's glimpses and probabilities."""
    model = MGNet(
        "vanilla_cnn", num_classes=5, image_size=40, num_glimpses=3, downsample=2,
        channels=3, placement="spatial",
    )
    kernel, bias = model.localization.cell_scores.get_weights()
    rng = np.random.default_rng(5)
    model.localization.cell_scores.set_weights([rng.normal(0, 20.0, kernel.shape).astype("float32"), bias])
    images = rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    probabilities, boxes = _expected(model, images)
    export_saved_model(model, str(tmp_path / "saved_model"))
    loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(served["probabilities_per_glimpse"].numpy(), probabilities, atol=1e-4)
    # Each box comes from the soft-argmax over the map of the glimpse before, so the
    # round-off of the backbone (the traced graph and the eager call may sum in another
    # order, depending on the CPU) is carried into the next window: 6e-5 of the image
    # side was seen for glimpse 3 on one machine. 2e-4 of the side (0.008 px here) is
    # still 250 times below the move the soft-argmax makes (> 0.05, checked below).
    box_atol = 2e-4
    np.testing.assert_allclose(served["glimpse_boxes"].numpy(), boxes, atol=box_atol)
    tokens = np.zeros((3, 3, model.feature_dim + 3), np.float32)
    params = np.zeros((3, 3), np.float32)
    step = np.int32(0)
    for t in range(3):
        out = loaded.signatures["glimpse_step"](
            images=tf.constant(images), tokens=tf.constant(tokens),
            glimpse_params=tf.constant(params), step=tf.constant(step),
        )
        np.testing.assert_allclose(out["probabilities"].numpy(), probabilities[:, t], atol=1e-4)
        np.testing.assert_allclose(out["glimpse_box"].numpy(), boxes[:, t], atol=box_atol)
        tokens, params, step = out["tokens"].numpy(), out["glimpse_params"].numpy(), out["step"].numpy()
    # The soft-argmax moved the glimpses: they are not where the relative move alone puts them.
    model.localization.cell_scores.set_weights([np.zeros_like(kernel), bias])
    _, relative_boxes = _expected(model, images)
    assert np.abs(relative_boxes[:, 1:] - boxes[:, 1:]).max() > 0.05  # of the image side
