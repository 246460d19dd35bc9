"""Exports a trained MGNet as a TensorFlow SavedModel with early-exit signatures, or as
LiteRT files.

    python -m mgnet_tf.export --model=runs/fashion/final.keras --output=runs/fashion/saved_model
    saved_model_cli show --dir runs/fashion/saved_model --all

Signatures (all outputs named; B images, T glimpses, K classes):
- `serving_default`: `images`, uint8 (B, H, W, 3) of any H and W. Outputs
  `probabilities` (B, K) after the last glimpse, `classes` (B,) int64,
  `probabilities_per_glimpse` (B, T, K), `glimpse_boxes` (B, T, 4) as
  (ymin, xmin, ymax, xmax) in [0, 1] image coordinates.
- `glimpses_1` .. `glimpses_{T-1}`: the same with t < T glimpses; only t backbone
  passes run, so the cost falls with t.
- `serving_bytes`: `image_bytes`, a (B,) string batch of encoded JPEG/PNG/GIF/BMP images
  (what TF Serving's REST API receives as {"b64": ...}); the same outputs as
  `serving_default`.
- `serving_early_exit` (T > 1): `images` and `threshold` (float32 scalar); each image
  stops at the first glimpse whose top probability reaches the threshold, and glimpse
  t + 1 runs only while some image has not stopped. Outputs `probabilities` and
  `classes` at each image's exit, `glimpses` (B,) int32, and `probabilities_per_glimpse`
  and `glimpse_boxes` with the rows past each image's exit set to 0.
- `glimpse_step` (T > 1): one glimpse per call. Inputs `images`, `tokens` (B, T, D + 3)
  and `glimpse_params` (B, 3) as the previous call returned them (zeros at first), and
  `step` (int32, glimpses taken so far). Outputs `probabilities`, `classes`,
  `glimpse_box` (B, 4), and the next call's `tokens`, `glimpse_params` and `step`.

`--format=litert` writes LiteRT files instead (`mgnet_tf.litert`).

Images go through the evaluation transform the model records (`pipelines.transform`:
its channels, then a resize, or for the ImageNet-like sets a resize of the shorter side
and a centre crop) inside the graph, the same ops evaluate.py measures with. The graph holds only TensorFlow ops: it loads with `tf.saved_model.load` in
a process that never imported mgnet_tf.
"""

import argparse
import ast
import os
import posixpath
import tempfile

import keras
import tensorflow as tf

from mgnet_tf import early_exit as exit_rule
from mgnet_tf import files
from mgnet_tf._tensorflow_child import run_on_tensorflow
from pipelines.transform import EvalTransform
from mgnet_tf.visualize import glimpse_boxes


