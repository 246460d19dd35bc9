"""L-inf adversarial attacks on MGNet's final prediction: PGD and FGSM (Figure 4).

The attacks follow the paper's protocol: untargeted, L-inf, no random start, the
gradient of the cross-entropy of the last glimpse's prediction. The gradient is the
model's own backward pass in inference mode, so it flows through every glimpse: the
sampler, the backbone, the fusion and the localization network (with eq. 5's gradient
re-scaling, as in the reference code's autograd).

Two attack spaces are offered:

- `space="pixel"` (default): the images in [0, 1] are perturbed by at most `eps` per
  pixel and clipped to [0, 1] after every step. This is the usual threat model.
- `space="normalized"`: the paper's reference code, which attacked the NORMALIZED
  tensor z = (x - mean) / std with `eps` and `step_size` in normalized units and never
  clipped to the valid pixel range. In pixels that is a per-channel budget of
  `eps * std_c` (about 4.4x smaller than `eps` with the ImageNet std 0.229/0.224/0.225)
  and adversarial images that may leave [0, 1]. Numbers obtained this way are not
  comparable with pixel-space robustness at the same `eps`.
"""

import functools
import numbers

import keras
import numpy as np
from keras import ops

SPACES = ("pixel", "normalized")


def pgd(
    model,
    images,
    labels,
    eps=4 / 255,
    step_size=1 / 255,
    steps=10,
    space="pixel",
    num_glimpses=None,
):
    """Projected gradient descent (L-inf, no random start) against the last glimpse.

    Each step is x_{k+1} = clip_[0,1](Proj_{B(x, eps)}(x_k + step_size * sign(g_k))),
    with g_k the gradient with respect to x_k of the cross-entropy between `labels` and
    the prediction after the last glimpse, `model(x_k)["logits"][:, -1]`. Without a
    random start the attack is deterministic, so the first k steps of a K-step run are
    exactly the k-step attack (see `attack_curve`).

    With `space="normalized"` the same iteration runs on z = (x - mean) / std with `eps`
    and `step_size` in normalized units and without the [0, 1] clip, as the paper's
    reference code did; the result is returned in pixels, x' = x + (z' - z) * std
    (equal to z' * std + mean, and exactly x where nothing moved). In pixels each channel
    c then moves by at most `eps * std_c`, and x' may leave [0, 1].

    The step is compiled (a `tf.function`, or `jax.jit` on JAX) once per model, input
    shape, `space` and `num_glimpses`; `eps`, `step_size` and `steps` do not cause retracing.

    Args:
        model: an `MGNet` (or any model called as `model(x, training=False,
            num_glimpses=t)` that returns a dict with `logits` (B, t, classes) and has
            per-channel `mean` and `std` for the normalized space).
        images: float (B, H, W, C) in [0, 1], array or tensor.
        labels: int (B,), the true classes.
        eps: float >= 0, the L-inf budget (pixel units, or normalized units with
            `space="normalized"`).
        step_size: float > 0, the size of each signed-gradient step, in the same units.
        steps: int >= 1, the number of steps.
        space: "pixel" or "normalized", see above.
        num_glimpses: int, attack the prediction after this many glimpses (early exit);
            None means all of the model's glimpses.

    Returns:
        float32 tensor of the backend, same shape as `images`: the adversarial images
        in pixel space.

    Example:

    ```python
    import numpy as np
    import mgnet_tf
    from mgnet_tf import attacks

    model = mgnet_tf.MGNet("vanilla_cnn", num_classes=10, image_size=32,
                           num_glimpses=2, downsample=2, channels=1)
    images = np.random.rand(4, 32, 32, 1).astype("float32")
    labels = np.array([0, 1, 2, 3])
    adversarial = attacks.pgd(model, images, labels, eps=4 / 255, steps=20)
    float(np.abs(adversarial - images).max()) <= 4 / 255 + 1e-6  # True
    ```
    """
    images, labels, num_glimpses = _check_inputs(images, labels, space, num_glimpses)
    _check_eps(eps)
    _check_step_size(step_size)
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"`steps` must be an int >= 1. Received: steps={steps!r}")
    adversarial, _ = _run(
        model, images, labels, eps, step_size, int(steps), space, num_glimpses
    )
    return adversarial


