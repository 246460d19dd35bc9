"""LiteRT (TensorFlow Lite) export of an MGNet, and a small runner for its files.

    python -m mgnet_tf.export --model=runs/fashion/final.keras --output=runs/fashion/litert --format=litert

writes, for a model of T glimpses, image side S, C channels and K classes:
- `mgnet.tflite`: input `images` float32 (1, S, S, C) in [0, 1] (the model's own size
  and channels: resize and convert on the client); outputs `probabilities_per_glimpse`
  (1, T, K) and `glimpse_boxes` (1, T, 4), (ymin, xmin, ymax, xmax) in [0, 1].
- `mgnet_glimpses_{t}.tflite`, t < T: the same after t glimpses; only t backbone passes.
- `mgnet_step.tflite`: one glimpse per call, the state in and out. Inputs `images`,
  `tokens` (1, T, D + 3) and `glimpse_params` (1, 3) as the call before returned them
  (zeros at the first call: they are ignored there) and `step`, int32 scalar, the
  glimpses taken so far (0 to T - 1); outputs `probabilities` (1, K), `glimpse_box`
  (1, 4), `tokens` (row `step` filled) and `glimpse_params` (where the next glimpse
  looks). A client calls it with step 0, 1, ... and stops when it likes (e.g.
  `Runner.early_exit`). One file for every step: a file per step held its own copy
  of the weights, and switching between them cost a third of the early exit's time.
- `mgnet_litert.json`: the files, their inputs, which output tensor is which (LiteRT
  names them Identity, Identity_1, ...), the model's sizes and the quantization.

Float32 files with frozen weights and builtin ops only (no Flex delegate). Keras 3
weights are resource variables; converted through a SavedModel they stay variables and
LiteRT returns NaN, silently, so the function is converted with its variables frozen
(`experimental_lower_to_saved_model = False`), and every file is run once on a smooth
image and compared with TensorFlow before the export is kept.
"""

import contextlib
import json
import os

import numpy as np
import tensorflow as tf

from mgnet_tf import early_exit as exit_rule
from mgnet_tf.export import indexed_step
from mgnet_tf.visualize import glimpse_boxes

QUANTIZATIONS = ("none", "float16", "dynamic_range")
# How the files sample glimpses (GlimpseSampler's `method`). "matmul" has no GATHER for
# XNNPACK to leave out, but measured no faster (docs/performance.md).
SAMPLER_METHOD = "gather"
METADATA = "mgnet_litert.json"
# A converted float32 file must give TensorFlow's outputs within this.
TOLERANCE = 1e-4


def interpreter(path, threads=None):
    """A LiteRT interpreter of `path` (ai-edge-litert, else TensorFlow's own)."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415
    except ImportError:  # TensorFlow's copy, deprecated but present in 2.21
        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(model_path=path, num_threads=threads)


def _functions(model):
    """name -> (tf.function, its input specs) of every file."""
    size, channels, steps = model.image_size, model.channels, model.num_glimpses
    dim = model.feature_dim + 3
    images_spec = tf.TensorSpec((1, size, size, channels), tf.float32, name="images")
    tokens_spec = tf.TensorSpec((1, steps, dim), tf.float32, name="tokens")
    params_spec = tf.TensorSpec((1, 3), tf.float32, name="glimpse_params")
    step_spec = tf.TensorSpec((), tf.int32, name="step")

    def glimpses(t):
        def run(images):
            out = model(images, training=False, num_glimpses=t)
            return {
                "probabilities_per_glimpse": tf.nn.softmax(
                    tf.cast(out["logits"], tf.float32), axis=-1
                ),
                "glimpse_boxes": glimpse_boxes(out["glimpse_params"], size, size),
            }

        return run

    def step(images, tokens, glimpse_params, step):
        out = indexed_step(model, model.normalize(images), tokens, glimpse_params, step)
        return {
            "probabilities": out["probabilities"],
            "glimpse_box": glimpse_boxes(out["params"], size, size),
            "tokens": out["tokens"],
            "glimpse_params": out["next_params"],
        }

    functions = {"mgnet": (glimpses(None), [images_spec])}
    for t in range(1, steps):
        functions[f"mgnet_glimpses_{t}"] = (glimpses(t), [images_spec])
    if steps > 1:
        functions["mgnet_step"] = (step, [images_spec, tokens_spec, params_spec, step_spec])
    return functions


def convert_function(function, input_specs, trackable, path, quantize="none"):
    """Converts any `function` of float32 `input_specs` (its variables owned by
    `trackable`) to a LiteRT file at `path`; returns the entry `run_file` takes."""
    concrete = tf.function(function, input_signature=input_specs).get_concrete_function()
    with open(path, "wb") as file:
        file.write(_convert(concrete, trackable, quantize))
    outputs = concrete.structured_outputs
    if not isinstance(outputs, dict):
        outputs = {"output": outputs}
    return {
        "file": os.path.basename(path),
        "inputs": [spec.name for spec in input_specs],
        "outputs": {key: t.name.split(":")[0] for key, t in outputs.items()},
    }


def _convert(concrete, model, quantize):
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    # Frozen weights: through a SavedModel they would stay resource variables and
    # LiteRT would return NaN.
    converter.experimental_lower_to_saved_model = False
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def smooth_image(size, channels, seed=0):
    """A smooth float32 (1, size, size, channels) image in [0, 1]: a few random
    low-frequency waves (no pixel-level noise whose interpolation amplifies rounding)."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 1.0, size)
    y, x = np.meshgrid(grid, grid, indexing="ij")
    planes = []
    for _ in range(channels):
        a, b, c, d = rng.uniform(0.5, 3.0, 4)
        planes.append(0.5 + 0.25 * np.sin(2 * np.pi * (a * x + b * y)) + 0.2 * np.cos(2 * np.pi * (c * x - d * y)))
    return np.clip(np.stack(planes, -1)[None], 0.0, 1.0).astype(np.float32)