class _Serving(tf.Module):
    """The model's inference paths as tf.functions with serving input specs."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        # The evaluation transform the model records (pipelines.transform): the
        # served model sees the pixels evaluate.py measured.
        self.transform = EvalTransform.of_model(model)

    def _prepare(self, images):
        """uint8 (B, H, W, 3) -> float (B, S, S, C) in [0, 1]: the model's transform."""
        return self.transform.image(_checked(images))

    def outputs(self, images, num_glimpses, prepared=False):
        inputs = images if prepared else self._prepare(images)
        result = self.model(inputs, training=False, num_glimpses=num_glimpses)
        probabilities = tf.nn.softmax(tf.cast(result["logits"], tf.float32), axis=-1)
        size = self.model.image_size
        return {
            "probabilities": probabilities[:, -1],
            "classes": tf.argmax(probabilities[:, -1], axis=-1),
            "probabilities_per_glimpse": probabilities,
            "glimpse_boxes": glimpse_boxes(result["glimpse_params"], size, size),
        }

    def early_exit(self, images, threshold, prepared=False):
        """Glimpses until each image's top probability reaches `threshold`
        (`mgnet_tf.early_exit`'s rule): each later glimpse runs only while some image
        of the batch has not stopped, so at batch 1 an easy image costs one backbone
        pass. Each image's outputs are those of its exit glimpse, whatever the rest of
        its batch did; rows past the glimpses it used are zero."""
        model = self.model
        inputs = images if prepared else self._prepare(images)
        threshold = tf.convert_to_tensor(threshold, tf.float32)
        check = tf.debugging.assert_greater_equal(
            threshold, 0.0, message="threshold must be >= 0 (1 or more: all glimpses)"
        )
        with tf.control_dependencies([check]):
            x = model.normalize(inputs)
        steps, batch = model.num_glimpses, tf.shape(x)[0]
        state = {
            "tokens": tf.zeros((batch, steps, model.feature_dim + 3)),
            "params": model.first_glimpse_params(batch),
            "probabilities": tf.zeros((batch, steps, model.num_classes)),
            "glimpse_params": tf.zeros((batch, steps, 3)),
            "glimpses": tf.zeros((batch,), tf.int32),  # 0: not stopped yet
        }

        def run(t, state):
            out = padded_step(model, x, state["tokens"], state["params"], t)
            probabilities = out["probabilities"]
            stop = exit_rule.stops(tf.reduce_max(probabilities, axis=-1), threshold)
            stop = stop | (t + 1 == steps)
            glimpses = state["glimpses"]
            return {
                "tokens": out["tokens"],
                "params": out["next_params"],
                "probabilities": _put(state["probabilities"], t, probabilities),
                "glimpse_params": _put(state["glimpse_params"], t, out["params"]),
                "glimpses": tf.where((glimpses == 0) & stop, t + 1, glimpses),
            }

        state = run(0, state)
        for t in range(1, steps):
            state = tf.cond(
                tf.reduce_all(state["glimpses"] > 0),
                lambda state=state: state,
                lambda t=t, state=state: run(t, state),
            )
        glimpses = state["glimpses"]
        used = tf.range(steps)[None, :] < glimpses[:, None]  # (B, T)
        probabilities = tf.where(used[..., None], state["probabilities"], 0.0)
        chosen = tf.gather(probabilities, glimpses - 1, axis=1, batch_dims=1)
        size = model.image_size
        boxes = glimpse_boxes(state["glimpse_params"], size, size)
        return {
            "probabilities": chosen,
            "classes": tf.argmax(chosen, axis=-1),
            "glimpses": glimpses,
            "probabilities_per_glimpse": probabilities,
            "glimpse_boxes": tf.where(used[..., None], boxes, 0.0),
        }

    def step(self, images, tokens, glimpse_params, step, prepared=False):
        """One glimpse per call, the state in and out (see the module docstring)."""
        model = self.model
        inputs = images if prepared else self._prepare(images)
        x = model.normalize(inputs)
        steps = model.num_glimpses
        step = tf.convert_to_tensor(step, tf.int32)
        check = tf.debugging.assert_equal(
            (step >= 0) & (step < steps),
            True,
            message=f"step must be the number of glimpses taken so far, 0 to {steps - 1}",
        )
        with tf.control_dependencies([check]):
            step = tf.identity(step)
        # One graph for every step (the step a tensor), not a branch per step: one
        # backbone in the signature instead of T.
        out = indexed_step(model, x, tokens, glimpse_params, step)
        size = model.image_size
        return {
            "probabilities": out["probabilities"],
            "classes": tf.argmax(out["probabilities"], axis=-1),
            "glimpse_box": glimpse_boxes(out["params"], size, size),
            "tokens": out["tokens"],
            "glimpse_params": out["next_params"],
            "step": step + 1,
        }

    def decode(self, image_bytes):
        """A (B,) batch of encoded images -> float (B, S, S, C): the model's transform
        of each file, as the evaluation pipeline decodes it (RGBA WebP included)."""
        size, channels = self.model.image_size, self.model.channels
        return tf.map_fn(
            self.transform.file_bytes,
            image_bytes,
            fn_output_signature=tf.TensorSpec((size, size, channels), tf.float32),
        )