def fgsm(model, images, labels, eps=4 / 255, space="pixel", num_glimpses=None):
    """Fast gradient sign method: one PGD step of size `eps`.

    x' = clip_[0,1](x + eps * sign(grad_x CE(labels, model(x)["logits"][:, -1]))), the
    same computation as `pgd(..., steps=1, step_size=eps)`; `eps=0` is allowed and
    returns the images unchanged.

    Args:
        model: an `MGNet`, as for `pgd`.
        images: float (B, H, W, C) in [0, 1].
        labels: int (B,), the true classes.
        eps: float >= 0, the L-inf budget and step size.
        space: "pixel" or "normalized", as for `pgd`.
        num_glimpses: int, attack the prediction after this many glimpses; None means
            all of them.

    Returns:
        float32 tensor of the backend, same shape as `images`: the adversarial images
        in pixel space.

    Example:

    ```python
    adversarial = attacks.fgsm(model, images, labels, eps=4 / 255)
    ```
    """
    images, labels, num_glimpses = _check_inputs(images, labels, space, num_glimpses)
    _check_eps(eps)
    adversarial, _ = _run(model, images, labels, eps, eps, 1, space, num_glimpses)
    return adversarial


def attack_curve(
    model,
    images,
    labels,
    steps_list,
    eps=4 / 255,
    step_size=1 / 255,
    space="pixel",
    num_glimpses=None,
    per_glimpse=False,
):
    """Correctness after PGD with each number of steps in `steps_list`, in one run.

    Without a random start, PGD is deterministic and the k-step attack is the first k
    steps of the K-step one (the prefix property), so a single run of
    `max(steps_list)` steps yields every point of Figure 4's x axis: the correctness
    after k steps equals that of `pgd(..., steps=k)` with the same arguments. It costs
    max(steps_list) forward-backward passes plus one forward pass: the prediction at
    x_k is the forward pass that step k + 1 computes anyway.

    Args:
        model: an `MGNet`, as for `pgd`.
        images: float (B, H, W, C) in [0, 1].
        labels: int (B,), the true classes.
        steps_list: non-empty iterable of ints >= 0; 0 is the clean accuracy.
        eps: float >= 0, the L-inf budget, as for `pgd`.
        step_size: float > 0, the step size, as for `pgd`.
        space: "pixel" or "normalized", as for `pgd`.
        num_glimpses: int, attack (and judge) the prediction after this many glimpses;
            None means all of them.
        per_glimpse: bool. False: each value is (B,) bool, correct after the last
            glimpse. True: each value is (B, t) bool, correct after each glimpse
            1..t of the images attacked through the last one (early-exit accuracy
            under the final-glimpse attack); column -1 is the False result.

    Returns:
        dict mapping each number of steps (ascending) to a numpy bool array.

    Example:

    ```python
    curve = attacks.attack_curve(model, images, labels, steps_list=[0, 1, 5, 20])
    accuracy = {k: float(correct.mean()) for k, correct in curve.items()}
    ```
    """
    images, labels, num_glimpses = _check_inputs(images, labels, space, num_glimpses)
    _check_eps(eps)
    _check_step_size(step_size)
    try:
        points = sorted(set(steps_list))
    except TypeError:
        points = None
    if not points or not all(
        isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 0
        for k in points
    ):
        raise ValueError(
            "`steps_list` must be a non-empty iterable of ints >= 0. "
            f"Received: steps_list={steps_list!r}"
        )
    points = [int(k) for k in points]
    _, logits = _run(
        model,
        images,
        labels,
        eps,
        step_size,
        points[-1],
        space,
        num_glimpses,
        record=points,
    )
    curve = {}
    for k in points:
        correct = np.argmax(np.asarray(logits[k]), axis=-1) == np.asarray(labels)[:, None]
        curve[k] = correct if per_glimpse else correct[:, -1]
    return curve


def _run(model, images, labels, eps, step_size, steps, space, num_glimpses, record=()):
    """Runs `steps` PGD steps; returns the adversarial pixels and, for each k in
    `record`, the logits (B, t, classes) at the k-step iterate."""
    origin = _to_attack_space(model, images, space)
    eps = ops.convert_to_tensor(eps, "float32")
    step_size = ops.convert_to_tensor(step_size, "float32")
    step, predict = _compiled()
    adversarial = origin
    recorded = {}
    # A Python loop over one compiled step: no retracing per step, and the iterates
    # the curve needs are at hand without a TensorArray.
    for k in range(steps):
        adversarial, logits = step(
            model, adversarial, origin, images, labels, eps, step_size, space, num_glimpses
        )
        if k in record:
            recorded[k] = logits
    pixels = _to_pixels(model, adversarial, origin, images, space)
    if steps in record:
        recorded[steps] = predict(model, pixels, num_glimpses)
    return pixels, recorded