def write_files(model, directory, quantize="none", sampler_method=SAMPLER_METHOD):
    """Converts every file into `directory` (which must exist) and checks each.

    `sampler_method` is how the files sample glimpses (`GlimpseSampler`'s `method`;
    the same values): "gather", or "matmul" (dense products only, which XNNPACK runs
    whole; `bench/latency.py --forms=litert_matmul`).

    Returns:
        The metadata dict, also written to `directory/mgnet_litert.json`.

    Raises:
        ValueError: an unknown `quantize`.
        RuntimeError: a file whose outputs are not finite or, at float32, differ from
            TensorFlow's by more than `TOLERANCE` on a smooth image.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization. Received: {quantize!r}; expected one of {QUANTIZATIONS}"
        )
    metadata = {
        "image_size": model.image_size,
        "channels": model.channels,
        "num_glimpses": model.num_glimpses,
        "num_classes": model.num_classes,
        "token_shape": [1, model.num_glimpses, model.feature_dim + 3],
        "quantize": quantize,
        "input_range": [0.0, 1.0],
        "sampler_method": sampler_method,
        "files": {},
    }
    image = smooth_image(model.image_size, model.channels)
    with _sampler_method(model, sampler_method):
        for name, (function, specs) in _functions(model).items():
            concrete = tf.function(function, input_signature=specs).get_concrete_function()
            path = os.path.join(directory, f"{name}.tflite")
            with open(path, "wb") as file:
                file.write(_convert(concrete, model, quantize))
            outputs = {key: t.name.split(":")[0] for key, t in concrete.structured_outputs.items()}
            metadata["files"][name] = {
                "file": f"{name}.tflite",
                "inputs": [spec.name for spec in specs],
                "outputs": outputs,
            }
            # Check the file against TensorFlow on the same inputs (the step file at
            # every step, on the state TensorFlow's step before returned).
            runner = interpreter(path)
            stepwise = name == "mgnet_step"
            inputs = {"images": image, **(_first_step_state(metadata) if stepwise else {})}
            for t in range(model.num_glimpses if stepwise else 1):
                if stepwise:
                    inputs["step"] = np.int32(t)
                expected = concrete(**{k: tf.constant(v) for k, v in inputs.items()})
                expected = {k: v.numpy() for k, v in expected.items()}
                got = run_file(path, metadata["files"][name], inputs, runner=runner)
                _compare(path, got, expected, quantize)
                if stepwise:
                    inputs.update(tokens=expected["tokens"], glimpse_params=expected["glimpse_params"])
    with open(os.path.join(directory, METADATA), "w") as file:
        json.dump(metadata, file, indent=1)
    return metadata


def _first_step_state(metadata):
    """The step file's state inputs at step 0 (zeros: ignored there)."""
    return {
        "tokens": np.zeros(metadata["token_shape"], np.float32),
        "glimpse_params": np.zeros((1, 3), np.float32),
    }


def _compare(path, got, expected, quantize):
    for key, value in got.items():
        if not np.all(np.isfinite(value)):
            raise RuntimeError(f"{path}: LiteRT output {key!r} is not finite")
        error = float(np.max(np.abs(value - expected[key])))
        if quantize == "none" and error > TOLERANCE:
            raise RuntimeError(
                f"{path}: LiteRT output {key!r} differs from TensorFlow's by {error:.2e} "
                f"(more than {TOLERANCE}) on a smooth image"
            )