def padded_step(model, x, tokens, params, t):
    """Glimpse t + 1 (t static, from 0) of `model` on normalized images `x`, the state
    in fixed shapes: the unit of the SavedModel's early exit (`glimpse_step` and the
    LiteRT step file use `indexed_step`, the step a tensor).

    Args:
        model: an `MGNet`.
        x: normalized images (B, S, S, C) (`model.normalize`).
        tokens: (B, T, D + 3), the tokens of the glimpses taken so far in rows 0..t-1;
            the other rows are ignored.
        params: (B, 3), where this glimpse looks; ignored at t = 0 (glimpse 1 is the
            whole image).
        t: int, the number of glimpses taken so far.

    Returns:
        float32 dict: `probabilities` (B, K) after this glimpse, `params` (B, 3) of this
        glimpse, `tokens` (B, T, D + 3) with row t filled, `next_params` (B, 3) of the
        next glimpse (this glimpse's at the last one).
    """
    if t == 0:
        params = model.first_glimpse_params(tf.shape(x)[0])
    before = tf.cast(tokens[:, :t], x.dtype) if t else None
    out = model.glimpse_step(x, before, params, training=False)
    params = tf.cast(params, tf.float32)
    last = t + 1 == model.num_glimpses
    return {
        "probabilities": tf.nn.softmax(tf.cast(out["logits"], tf.float32), axis=-1),
        "params": params,
        "tokens": _put(tf.cast(tokens, tf.float32), t, tf.cast(out["tokens"][:, -1], tf.float32)),
        "next_params": params if last else tf.cast(model.next_glimpse_params(out, params), tf.float32),
    }


def indexed_step(model, x, tokens, params, step):
    """`padded_step` with `step` a tensor: one graph for every glimpse, no branches
    (the SavedModel's `glimpse_step` and the LiteRT step file: one set of weights,
    where a LiteRT file per glimpse made the processor's caches reload them at every
    step).

    Args:
        model: an `MGNet`.
        x: normalized images (B, S, S, C) (`model.normalize`).
        tokens: (B, T, D + 3), the tokens of the glimpses taken so far in rows
            0..step-1; the other rows are ignored.
        params: (B, 3), where this glimpse looks; ignored at step 0.
        step: int32 scalar tensor in [0, T): the number of glimpses taken so far.

    Returns:
        `padded_step`'s dict.
    """
    step = tf.reshape(tf.cast(step, tf.int32), ())
    first = tf.equal(step, 0)
    params = tf.where(first, model.first_glimpse_params(tf.shape(x)[0]), tf.cast(params, tf.float32))
    features, feature_map = model.glimpse_features(x, tf.cast(params, x.dtype), training=False)
    token = tf.concat([tf.cast(features, tf.float32), params], axis=-1)
    rows = tf.range(model.num_glimpses)[None, :, None]
    tokens = tf.where(rows < step, tf.cast(tokens, tf.float32), 0.0)
    tokens = tf.where(rows == step, token[:, None], tokens)
    fused = model.fusion(tf.cast(tokens, x.dtype), training=False, newest=step)
    place = {"clip": True, "feature_map": feature_map}
    next_params = tf.cast(model.localization(fused, params, **place), tf.float32)
    if model.first_localization_head is not None:
        second = tf.cast(model.first_localization_head(fused, params, **place), tf.float32)
        next_params = tf.where(first, second, next_params)
    return {
        "probabilities": tf.nn.softmax(tf.cast(model.classifier(fused), tf.float32), axis=-1),
        "params": params,
        "tokens": tokens,
        "next_params": tf.where(step + 1 == model.num_glimpses, params, next_params),
    }


def _put(padded, t, row):
    """`padded` (B, T, ...) with row t replaced by `row` (B, ...); t is static."""
    return tf.concat([padded[:, :t], row[:, None], padded[:, t + 1 :]], axis=1)