def _step(model, adversarial, origin, images, labels, eps, step_size, space, num_glimpses):
    """One PGD step in attack space; returns the next iterate and the logits at the
    current one."""

    def loss_and_logits(adversarial):
        logits = model(
            _to_pixels(model, adversarial, origin, images, space),
            training=False,
            num_glimpses=num_glimpses,
        )["logits"]
        # A sum, not a mean: each image's gradient is its own loss's, not scaled by 1/B.
        loss = ops.sum(
            keras.losses.sparse_categorical_crossentropy(
                labels, ops.cast(logits[:, -1], "float32"), from_logits=True
            )
        )
        return loss, logits

    gradient, logits = _gradient(loss_and_logits, adversarial)
    stepped = adversarial + step_size * ops.sign(gradient)
    projected = ops.minimum(ops.maximum(stepped, origin - eps), origin + eps)
    if space == "pixel":
        projected = ops.clip(projected, 0.0, 1.0)
    return projected, logits


def _predict(model, images, num_glimpses):
    return model(images, training=False, num_glimpses=num_glimpses)["logits"]


def _gradient(loss_and_aux, x):
    """(d loss / d x, aux) of `loss_and_aux(x) -> (scalar loss, aux)`: the one
    backend-specific piece of the attacks (TensorFlow's tape, jax.grad)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415

        with tf.GradientTape() as tape:
            tape.watch(x)
            loss, aux = loss_and_aux(x)
        return tape.gradient(loss, x), aux
    if backend == "jax":
        import jax  # noqa: PLC0415

        return jax.grad(loss_and_aux, has_aux=True)(x)
    raise NotImplementedError(
        f"The attacks need input gradients, written for the TensorFlow and JAX "
        f"backends; this is the {backend} backend"
    )


@functools.lru_cache(maxsize=None)
def _compiled_for(backend):
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415

        return tf.function(_step), tf.function(_predict)
    if backend == "jax":
        import jax  # noqa: PLC0415

        static = ("model", "space", "num_glimpses")
        return (
            jax.jit(_step, static_argnames=static),
            jax.jit(_predict, static_argnames=("model", "num_glimpses")),
        )
    return _step, _predict


def _compiled():
    """The PGD step and the prediction, compiled once per backend (a tf.function or
    jax.jit: traced once per model, input shape, `space` and `num_glimpses`)."""
    return _compiled_for(keras.backend.backend())


def _to_attack_space(model, images, space):
    """The tensor the attack perturbs: the pixels, or z = (x - mean) / std."""
    if space == "pixel":
        return images
    mean = ops.convert_to_tensor(np.asarray(model.mean, "float32"))
    return (images - mean) / ops.convert_to_tensor(np.asarray(model.std, "float32"))


def _to_pixels(model, adversarial, origin, images, space):
    """Maps an iterate back to pixels. For z it is x + (z' - z) * std, which equals
    z' * std + mean but gives back x exactly where the attack did not move it (eps=0),
    and is what the model is fed during the attack, so predictions match `pgd`'s."""
    if space == "pixel":
        return adversarial
    return images + (adversarial - origin) * ops.convert_to_tensor(
        np.asarray(model.std, "float32")
    )


def _check_inputs(images, labels, space, num_glimpses):
    """Validates the arguments every attack takes; returns float32 images, int32
    labels and `num_glimpses` as a Python int (the model and the trace cache key on
    it) or None."""
    if space not in SPACES:
        raise ValueError(f"`space` must be one of {SPACES}. Received: space={space!r}")
    if num_glimpses is not None and (
        not isinstance(num_glimpses, numbers.Integral)
        or isinstance(num_glimpses, bool)
        or num_glimpses < 1
    ):
        raise ValueError(
            "`num_glimpses` must be None or an int >= 1. "
            f"Received: num_glimpses={num_glimpses!r}"
        )
    images = np.asarray(images)
    if images.ndim != 4 or not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            "`images` must be float (B, H, W, C) in [0, 1]. Received: images of "
            f"shape {tuple(images.shape)} and dtype {images.dtype.name}"
        )
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"`labels` must have shape (B,) = ({images.shape[0]},), one class per "
            f"image. Received: labels of shape {tuple(labels.shape)}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"`labels` must be integer classes. Received: labels of dtype "
            f"{labels.dtype.name}"
        )
    if num_glimpses is not None:
        num_glimpses = int(num_glimpses)
    return (
        ops.convert_to_tensor(images.astype("float32")),
        ops.convert_to_tensor(labels.astype("int32")),
        num_glimpses,
    )


def _check_eps(eps):
    if (
        not isinstance(eps, numbers.Real)
        or isinstance(eps, bool)
        or not 0 <= eps < float("inf")
    ):
        raise ValueError(f"`eps` must be a number >= 0. Received: eps={eps!r}")


def _check_step_size(step_size):
    if (
        not isinstance(step_size, numbers.Real)
        or isinstance(step_size, bool)
        or not 0 < step_size < float("inf")
    ):
        raise ValueError(
            f"`step_size` must be a number > 0. Received: step_size={step_size!r}"
        )