@contextlib.contextmanager
def _sampler_method(model, method):
    """`model`'s glimpse sampler computes with `method` while the files are traced
    (the same values: `mgnet_tf.layers.glimpse_sampler`)."""
    sampler = model.sampler
    before, sampler.method = sampler.method, method
    try:
        yield
    finally:
        sampler.method = before


class _BoundFile:
    """One file's interpreter with its tensors allocated and its input and output
    indices looked up once, so that a call only copies in, invokes and copies out.
    A call sets the inputs it is given; the others keep the values last set (LiteRT
    keeps its input tensors between calls), so a step loop sets the image once."""

    def __init__(self, runner, entry):
        runner.allocate_tensors()
        inputs = {d["name"]: (d["index"], d["dtype"]) for d in runner.get_input_details()}
        outputs = {d["name"]: d["index"] for d in runner.get_output_details()}
        self.runner = runner
        self.inputs = [(key, *inputs[key]) for key in entry["inputs"]]
        self.outputs = {key: outputs[tensor] for key, tensor in entry["outputs"].items()}

    def __call__(self, inputs):
        for key, index, dtype in self.inputs:
            if key in inputs:
                self.runner.set_tensor(index, np.asarray(inputs[key], dtype))
        self.runner.invoke()
        return {key: self.runner.get_tensor(index) for key, index in self.outputs.items()}


def run_file(path, entry, inputs, threads=None, runner=None):
    """Runs one file on a dict of input arrays; returns its outputs by key."""
    return _BoundFile(runner or interpreter(path, threads), entry)(inputs)


class Runner:
    """The files of one LiteRT export, ready to run at batch 1.

    ```python
    runner = Runner("runs/fashion/litert", threads=2)
    runner.run(image)                        # every glimpse
    runner.early_exit(image, threshold=0.9)  # glimpse by glimpse, stops when confident
    ```
    `image` is float32 (S, S, C) or (1, S, S, C) in [0, 1].
    """

    def __init__(self, directory, threads=None):
        with open(os.path.join(directory, METADATA)) as file:
            self.metadata = json.load(file)
        # Allocated and looked up once, not on every call (on the step files of an
        # earlier version the lookups had cost a quarter of the early exit's time).
        self._files = {
            name: _BoundFile(interpreter(os.path.join(directory, entry["file"]), threads), entry)
            for name, entry in self.metadata["files"].items()
        }
        self.num_glimpses = self.metadata["num_glimpses"]
        self.directory = directory

    def _image(self, image):
        image = np.asarray(image, np.float32)
        return image[None] if image.ndim == 3 else image

    def _run(self, name, inputs):
        return self._files[name](inputs)

    def run(self, image, num_glimpses=None):
        """`probabilities_per_glimpse` (1, t, K) and `glimpse_boxes` (1, t, 4)."""
        t = num_glimpses or self.num_glimpses
        name = "mgnet" if t == self.num_glimpses else f"mgnet_glimpses_{t}"
        return self._run(name, {"images": self._image(image)})

    def steps(self, image):
        """Yields each glimpse's outputs in turn (the step file, state carried)."""
        inputs = {"images": self._image(image)}
        if self.num_glimpses == 1:  # FF-Net: one file, one pass
            out = self._run("mgnet", inputs)
            yield {
                "probabilities": out["probabilities_per_glimpse"][:, 0],
                "glimpse_box": out["glimpse_boxes"][:, 0],
            }
            return
        if "mgnet_step" not in self._files:
            raise ValueError(
                f"{self.directory} has no mgnet_step.tflite (an export of an earlier "
                "version, with a file per step): export the model again"
            )
        inputs.update(_first_step_state(self.metadata))
        for t in range(self.num_glimpses):
            inputs["step"] = t
            out = self._run("mgnet_step", inputs)
            yield out
            # The image stays in the file's input from the first call: not copied again.
            inputs = {"tokens": out["tokens"], "glimpse_params": out["glimpse_params"]}

    def early_exit(self, image, threshold):
        """(probabilities (K,), glimpses used): stops at the first glimpse whose top
        probability reaches `threshold` (`mgnet_tf.early_exit`'s rule)."""
        for t, out in enumerate(self.steps(image), 1):
            probabilities = out["probabilities"][0]
            if exit_rule.stops(probabilities.max(), threshold) or t == self.num_glimpses:
                return probabilities, t