EXPECTED = (
    "expected uint8 RGB images of shape (batch, height, width, 3) with batch, height "
    "and width at least 1 (send a grayscale image with its channel repeated 3 times, "
    "or as PNG/JPEG bytes to serving_bytes)"
)


def _checked(images):
    """`images`, after graph checks whose errors say what a request should hold;
    without them a wrong channel count or an empty batch fails deep in the model
    ("Matrix size-incompatible", "input depth must be evenly divisible")."""
    shape = tf.shape(images)
    checks = [
        tf.debugging.assert_equal(
            shape[3], 3, message=f"Wrong number of channels: {EXPECTED}; got shape"
        ),
        tf.debugging.assert_positive(
            shape[:3], message=f"Empty batch or image: {EXPECTED}; got shape"
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(images)


def signatures(model):
    """The concrete functions `export_saved_model` writes, keyed by signature name."""
    serving = _Serving(model)
    images_spec = tf.TensorSpec((None, None, None, 3), tf.uint8, name="images")
    bytes_spec = tf.TensorSpec((None,), tf.string, name="image_bytes")
    functions = {
        "serving_default": tf.function(
            lambda images: serving.outputs(images, None), input_signature=[images_spec]
        ),
        "serving_bytes": tf.function(
            lambda image_bytes: serving.outputs(
                serving.decode(image_bytes), None, prepared=True
            ),
            input_signature=[bytes_spec],
        ),
    }
    if model.num_glimpses > 1:
        threshold_spec = tf.TensorSpec((), tf.float32, name="threshold")
        functions["serving_early_exit"] = tf.function(
            serving.early_exit, input_signature=[images_spec, threshold_spec]
        )
        functions["glimpse_step"] = tf.function(
            serving.step,
            input_signature=[
                images_spec,
                tf.TensorSpec(
                    (None, model.num_glimpses, model.feature_dim + 3),
                    tf.float32,
                    name="tokens",
                ),
                tf.TensorSpec((None, 3), tf.float32, name="glimpse_params"),
                tf.TensorSpec((), tf.int32, name="step"),
            ],
        )
    for steps in range(1, model.num_glimpses):
        functions[f"glimpses_{steps}"] = tf.function(
            lambda images, t=steps: serving.outputs(images, t),
            input_signature=[images_spec],
        )
    return serving, {name: f.get_concrete_function() for name, f in functions.items()}


def export_saved_model(model, directory):
    """Writes `model` as a SavedModel with the signatures in the module docstring.

    Args:
        model: an `MGNet`.
        directory: output directory (local or gs://); must not exist yet, so that no
            earlier export is overwritten.

    Returns:
        The sorted signature names.

    On another Keras backend (a model trained with JAX) the model is saved to a
    temporary .keras file and exported by `python -m mgnet_tf.export` in a process
    on the TensorFlow backend: .keras files are backend-free, SavedModels are
    TensorFlow graphs.
    """
    _refuse_existing(directory)
    if keras.backend.backend() != "tensorflow":
        return _export_on_tensorflow(model, directory)
    serving, functions = signatures(model)
    _write_new_directory(
        directory,
        lambda temporary: tf.saved_model.save(serving, temporary, signatures=functions),
        "saved_model",
    )
    return sorted(functions)


def export_litert(model, directory, quantize="none"):
    """Writes `model` as LiteRT files (`mgnet_tf.litert`), each checked against
    TensorFlow before the directory is kept.

    Args:
        model: an `MGNet`.
        directory: output directory (local); must not exist yet.
        quantize: "none" (float32), "float16" or "dynamic_range" weights.

    Returns:
        The sorted file names.
    """
    from mgnet_tf import litert  # noqa: PLC0415

    if quantize not in litert.QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization. Received: quantize={quantize!r}; expected one of "
            f"{litert.QUANTIZATIONS}"
        )
    _refuse_existing(directory)
    if keras.backend.backend() != "tensorflow":
        return _export_on_tensorflow(model, directory, ["--format=litert", f"--quantize={quantize}"])
    _write_new_directory(
        directory, lambda temporary: litert.write_files(model, temporary, quantize), "litert"
    )
    return sorted(name for name in os.listdir(directory))


def _refuse_existing(directory):
    if tf.io.gfile.exists(directory):
        raise FileExistsError(
            f"{directory} exists; remove it or choose another --output, so that no "
            "earlier export is overwritten"
        )


def _write_new_directory(directory, write, kill_point):
    """Runs `write(temporary)` into `<directory>.partial`, then renames it into place:
    an interrupted export leaves no directory that looks complete."""
    temporary = directory.rstrip("/") + ".partial"
    marker = posixpath.join(temporary, PARTIAL_MARKER)
    if tf.io.gfile.exists(temporary):
        # Only an interrupted export of this same output is ours to replace.
        if not _marks(marker, directory):
            raise FileExistsError(
                f"{temporary} exists and is not an interrupted export of {directory}; "
                "move it away or choose another --output (it was left as it is)"
            )
        tf.io.gfile.rmtree(temporary)
    tf.io.gfile.makedirs(temporary)
    with tf.io.gfile.GFile(marker, "w") as file:
        file.write(_marker_text(directory))
    write(temporary)
    files.kill_point(kill_point)
    tf.io.gfile.rename(temporary, directory)
    tf.io.gfile.remove(posixpath.join(directory, PARTIAL_MARKER))


def _export_on_tensorflow(model, directory, flags=()):
    """An export in a child process on the TensorFlow backend."""
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "model.keras")
        model.save(path)
        output = run_on_tensorflow(
            ["-m", "mgnet_tf.export", f"--model={path}", f"--output={directory}", *flags],
            f"Exporting {directory}",
        )
    # The child's last line: "Wrote <output> with signatures [...]" (or "files").
    last = output.strip().splitlines()[-1]
    return ast.literal_eval(last.split(" with ", 1)[1].split(" ", 1)[1])


# Written into `<output>.partial` while an export is under way: a later export of the
# same output may replace a directory holding it, and no other.
PARTIAL_MARKER = "MGNET_EXPORT_IN_PROGRESS"


def _marker_text(directory):
    return f"mgnet_tf.export of {_absolute(directory)}\n"


def _absolute(path):
    return path if "://" in path else os.path.abspath(path)


def _marks(marker, directory):
    if not tf.io.gfile.exists(marker):
        return False
    with tf.io.gfile.GFile(marker) as file:
        return file.read() == _marker_text(directory)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m mgnet_tf.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", required=True, help="A .keras file from train.py.")
    parser.add_argument(
        "--output", required=True, help="The directory to write; must not exist."
    )
    parser.add_argument(
        "--format",
        default="saved_model",
        choices=("saved_model", "litert"),
        help="saved_model (TF Serving, the signatures above) or litert (.tflite files "
        "for LiteRT, mgnet_tf/litert.py).",
    )
    parser.add_argument(
        "--quantize",
        default="none",
        choices=("none", "float16", "dynamic_range"),
        help="LiteRT only: the weights' type (none: float32).",
    )
    args = parser.parse_args(argv)
    if args.quantize != "none" and args.format != "litert":
        parser.error("--quantize: only with --format=litert")
    import mgnet_tf  # noqa: F401, PLC0415 (registers the custom objects for loading)

    try:
        model = files.load_model(args.model)
    except files.ModelFileError as error:
        parser.error(f"--model: {error}")
    if args.format == "litert":
        names = export_litert(model, args.output, args.quantize)
        print(f"Wrote {args.output} with files {names}")
    else:
        names = export_saved_model(model, args.output)
        print(f"Wrote {args.output} with signatures {names}")


if __name__ == "__main__":
    main()
