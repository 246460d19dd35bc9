"""The training-recipe options that reproduce the official code where it differs from
our first reading of the paper (glimpse loss from glimpse 2, the official size
penalty, PyTorch's coupled weight decay and initialization, attention biases)."""

import os
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

import keras
from mgnet_tf import MGNet
from mgnet_tf.layers import FeatureFusion, LocalizationHead
from mgnet_tf.optimizers import CoupledSGD, sgd
from mgnet_tf.schedules import OneCycleMomentum, learning_rate_schedule


def _tiny(num_glimpses=3, **kwargs):
    return MGNet(
        **{
            "backbone": "vanilla_cnn",
            "num_classes": 5,
            "image_size": 32,
            "num_glimpses": num_glimpses,
            "downsample": 2,
            "channels": 1,
            **kwargs,
        }
    )


def _ce(logits, labels):
    """Per-example, per-step cross-entropy in float64 NumPy: (B, t)."""
    logits = np.asarray(logits, np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, labels[:, None, None], axis=-1)[..., 0]


def _batch(batch=4, classes=5, steps=3, seed=0):
    """A hand-made y_pred: random logits and glimpse parameters."""
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.2, 0.5, (batch, steps))
    scales[:, 0] = 1.0
    params = np.stack([scales, np.zeros_like(scales), np.zeros_like(scales)], -1)
    y_pred = {
        "logits": rng.normal(0, 2, (batch, steps, classes)).astype("float32"),
        "glimpse_logits": rng.normal(0, 2, (batch, steps, classes)).astype("float32"),
        "glimpse_params": params.astype("float32"),
    }
    return y_pred, np.arange(batch) % classes


def test_glimpse_loss_from_2_is_the_mean_over_glimpses_2_to_T():
    y_pred, labels = _batch()
    model = _tiny(3, alpha=0.6, glimpse_loss_from=2)
    expected = (
        0.6 * _ce(y_pred["glimpse_logits"][:, 1:], labels).mean(axis=1)
        + 0.4 * _ce(y_pred["logits"], labels).mean(axis=1)
    ).mean()
    loss = model.compute_loss(None, labels, {k: tf.constant(v) for k, v in y_pred.items()})
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


@pytest.mark.parametrize("first, zero_steps", [(1, []), (2, [0]), (3, [0, 1])])
def test_the_first_glimpse_logits_carry_no_loss_from_glimpse_2(first, zero_steps):
    y_pred, labels = _batch()
    model = _tiny(3, glimpse_loss_from=first)
    glimpse_logits = tf.Variable(y_pred["glimpse_logits"])
    with tf.GradientTape() as tape:
        loss = model.compute_loss(
            None,
            labels,
            {**{k: tf.constant(v) for k, v in y_pred.items()}, "glimpse_logits": glimpse_logits},
        )
    gradient = tape.gradient(loss, glimpse_logits).numpy()
    norms = np.abs(gradient).sum(axis=(0, 2))
    for step in range(3):
        assert (norms[step] == 0) == (step in zero_steps), norms


def test_glimpse_loss_from_3_is_the_mean_over_glimpses_3_to_T():
    y_pred, labels = _batch()
    model = _tiny(3, alpha=0.6, glimpse_loss_from=3)
    expected = (
        0.6 * _ce(y_pred["glimpse_logits"][:, 2:], labels)[:, 0]
        + 0.4 * _ce(y_pred["logits"], labels).mean(axis=1)
    ).mean()
    loss = model.compute_loss(None, labels, {k: tf.constant(v) for k, v in y_pred.items()})
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_ff_net_with_the_official_form_has_only_the_global_loss():
    # The official code sets alpha = 0 when T = 1: the loss is the plain CE.
    y_pred, labels = _batch(steps=1)
    model = _tiny(1, downsample=1, alpha=0.6, glimpse_loss_from=2)
    loss = model.compute_loss(None, labels, {k: tf.constant(v) for k, v in y_pred.items()})
    np.testing.assert_allclose(
        float(loss), _ce(y_pred["logits"], labels).mean(), rtol=1e-5
    )
    # Eq. 8 as written keeps the glimpse classifier on the whole image.
    paper = _tiny(1, downsample=1, alpha=0.6, glimpse_loss_from=1)
    loss = paper.compute_loss(None, labels, {k: tf.constant(v) for k, v in y_pred.items()})
    expected = 0.6 * _ce(y_pred["glimpse_logits"], labels).mean() + 0.4 * _ce(
        y_pred["logits"], labels
    ).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_ff_net_trains_without_the_unused_glimpse_classifier_warning():
    # With the glimpse loss from glimpse 2 and T = 1 the glimpse classifier gets no
    # gradient; Keras's warning about it (with advice about a missing loss) is silenced
    # for those two variables only.
    model = _tiny(1, downsample=1, alpha=0.6, glimpse_loss_from=2)
    assert not model.glimpse_loss_is_used
    images = np.random.default_rng(0).random((4, 32, 32, 1), np.float32)
    labels = np.arange(4) % 5
    with warnings.catch_warnings(record=True) as caught:
        model.compile(optimizer="sgd")
        model.fit(images, labels, epochs=1, batch_size=4, verbose=0)
        assert not [w for w in caught if "Gradients do not exist" in str(w.message)]
        # A variable other than the glimpse classifier's, alone or beside them, still warns.
        for names in (
            "['mg_net/classifier/kernel']",
            "['mg_net/glimpse_classifier/kernel', 'mg_net/fusion/query/kernel']",
        ):
            warnings.warn(
                f"Gradients do not exist for variables {names} when minimizing the loss.",
                UserWarning,
            )
    warned = [str(w.message) for w in caught if "Gradients do not exist" in str(w.message)]
    assert len(warned) == 2 and "fusion/query" in warned[1]


def test_the_glimpse_loss_is_used_wherever_a_glimpse_carries_it():
    assert _tiny(1, downsample=1, alpha=0.6, glimpse_loss_from=1).glimpse_loss_is_used
    assert _tiny(3, alpha=0.6, glimpse_loss_from=2).glimpse_loss_is_used
    assert not _tiny(3, alpha=0.0, glimpse_loss_from=1).glimpse_loss_is_used


def test_confident_last_size_penalty_on_a_hand_made_batch():
    # Two of four examples are confident after the last glimpse (CE < 0.4): only
    # their last glimpse's s is penalized, and the mean over the batch scales the
    # penalty by their fraction, as the official code's ratio * mean.
    logits = np.zeros((4, 3, 5), np.float32)
    labels = np.array([0, 1, 2, 3])
    logits[0, -1, 0] = 10.0  # confident, right
    logits[1, -1, 1] = 10.0  # confident, right
    logits[2, -1, 0] = 10.0  # confident, wrong: CE is large
    # example 3: uniform logits, CE = log 5 > 0.4
    scales = np.array(
        [[1.0, 0.3, 0.45], [1.0, 0.5, 0.25], [1.0, 0.5, 0.5], [1.0, 0.4, 0.4]], np.float32
    )
    params = np.stack([scales, np.zeros_like(scales), np.zeros_like(scales)], -1)
    y_pred = {
        "logits": tf.constant(logits),
        "glimpse_logits": tf.constant(logits),
        "glimpse_params": tf.constant(params),
    }
    common = dict(alpha=0.0, size_penalty=2.0, size_penalty_threshold=0.4)
    penalized = _tiny(3, size_penalty_mode="confident_last", **common)
    plain = _tiny(3, alpha=0.0)
    penalty = 2.0 * ((0.45 - 0.2) ** 2 + (0.25 - 0.2) ** 2) / 4
    np.testing.assert_allclose(
        float(penalized.compute_loss(None, labels, y_pred)),
        float(plain.compute_loss(None, labels, y_pred)) + penalty,
        rtol=1e-5,
    )
    # The paper's form: every learned glimpse of every example.
    everyone = _tiny(3, size_penalty_mode="all", **common)
    penalty = 2.0 * np.mean((scales[:, 1:] - 0.2) ** 2)
    np.testing.assert_allclose(
        float(everyone.compute_loss(None, labels, y_pred)),
        float(plain.compute_loss(None, labels, y_pred)) + penalty,
        rtol=1e-5,
    )


def test_an_unrescaled_size_penalty_reaches_the_localization_layer_unscaled():
    # Gradients w.r.t. the localization layer: without penalty (C), with the penalty
    # through eq. 5's re-scaling (A) and bypassing it (B). The loss values of A and B
    # are equal; the penalty's share of the gradient is 1 / grad_scale times larger
    # in B, the classification share (C) is the same.
    images = np.random.default_rng(3).random((4, 32, 32, 1)).astype("float32")
    labels = np.array([0, 1, 2, 3])
    common = dict(grad_scale=0.1, size_penalty_mode="all", alpha=0.6)
    models = {
        "C": _tiny(3, size_penalty=0.0, **common),
        "A": _tiny(3, size_penalty=0.5, **common),
        "B": _tiny(3, size_penalty=0.5, size_penalty_rescaled=False, **common),
    }
    models["C"](images)
    weights = models["C"].get_weights()
    losses, grads = {}, {}
    for name, model in models.items():
        model(images)
        model.set_weights(weights)
        with tf.GradientTape() as tape:
            y_pred = model(images, training=True)
            loss = model.compute_loss(images, labels, y_pred)
        losses[name] = float(loss)
        grads[name] = tape.gradient(loss, model.localization.dense.kernel).numpy()
    np.testing.assert_allclose(losses["A"], losses["B"], rtol=1e-6)
    assert losses["A"] > losses["C"]
    penalty_a, penalty_b = grads["A"] - grads["C"], grads["B"] - grads["C"]
    assert np.abs(penalty_a).max() > 1e-6
    np.testing.assert_allclose(penalty_b, penalty_a / 0.1, rtol=2e-3, atol=1e-7)


def _torch_sgd(weights, gradients, learning_rates, momentum, weight_decay):
    """torch.optim.SGD's documented update (dampening 0, no Nesterov) in NumPy."""
    w, buffer = weights.astype(np.float64), None
    for g, lr in zip(gradients, learning_rates):
        g = g + weight_decay * w
        buffer = g if buffer is None else momentum * buffer + g
        w = w - lr * buffer
    return w


def _apply(optimizer, weights, gradients):
    variable = keras.Variable(weights)
    for g in gradients:
        optimizer.apply_gradients([(tf.constant(g), variable)])
    return variable.numpy()


def test_coupled_weight_decay_gives_torch_sgds_update():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, 4)).astype("float32")
    gradients = [rng.normal(size=(3, 4)).astype("float32") for _ in range(3)]
    expected_one = _torch_sgd(weights, gradients[:1], [0.1], 0.9, 0.05)
    got = _apply(CoupledSGD(0.1, momentum=0.9, coupled_weight_decay=0.05), weights, gradients[:1])
    np.testing.assert_allclose(got, expected_one, rtol=1e-6)
    # Three steps under a changing rate (one-cycle): the buffer holds gradients.
    rates = [0.1, 0.3, 0.2]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0, 1], rates)  # steps 0, 1, 2
    got = _apply(CoupledSGD(schedule, momentum=0.9, coupled_weight_decay=0.05), weights, gradients)
    np.testing.assert_allclose(got, _torch_sgd(weights, gradients, rates, 0.9, 0.05), rtol=1e-5)
    # Keras' own weight decay is decoupled (kept out of the momentum): from the
    # second step on, another update for the same numbers.
    keras_sgd = _apply(
        keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.05), weights, gradients
    )
    torch_sgd = _torch_sgd(weights, gradients, [0.1] * 3, 0.9, 0.05)
    assert np.abs(keras_sgd - torch_sgd).max() > 1e-3


def test_coupled_sgd_with_cycled_momentum_matches_torch():
    """The official code's optimizer: torch SGD (momentum 0.9, weight decay 0.05)
    under OneCycleLR(pct_start=0.2) with its default cycle_momentum, 30 steps on a
    quadratic: the weights after every step, as torch gave them."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
    import torch_reference  # noqa: PLC0415 (NumPy only)

    with np.load(os.path.join(os.path.dirname(__file__), "data", "one_cycle_pytorch.npz")) as ref:
        expected = ref["official_sgd_weights"]
    total = torch_reference.OFFICIAL_TOTAL
    initial, curvature = torch_reference.quadratic_problem()
    assert expected.shape == (total, len(initial))

    def trajectory(momentum_schedule):
        optimizer = sgd(
            learning_rate_schedule("one_cycle", 0.1, total, warmup_fraction=0.2),
            0.9,
            torch_reference.OFFICIAL_WEIGHT_DECAY,
            "coupled",
            momentum_schedule=momentum_schedule,
        )
        variable = keras.Variable(initial.astype("float32"))
        weights = []
        for _ in range(total):
            gradient = curvature.astype("float32") * variable.numpy()
            optimizer.apply_gradients([(tf.constant(gradient), variable)])
            weights.append(variable.numpy())
        return np.stack(weights)

    got = trajectory(OneCycleMomentum(total, warmup_fraction=0.2))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # Held at 0.9 instead (the preset's default), the same steps end elsewhere.
    assert np.abs(trajectory(None)[-1] - expected[-1]).max() > 1e-3


def test_a_momentum_schedule_needs_the_coupled_update_and_survives_a_round_trip():
    with pytest.raises(ValueError, match="weight_decay_mode=coupled"):
        sgd(0.1, 0.9, 0.0, "decoupled", momentum_schedule=OneCycleMomentum(10))
    optimizer = sgd(0.1, 0.9, 1e-4, "coupled", momentum_schedule=OneCycleMomentum(10, 0.2))
    again = CoupledSGD.from_config(optimizer.get_config())
    assert isinstance(again.momentum_schedule, OneCycleMomentum)
    assert again.momentum_schedule.get_config() == OneCycleMomentum(10, 0.2).get_config()
    with pytest.raises(ValueError, match="momentum_schedule"):
        CoupledSGD(0.1, momentum=0.9, momentum_schedule=0.9)


def test_sgd_builder_and_coupled_sgd_round_trip():
    assert isinstance(sgd(0.1, 0.9, 1e-4, "coupled"), CoupledSGD)
    decoupled = sgd(0.1, 0.9, 1e-4, "decoupled")
    assert type(decoupled) is keras.optimizers.SGD and decoupled.weight_decay == 1e-4
    with pytest.raises(ValueError, match="weight_decay_mode"):
        sgd(0.1, 0.9, 1e-4, "l2")
    with pytest.raises(ValueError, match="coupled_weight_decay"):
        CoupledSGD(0.1, weight_decay=1e-4)
    optimizer = CoupledSGD(0.1, momentum=0.9, coupled_weight_decay=1e-4)
    again = CoupledSGD.from_config(optimizer.get_config())
    assert again.coupled_weight_decay == 1e-4 and again.momentum == 0.9


@pytest.mark.parametrize("mode", ["decoupled", "coupled"])
def test_global_clipnorm_scales_a_large_step_to_the_norm(mode):
    """One plain SGD step (no momentum, no decay) on two variables whose gradients have
    a joint norm of 13 (5 and 12): clipped at 2.6 the step is a fifth of the gradient,
    unclipped (None or 0) the gradient itself; a norm under the bound is untouched."""
    grads = [np.array([3.0, 4.0], "float32"), np.array([12.0], "float32")]

    def step(clipnorm, scale=1.0):
        variables = [keras.Variable(np.zeros(2, "float32")), keras.Variable(np.zeros(1, "float32"))]
        optimizer = sgd(0.5, 0.0, 0.0, mode, global_clipnorm=clipnorm)
        optimizer.apply_gradients([(tf.constant(g * scale), v) for g, v in zip(grads, variables)])
        return np.concatenate([v.numpy() for v in variables])

    full = -0.5 * np.concatenate(grads)
    np.testing.assert_allclose(step(2.6), full / 5, rtol=1e-6)
    np.testing.assert_allclose(step(None), full, rtol=1e-6)
    np.testing.assert_allclose(step(0.0), full, rtol=1e-6)
    np.testing.assert_allclose(step(2.6, scale=0.1), full * 0.1, rtol=1e-6)  # norm 1.3
    with pytest.raises(ValueError, match="global_clipnorm"):
        sgd(0.1, 0.9, 0.0, mode, global_clipnorm=-1.0)


def test_torch_initializer_gives_kaiming_normal_heads_and_torch_convolutions():
    model = _tiny(3, initializer="torch")
    token_dim = 128 + 3
    fusion = model.fusion.query_kernel.numpy()
    # N(0, 2 / fan_in): 17,161 draws pin the standard deviation to about 1%.
    np.testing.assert_allclose(fusion.std(), np.sqrt(2 / token_dim), rtol=0.03)
    assert np.abs(fusion).max() > 2.5 * np.sqrt(2 / token_dim)  # not truncated at 2 std
    for dense in (model.classifier, model.glimpse_classifier, model.localization.dense):
        assert not np.any(dense.bias.numpy())
    # PyTorch's default convolution: kernel and bias uniform in +-1/sqrt(fan_in).
    conv = model.backbone.get_layer("conv2")
    bound = 1 / np.sqrt(5 * 5 * 16)
    for values in (conv.kernel.numpy(), conv.bias.numpy()):
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.9 * bound
    keras_model = _tiny(3)
    assert not np.any(keras_model.backbone.get_layer("conv2").bias.numpy())
    np.testing.assert_allclose(
        keras_model.fusion.query_kernel.numpy().std(), np.sqrt(1 / token_dim), rtol=0.03
    )


def test_attention_bias_adds_zero_started_biases_that_shift_the_output():
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(2, 3, 6)).astype("float32")
    plain, biased = FeatureFusion(), FeatureFusion(use_bias=True)
    plain.build(tokens.shape)
    biased.build(tokens.shape)
    assert len(biased.weights) == len(plain.weights) + 4
    for name in ("query", "key", "value", "output"):
        getattr(biased, f"{name}_kernel").assign(getattr(plain, f"{name}_kernel"))
        assert not np.any(getattr(biased, f"{name}_bias").numpy())
    np.testing.assert_allclose(biased(tokens).numpy(), plain(tokens).numpy(), atol=1e-6)
    biased.output_bias.assign(rng.normal(size=6).astype("float32"))
    assert np.abs(biased(tokens).numpy() - plain(tokens).numpy()).max() > 1e-3
    again = FeatureFusion.from_config(biased.get_config())
    assert again.use_bias


@pytest.mark.parametrize("rescale_at, kernel_factor", [("output", 0.05), ("input", 1.0)])
def test_rescale_at_decides_whether_the_localization_layer_learns_slower(
    rescale_at, kernel_factor
):
    # Reference: the same head without re-scaling (s = 1). Eq. 5 at the output scales
    # every gradient below the sigmoid by s, the layer's own included; at the input
    # only the gradient into the fused feature is scaled.
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(4, 7)).astype("float32"))
    target = tf.constant(rng.normal(size=(4, 3)).astype("float32"))

    def grads(head):
        head(features)
        with tf.GradientTape() as tape:
            tape.watch(features)
            out = head(features)
            loss = tf.reduce_sum(out * target)
        return out, tape.gradient(loss, [features, head.dense.kernel, head.dense.bias])

    reference = LocalizationHead(grad_scale=1.0)
    reference(features)
    head = LocalizationHead(grad_scale=0.05, rescale_at=rescale_at)
    head(features)
    head.set_weights(reference.get_weights())
    out, (d_features, d_kernel, d_bias) = grads(head)
    ref_out, (r_features, r_kernel, r_bias) = grads(reference)
    np.testing.assert_allclose(out.numpy(), ref_out.numpy(), atol=1e-7)
    np.testing.assert_allclose(d_features.numpy(), 0.05 * r_features.numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(d_kernel.numpy(), kernel_factor * r_kernel.numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(d_bias.numpy(), kernel_factor * r_bias.numpy(), rtol=1e-5, atol=1e-8)
    assert LocalizationHead.from_config(head.get_config()).rescale_at == rescale_at


def test_relative_placement_moves_the_glimpse_just_taken_by_up_to_its_half_side():
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(4, 7)).astype("float32"))
    previous = tf.constant(
        [[0.25, 0.1, -0.2], [0.25, 0.7, 0.7], [1.0, 0.0, 0.0], [0.3, -0.5, 0.4]], tf.float32
    )
    head = LocalizationHead(grad_scale=0.05, placement="relative")
    absolute = LocalizationHead(grad_scale=0.05)
    head(features, previous)
    absolute(features)
    absolute.set_weights(head.get_weights())
    raw = tf.sigmoid(head.dense(features)).numpy()
    out = head(features, previous).numpy()
    scale = raw[:, :1] * 0.3 + 0.2
    np.testing.assert_allclose(out[:, :1], scale, rtol=1e-6)  # s as in eq. 4
    move = 2 * raw[:, 1:] - 1
    limit = 1 - scale
    expected = np.clip(previous.numpy()[:, 1:] + move * previous.numpy()[:, :1], -limit, limit)
    np.testing.assert_allclose(out[:, 1:], expected, rtol=1e-5, atol=1e-6)
    # Example 2 (at 0.7, 0.7) is clipped so that its window stays inside the image.
    assert np.all(np.abs(out[:, 1:]) <= limit + 1e-6)
    # From glimpse 1 (the whole image, s = 1 at the centre) the move is eq. 4's centre
    # before its (1 - s) squeeze: the same point where eq. 4 does not clip.
    np.testing.assert_allclose(
        out[2, 1:], np.clip(move[2], -limit[2], limit[2]), rtol=1e-5, atol=1e-6
    )
    # A zero output of the Dense layer keeps the glimpse where it is.
    still = LocalizationHead(placement="relative", kernel_initializer="zeros")
    np.testing.assert_allclose(still(features, previous).numpy()[[0, 3], 1:], previous.numpy()[[0, 3], 1:], atol=1e-7)
    # No gradient into the previous glimpse's parameters; the layer's own are re-scaled.
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(previous)
        loss = tf.reduce_sum(head(features, previous)[:, 1:])
    assert tape.gradient(loss, previous) is None
    assert tape.gradient(loss, head.dense.kernel) is not None
    assert LocalizationHead.from_config(head.get_config()).placement == "relative"
    with pytest.raises(ValueError, match="previous"):
        head(features)
    with pytest.raises(ValueError, match="placement"):
        LocalizationHead(placement="both")


def test_relative_placement_in_the_model_follows_the_glimpse_before():
    """MGNet(placement='relative') feeds each glimpse's (s, x, y) to the next step: with
    a localization layer that always says "move right and up by 0.46 of the half
    side", the glimpses walk from the centre until the image's edge stops them, where
    eq. 4 puts every glimpse at one point."""
    images = np.random.default_rng(1).random((2, 32, 32, 1)).astype("float32")
    move = 2 * (1 / (1 + np.exp(-1.0))) - 1  # sigmoid(1) -> 0.462
    walks = {}
    for placement in ("relative", "absolute"):
        model = _tiny(4, placement=placement)
        kernel, _ = model.localization.dense.get_weights()
        model.localization.dense.set_weights([np.zeros_like(kernel), np.array([0.0, 1.0, -1.0], "float32")])
        walks[placement] = model(images)["glimpse_params"].numpy()
    s = 0.35  # sigmoid(0) between a_min = 0.2 and a_max = 0.5
    x = [0.0, move, min(move + s * move, 1 - s), min(move + 2 * s * move, 1 - s)]
    np.testing.assert_allclose(walks["relative"][:, :, 1], [x, x], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(walks["relative"][:, :, 2], [[-v for v in x]] * 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(walks["absolute"][:, 1:, 1], move * (1 - s), rtol=1e-5)
    loaded = MGNet.from_config(_tiny(3, placement="relative").get_config())
    assert loaded.placement == "relative" and loaded.localization.placement == "relative"
    with pytest.raises(ValueError, match="placement"):
        _tiny(3, placement="both")


def test_global_loss_weights_weigh_each_glimpse_of_both_losses():
    """The official --n_iter_coef: (0, 1, 3) leaves glimpse 1 out of the global loss and
    weighs glimpse 3 three times glimpse 2 in both losses (the glimpse loss covers
    glimpses 2..T, the same weights normalized again)."""
    y_pred, labels = _batch()
    model = _tiny(3, alpha=0.6, glimpse_loss_from=2, global_loss_weights=(0, 1, 3))
    ce_global = _ce(y_pred["logits"], labels)
    ce_glimpse = _ce(y_pred["glimpse_logits"], labels)
    expected = (
        0.6 * (ce_glimpse[:, 1] + 3 * ce_glimpse[:, 2]) / 4
        + 0.4 * (ce_global[:, 1] + 3 * ce_global[:, 2]) / 4
    ).mean()
    loss = model.compute_loss(None, labels, {k: tf.constant(v) for k, v in y_pred.items()})
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    # Equal weights are eq. 7's mean, whatever their scale.
    equal = _tiny(3, alpha=0.6, glimpse_loss_from=2, global_loss_weights=(2, 2, 2))
    plain = _tiny(3, alpha=0.6, glimpse_loss_from=2)
    batch = {k: tf.constant(v) for k, v in y_pred.items()}
    np.testing.assert_allclose(
        float(equal.compute_loss(None, labels, batch)),
        float(plain.compute_loss(None, labels, batch)),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "weights", [(1, 1), (1, -1, 1), (0, 0, 0), (1, 0, 0)]
)
def test_bad_global_loss_weights_name_the_value(weights):
    # (1, 0, 0): nothing left for the glimpse loss, which starts at glimpse 2.
    with pytest.raises(ValueError, match="global_loss_weights"):
        _tiny(3, glimpse_loss_from=2, global_loss_weights=weights)


def test_new_options_survive_a_keras_round_trip(tmp_path):
    options = dict(
        glimpse_loss_from=2,
        size_penalty_mode="confident_last",
        size_penalty_threshold=0.3,
        initializer="torch",
        attention_bias=True,
        rescale_at="input",
        placement="relative",
        size_penalty_rescaled=False,
        mean=[0.1307],
        std=[0.3081],
        global_loss_weights=[0.0, 1.0, 1.0],
    )
    model = _tiny(3, **options)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for key, value in options.items():
        expected = tuple(value) if key in ("mean", "std", "global_loss_weights") else value
        assert getattr(loaded, key) == expected
    images = np.random.rand(2, 32, 32, 1).astype("float32")
    np.testing.assert_allclose(
        loaded(images)["logits"].numpy(), model(images)["logits"].numpy(), atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"glimpse_loss_from": 4}, "glimpse_loss_from"),  # past T = 3
        ({"glimpse_loss_from": 0}, "glimpse_loss_from"),
        ({"glimpse_loss_from": 2.0}, "glimpse_loss_from"),
        ({"size_penalty_mode": "last"}, "size_penalty_mode"),
        ({"initializer": "he"}, "initializer"),
        ({"rescale_at": "after"}, "rescale_at"),
    ],
)
def test_bad_options_name_the_value(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _tiny(3, **kwargs)


def test_a_model_trained_with_coupled_weight_decay_loads_where_only_mgnet_tf_is_imported(
    tmp_path,
):
    # evaluate.py and mgnet_tf.export import mgnet_tf, not mgnet_tf.optimizers: the
    # compiled optimizer must still deserialize (it did not: "Could not locate class
    # 'CoupledSGD'").
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    model = _tiny(2)
    model.compile(optimizer=sgd(0.1, 0.9, 1e-4, "coupled"))
    images = np.zeros((2, 32, 32, 1), "float32")
    model.fit(images, np.array([0, 1]), epochs=1, verbose=0)
    path = tmp_path / "coupled.keras"
    model.save(path)
    script = (
        "import sys, keras, mgnet_tf\n"
        f"model = keras.saving.load_model({str(path)!r})\n"
        "print(type(model.optimizer).__name__, model.optimizer.coupled_weight_decay)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["CoupledSGD", "0.0001"]


def _blind(model, move=(0.0, 0.0)):
    """A localization layer blind to the glimpse: its Dense(3) has a zero kernel, so
    every relative move is the same, `move` logits (0: stay where the glimpse is; 10:
    as far right or down as the half side allows, into the image's corner)."""
    kernel, _ = model.localization.dense.get_weights()
    bias = np.array([0.0, *move], "float32")
    model.localization.dense.set_weights([np.zeros_like(kernel), bias])
    return model


@pytest.mark.parametrize("radius", [0.5, 1.0])
def test_shift_consistency_of_a_localization_blind_to_content_is_the_shift(radius):
    """A localization that ignores what it sees proposes, from a glimpse shifted by d,
    a centre off by d: the loss is then E[(d_x / h)^2 + (d_y / h)^2] for d uniform in
    +-radius * h per axis, 2 radius^2 / 3, times the weight; a quarter of the batch
    takes the shifted glimpse. Without training, or with weight 0, no loss and no
    extra backbone pass."""
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).random((1600, 32, 32, 1)).astype("float32")
    model = _blind(
        _tiny(3, placement="relative", shift_consistency=2.0, shift_consistency_radius=radius)
    )
    calls = []
    backbone_call = model.backbone.call
    model.backbone.call = lambda x, *a, **k: calls.append(x.shape[0]) or backbone_call(x, *a, **k)
    y_pred = model(images, training=True)
    # Three glimpses of the whole batch, and glimpse 2 shifted and again in place for a
    # quarter of it (glimpse 3 is the last: nothing follows it to refine).
    assert calls == [1600, 1600, 400, 400, 1600]
    (loss,) = model.losses
    np.testing.assert_allclose(float(loss), 2.0 * 2 * radius**2 / 3, rtol=0.06)
    labels = np.arange(1600) % 5
    with_shift = float(model.compute_loss(images, labels, y_pred))
    model(images[:4], training=False)
    assert model.losses == []
    without = float(model.compute_loss(images, labels, y_pred))
    np.testing.assert_allclose(with_shift - without, float(loss), rtol=1e-5)
    plain = _tiny(3, placement="relative")
    plain(images[:8], training=True)
    assert plain.losses == [] and not plain._shift_seed


def test_shift_consistency_leaves_out_glimpses_a_shift_could_take_across_the_edge():
    """A glimpse in the corner, or near enough to an edge that some allowed shift would
    cross it, is not counted: a window across the edge shows the sampler's padding (a
    cue of the shift that is not the item), and counting only the shifts that stay
    inside would bias them towards the middle. Pushed into the corner, a blind
    localization pays nothing; 0.05 inside the reach of the largest shift, the full
    2 r^2 / 3."""
    images = np.random.default_rng(0).random((1600, 32, 32, 1)).astype("float32")
    for logit, expected in ((10.0, 0.0), (None, 2 * 0.5**2 / 3)):
        keras.utils.set_random_seed(0)
        model = _tiny(3, placement="relative", shift_consistency=1.0)
        if logit is None:
            # Glimpse 2 at x = 1 - 1.5 s - 0.05 from glimpse 1's move, s = 0.35.
            x = 1 - 1.5 * 0.35 - 0.05
            logit = float(np.log((1 + x) / (1 - x)))
        model = _blind(model, (logit, -logit))
        y_pred = model(images, training=True)
        where = y_pred["glimpse_params"].numpy()[:, 1]
        assert np.all(np.abs(where[:, 1:]) > 0.4)  # glimpse 2 off the middle
        (loss,) = model.losses
        np.testing.assert_allclose(float(loss), expected, rtol=0.06, atol=1e-7)


def test_window_inside_image_by_hand():
    from mgnet_tf.mgnet import window_inside_image  # noqa: PLC0415

    params = np.array(
        [
            [0.25, 0.0, 0.0],  # in the middle
            [0.25, 0.75, -0.75],  # in the corner, touching both edges
            [0.25, 0.8, 0.0],  # past the right edge by 0.05
            [0.3, 0.0, -0.71],  # past the top edge by 0.01
            [1.0, 0.0, 0.0],  # the whole image
        ],
        "float32",
    )
    np.testing.assert_array_equal(window_inside_image(params), [1, 1, 0, 0, 1])


def test_shift_consistency_gradient_bypasses_the_rescaling():
    """The loss reaches the localization layer at full strength whatever eq. 5's factor:
    the same weights and shifts give the same gradient with grad_scale 0.1 and 0.02."""
    images = np.random.default_rng(1).random((16, 32, 32, 1)).astype("float32")
    grads = []
    for grad_scale in (0.1, 0.02):
        keras.utils.set_random_seed(3)
        model = _tiny(
            4, placement="relative", shift_consistency=1.0, grad_scale=grad_scale
        )
        with tf.GradientTape() as tape:
            model(images, training=True)
            loss = tf.add_n(model.losses)
        grads.append(tape.gradient(loss, model.localization.dense.kernel).numpy())
    assert np.abs(grads[0]).max() > 1e-6
    # Re-scaled, they would differ 5 times; the bypass (x / g + stop_gradient(x - x / g))
    # rounds the forward value in float32 by about 1e-7 / g, hence 1e-3.
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-3, atol=1e-8)


def test_shift_consistency_needs_relative_placement_and_a_glimpse_to_refine():
    with pytest.raises(ValueError, match="placement='relative'"):
        _tiny(3, shift_consistency=1.0)
    with pytest.raises(ValueError, match="num_glimpses >= 3"):
        _tiny(2, placement="relative", shift_consistency=1.0)
    with pytest.raises(ValueError, match="shift_consistency_radius"):
        _tiny(3, placement="relative", shift_consistency=1.0, shift_consistency_radius=0.0)
    with pytest.raises(ValueError, match="shift_consistency"):
        _tiny(3, placement="relative", shift_consistency=-1.0)
    model = _tiny(3, placement="relative", shift_consistency=0.5, shift_consistency_radius=0.3)
    loaded = MGNet.from_config(model.get_config())
    assert (loaded.shift_consistency, loaded.shift_consistency_radius) == (0.5, 0.3)


def test_spatial_move_is_the_soft_argmax_of_the_cells_centres():
    """A 2 x 4 map whose channel 0 is 1 in one cell and 0 elsewhere: with a large score
    on channel 0 the move is that cell's centre ((2j + 1) / w - 1, (2i + 1) / h - 1 in
    half sides); with two equally hot cells, their midpoint; with zero scores, the mean
    of all the centres (no move)."""
    head = LocalizationHead(placement="spatial", map_channels=3)
    head.build((None, 7))
    head.cell_scores.set_weights([np.array([[50.0], [0.0], [0.0]], "float32"), np.zeros(1, "float32")])
    fmap = np.zeros((3, 2, 4, 3), "float32")
    fmap[0, 1, 0, 0] = 1.0  # row 1, column 0: (-0.75, 0.5)
    fmap[1, 0, 3, 0] = 1.0  # row 0, column 3: (0.75, -0.5)
    fmap[2, 0, 1, 0] = fmap[2, 1, 2, 0] = 1.0  # (-0.25, -0.5) and (0.25, 0.5): (0, 0)
    fmap[..., 1] = 3.0  # a channel the scores ignore
    np.testing.assert_allclose(
        head.spatial_move(tf.constant(fmap)).numpy(),
        [[-0.75, 0.5], [0.75, -0.5], [0.0, 0.0]],
        atol=1e-6,
    )
    head.cell_scores.set_weights([np.zeros((3, 1), "float32"), np.zeros(1, "float32")])
    np.testing.assert_allclose(head.spatial_move(tf.constant(fmap)).numpy(), 0.0, atol=1e-7)


def test_spatial_placement_adds_the_soft_argmax_to_the_relative_move():
    rng = np.random.default_rng(2)
    features = tf.constant(rng.normal(size=(3, 7)).astype("float32"))
    previous = tf.constant([[0.25, 0.1, -0.2], [1.0, 0.0, 0.0], [0.3, 0.6, 0.4]], tf.float32)
    fmap = np.zeros((3, 3, 3, 2), "float32")
    fmap[0, 0, 2, 0] = fmap[1, 2, 0, 0] = fmap[2, 1, 2, 0] = 1.0
    head = LocalizationHead(grad_scale=0.05, placement="spatial", map_channels=2)
    relative = LocalizationHead(grad_scale=0.05, placement="relative")
    head(features, previous, feature_map=tf.constant(fmap))
    relative(features, previous)
    relative.set_weights(head.get_weights()[:2])  # the same Dense(3)
    head.cell_scores.set_weights([np.array([[40.0], [0.0]], "float32"), np.zeros(1, "float32")])
    cells = np.array([[2 / 3, -2 / 3], [-2 / 3, 2 / 3], [2 / 3, 0.0]])  # (x, y) of the hot cells
    raw = tf.sigmoid(head.dense(features)).numpy()
    scale = raw[:, :1] * 0.3 + 0.2
    move = 2 * raw[:, 1:] - 1 + cells
    limit = 1 - scale
    expected = np.clip(previous.numpy()[:, 1:] + move * previous.numpy()[:, :1], -limit, limit)
    out = head(features, previous, feature_map=tf.constant(fmap)).numpy()
    np.testing.assert_allclose(out[:, :1], scale, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1:], expected, rtol=1e-5, atol=1e-6)
    # With zero scores it is the relative placement.
    head.cell_scores.set_weights([np.zeros((2, 1), "float32"), np.zeros(1, "float32")])
    np.testing.assert_allclose(
        head(features, previous, feature_map=tf.constant(fmap)).numpy(),
        relative(features, previous).numpy(),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="feature_map"):
        head(features, previous)
    with pytest.raises(ValueError, match="map_channels"):
        LocalizationHead(placement="spatial")
    assert LocalizationHead.from_config(head.get_config()).map_channels == 2


def _spatial_head_case(seed):
    """Inputs of a spatial `LocalizationHead` (fused features (2, 5), a 3 x 3 x 4 map,
    the glimpses just taken) and weights for it with a non-zero cell-score kernel, so
    that the gradient reaches the map."""
    rng = np.random.default_rng(seed)
    features = tf.constant(rng.normal(size=(2, 5)).astype("float32"))
    fmap = tf.constant(rng.normal(size=(2, 3, 3, 4)).astype("float32"))
    previous = tf.constant([[0.3, 0.0, 0.1], [0.25, -0.2, 0.0]], tf.float32)
    weights = [
        rng.normal(size=(5, 3)).astype("float32"),
        np.zeros(3, "float32"),
        rng.normal(size=(4, 1)).astype("float32"),
        np.zeros(1, "float32"),
    ]
    return features, fmap, previous, weights


@pytest.mark.parametrize("rescale_at", ["output", "input"])
def test_spatial_move_gradient_passes_the_rescaling(rescale_at):
    """Eq. 5's factor re-scales the soft-argmax's gradient into the feature map (the
    backbone), and into its score projection where the re-scaling sits after it."""
    features, fmap, previous, weights = _spatial_head_case(seed=3)
    grads = []
    for grad_scale in (0.1, 0.02):
        head = LocalizationHead(grad_scale, placement="spatial", map_channels=4, rescale_at=rescale_at)
        head(features, previous, feature_map=fmap)
        head.set_weights(weights)
        with tf.GradientTape() as tape:
            tape.watch(fmap)
            loss = tf.reduce_sum(head(features, previous, feature_map=fmap)[:, 1:] ** 2)
        map_grad, score_grad = tape.gradient(loss, [fmap, head.cell_scores.kernel])
        grads.append((map_grad.numpy(), score_grad.numpy()))
        assert np.abs(grads[-1][0]).max() > 0
    (map_before, score_before), (map_after, score_after) = grads
    # The gradient into the backbone's map is re-scaled either way; the projection's
    # own only where the re-scaling follows it ("output"), as for the Dense(3) layer.
    np.testing.assert_allclose(map_before, 5 * map_after, rtol=1e-4, atol=1e-8)
    factor = 5 if rescale_at == "output" else 1
    np.testing.assert_allclose(score_before, factor * score_after, rtol=1e-4, atol=1e-8)


def test_spatial_rescale_at_input_frees_only_the_cell_scores():
    """rescale_at="output" with spatial_rescale_at="input": the cell scores learn at
    the full rate, while the gradient into the backbone's map and the Dense(3) layer's
    stay re-scaled by eq. 5's factor; the forward pass does not change."""
    grad_scale = 0.05
    features, fmap, previous, weights = _spatial_head_case(seed=4)
    results = {}
    for spatial_rescale_at in (None, "input"):
        head = LocalizationHead(
            grad_scale, placement="spatial", map_channels=4, spatial_rescale_at=spatial_rescale_at
        )
        head(features, previous, feature_map=fmap)
        head.set_weights(weights)
        with tf.GradientTape() as tape:
            tape.watch(fmap)
            out = head(features, previous, feature_map=fmap)
            loss = tf.reduce_sum(out[:, 1:] ** 2)
        grads = tape.gradient(loss, [fmap, head.cell_scores.kernel, head.dense.kernel])
        results[spatial_rescale_at] = (out.numpy(), *(g.numpy() for g in grads))
    (out_default, map_default, score_default, dense_default) = results[None]
    (out_free, map_free, score_free, dense_free) = results["input"]
    np.testing.assert_allclose(out_free, out_default, rtol=1e-6, atol=1e-7)
    assert np.abs(score_default).max() > 0 and np.abs(map_default).max() > 0
    np.testing.assert_allclose(score_free, score_default / grad_scale, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(map_free, map_default, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(dense_free, dense_default, rtol=1e-4, atol=1e-8)
    config = LocalizationHead.from_config(head.get_config()).get_config()
    assert config["spatial_rescale_at"] == "input"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"placement": "spatial", "spatial_rescale_at": "middle"}, "'middle'"),
        ({"placement": "relative", "spatial_rescale_at": "input"}, "placement='relative'"),
    ],
)
def test_spatial_rescale_at_errors_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MGNet(num_classes=10, image_size=112, channels=1, backbone="vanilla_cnn", **kwargs)
    with pytest.raises(ValueError, match=message):
        LocalizationHead(map_channels=4, **kwargs)


def test_spatial_rescale_at_survives_a_keras_round_trip(tmp_path):
    model = MGNet(
        num_classes=10,
        image_size=112,
        channels=1,
        backbone="vanilla_cnn",
        num_glimpses=3,
        placement="spatial",
        spatial_rescale_at="input",
    )
    images = np.random.default_rng(5).random((2, 112, 112, 1)).astype("float32")
    loaded = _saved_and_loaded(model, images, tmp_path)
    assert loaded.spatial_rescale_at == "input"
    assert loaded.localization.spatial_rescale_at == "input"


def _saved_and_loaded(model, images, tmp_path):
    """`model` through a .keras file; the loaded one places the glimpses the same."""
    out = model(images)["glimpse_params"].numpy()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(images)["glimpse_params"].numpy(), out, atol=1e-6)
    return loaded


def test_spatial_placement_in_the_model_reads_the_backbones_map(tmp_path):
    images = np.random.default_rng(4).random((2, 64, 64, 1)).astype("float32")
    model = _tiny(3, placement="spatial", image_size=64)
    assert model.localization.map_channels == 128  # the vanilla CNN's last convolution
    glimpse = model.sampler(model.normalize(images), tf.constant([[0.5, 0.1, -0.2]] * 2))
    fmap = model.backbone_map(glimpse)
    # A 32 px glimpse: 28 after the unpadded 5 x 5 convolution, then three poolings.
    assert tuple(fmap.shape) == (2, 3, 3, 128)
    # Pooling the map is the backbone's output: the features the model is trained on.
    np.testing.assert_allclose(
        np.mean(fmap.numpy(), axis=(1, 2)), model.backbone(glimpse).numpy(), rtol=1e-5, atol=1e-6
    )
    # The sub-model shares the backbone's weights: no new variables but the scores.
    relative = _tiny(3, placement="relative", image_size=64)
    assert len(model.weights) == len(relative.weights) + 2
    kernel, _ = model.localization.cell_scores.get_weights()
    model.localization.cell_scores.set_weights([np.full_like(kernel, 0.3), np.zeros(1, "float32")])
    out = model(images)["glimpse_params"].numpy()
    assert _saved_and_loaded(model, images, tmp_path).placement == "spatial"
    # The loop hands each glimpse's own map to the next placement: glimpse 2 is
    # where the head puts it from glimpse 1's fused feature and map (the whole image).
    normalized = model.normalize(images)
    first = model.glimpse_step(normalized, None, model.first_glimpse_params(2))
    whole = model.sampler(normalized, model.first_glimpse_params(2))
    by_hand = model.localization(
        first["fused"], model.first_glimpse_params(2), feature_map=model.backbone_map(whole)
    )
    np.testing.assert_allclose(out[:, 1], by_hand.numpy(), atol=1e-6)
    # FF-Net (one glimpse) has no localization: the placement changes nothing.
    ff = _tiny(1, placement="spatial")
    assert ff.backbone_map is None and ff.localization is None
    with pytest.raises(ValueError, match="placement='relative'"):
        _tiny(3, placement="spatial", image_size=64, shift_consistency=1.0)
    with pytest.raises(ValueError, match="at least 2 cells.*16 px"):
        _tiny(3, placement="spatial")  # a 16 px glimpse: a 1 x 1 map


def test_spatial_placement_needs_a_backbone_that_ends_with_average_pooling():
    inputs = keras.Input((16, 16, 1))
    flat = keras.layers.Dense(8, name="head")(keras.layers.Flatten()(inputs))
    backbone = keras.Model(inputs, flat, name="flat_net")
    with pytest.raises(ValueError, match="GlobalAveragePooling2D.*flat_net"):
        _tiny(3, backbone=backbone, placement="spatial")


def test_placement_map_scores_the_cells_of_the_named_layer(tmp_path):
    images = np.random.default_rng(5).random((2, 64, 64, 1)).astype("float32")
    model = _tiny(3, placement="spatial", image_size=64, placement_map="conv3")
    assert model.localization.map_channels == 64  # conv3's filters, not conv4's 128
    params = tf.constant([[0.5, 0.1, -0.2]] * 2)
    normalized = model.normalize(images)
    glimpse = model.sampler(normalized, params)
    # conv3's output, by the backbone's own layers: a 32 px glimpse is 28 after the
    # unpadded convolution, 7 after two poolings.
    conv3 = keras.Model(model.backbone.inputs, model.backbone.get_layer("conv3").output)
    expected_map = conv3(glimpse).numpy()
    assert expected_map.shape == (2, 7, 7, 64)
    tokens = model.glimpse_step(normalized, None, model.first_glimpse_params(2))["tokens"]
    step = model.glimpse_step(normalized, tokens, params)
    np.testing.assert_allclose(step["feature_map"].numpy(), expected_map, rtol=1e-5, atol=1e-6)
    # The pooled feature is still the backbone's output (the last map's mean).
    np.testing.assert_allclose(
        step["tokens"][:, -1, :-3].numpy(), model.backbone(glimpse).numpy(), rtol=1e-5, atol=1e-6
    )
    # The next glimpse is the head's move from that map: with every channel weighted
    # 0.2, the soft-argmax of the cells' summed activations, by hand.
    kernel, _ = model.localization.cell_scores.get_weights()
    model.localization.cell_scores.set_weights([np.full_like(kernel, 0.2), np.zeros(1, "float32")])
    scores = expected_map.reshape(2, -1, 64) @ np.full((64,), 0.2, "float32")
    weights = np.exp(scores - scores.max(1, keepdims=True))
    weights = (weights / weights.sum(1, keepdims=True)).reshape(2, 7, 7)
    centres = (2 * np.arange(7) + 1) / 7 - 1
    soft_x = (weights.sum(1) * centres).sum(-1)
    soft_y = (weights.sum(2) * centres).sum(-1)
    # A map of zeros scores every cell alike: the relative move alone.
    relative = model.localization(
        step["fused"], params, clip=False, feature_map=np.zeros_like(expected_map)
    ).numpy()
    spatial = model.next_glimpse_params(step, params, clip=False).numpy()
    np.testing.assert_allclose(spatial[:, 1] - relative[:, 1], soft_x * 0.5, atol=1e-5)
    np.testing.assert_allclose(spatial[:, 2] - relative[:, 2], soft_y * 0.5, atol=1e-5)
    # Saved and loaded with its setting.
    assert _saved_and_loaded(model, images, tmp_path).placement_map == "conv3"


def test_placement_map_errors_name_the_setting():
    with pytest.raises(ValueError, match="'conv9' is not a layer.*conv3"):
        _tiny(3, placement="spatial", image_size=64, placement_map="conv9")
    with pytest.raises(ValueError, match="'avgpool'.*channels-last"):
        _tiny(3, placement="spatial", image_size=64, placement_map="avgpool")
    with pytest.raises(ValueError, match="placement='relative'"):
        _tiny(3, placement="relative", image_size=64, placement_map="conv3")
    # A 16 px glimpse: conv3's map is 3 x 3, enough; conv4's 1 x 1 would not be.
    assert _tiny(3, placement="spatial", placement_map="conv3").localization.map_channels == 64


def test_lookahead_error_on_hand_made_values():
    # Glimpse 2 at (0.3, -0.1), the last at (0.1, 0.0) with s = 0.25:
    # (0.2 / 0.25)^2 + (0.1 / 0.25)^2; a second example already there: 0.
    second = np.array([[0.4, 0.3, -0.1], [0.3, -0.5, 0.5]], np.float32)
    last = np.array([[0.25, 0.1, 0.0], [0.5, -0.5, 0.5]], np.float32)
    np.testing.assert_allclose(
        MGNet._lookahead_error(second, last).numpy(),
        [(0.2 / 0.25) ** 2 + (0.1 / 0.25) ** 2, 0.0],
        rtol=1e-5,
    )


def test_first_localization_places_glimpse_2_and_the_shared_head_the_rest():
    images = np.random.default_rng(4).random((3, 32, 32, 1)).astype("float32")
    model = _tiny(4, first_localization=True, placement="relative")
    model(images)
    assert model.first_localization_head is not None
    before = model(images)["glimpse_params"].numpy()
    # A new bias of the first head moves glimpse 2 (and 3-4, placed from it) ...
    kernel, bias = model.first_localization_head.dense.get_weights()
    model.first_localization_head.dense.set_weights([kernel, bias + np.float32(2.0)])
    moved = model(images)["glimpse_params"].numpy()
    assert np.abs(moved[:, 1] - before[:, 1]).min() > 1e-3
    # ... while the shared head's own moves from glimpse 2 on are unchanged: with
    # the shared head silenced, glimpses 3-4 stay where glimpse 2 is.
    kernel, _ = model.localization.dense.get_weights()
    model.localization.dense.set_weights(
        [np.zeros_like(kernel), np.array([0.0, 0.0, 0.0], "float32")]
    )
    params = model(images)["glimpse_params"].numpy()
    np.testing.assert_allclose(params[:, 2, 1:], params[:, 1, 1:], atol=1e-6)
    np.testing.assert_allclose(params[:, 3, 1:], params[:, 1, 1:], atol=1e-6)
    # Without the option there is one head.
    assert _tiny(4).first_localization_head is None


def test_lookahead_trains_the_first_head_alone_at_the_full_rate():
    images = np.random.default_rng(5).random((4, 32, 32, 1)).astype("float32")
    labels = np.array([0, 1, 2, 3])
    common = dict(first_localization=True, placement="relative", grad_scale=0.1)
    plain, looking = _tiny(4, **common), _tiny(4, lookahead=1.0, **common)
    plain(images)
    looking(images)
    # The same start; the gate (only in `looking`) stays 1.
    ours = [v for v in looking.weights if v is not looking.lookahead_gate]
    for mine, theirs in zip(ours, plain.weights, strict=True):
        mine.assign(theirs.numpy())
    gradients, losses = {}, {}
    for name, model in (("plain", plain), ("looking", looking)):
        with tf.GradientTape() as tape:
            y_pred = model(images, training=True)
            loss = model.compute_loss(images, labels, y_pred)
        losses[name] = float(loss)
        variables = model.trainable_variables
        # The two models' trainable variables are in the same order.
        gradients[name] = tape.gradient(loss, variables)
        params = y_pred["glimpse_params"].numpy()
    paths = [v.path.split("/", 1)[-1] for v in looking.trainable_variables]
    expected = float(np.mean(MGNet._lookahead_error(params[:, 1], params[:, -1])))
    assert expected > 0
    np.testing.assert_allclose(losses["looking"] - losses["plain"], expected, rtol=1e-4)
    changed = sorted(
        path
        for path, a, b in zip(paths, gradients["looking"], gradients["plain"], strict=True)
        if not np.allclose(a, b, rtol=1e-5, atol=1e-7)
    )
    # Only the first head: neither the backbone, the fusion nor the shared head.
    assert changed and all(p.startswith("first_localization/") for p in changed), changed
    # The full rate: glimpse 2's centre is 2 sigma(z) - 1 (from the whole image,
    # relative placement), so the loss's gradient on the head's bias is, by hand,
    # mean_b 2 (c - c_T) / s_T^2 * 2 sigma (1 - sigma), not grad_scale (0.1) times it.
    index = paths.index("first_localization/dense/bias")
    bias = gradients["looking"][index].numpy() - gradients["plain"][index].numpy()
    centre, last = params[:, 1, 1:], params[:, -1]
    sigma = (centre + 1) / 2
    by_hand = np.mean(
        2 * (centre - last[:, 1:]) / last[:, :1] ** 2 * 2 * sigma * (1 - sigma), axis=0
    )
    np.testing.assert_allclose(bias[1:], by_hand, rtol=1e-3, atol=1e-6)
    assert abs(bias[0]) < 1e-7  # the size is not pulled


def test_lookahead_pulls_no_size_at_the_image_edge():
    # Glimpse 2 proposed past the edge (clipped there in the forward pass): the
    # loss still trains only the move, not the size through the clip's 1 - s.
    images = np.random.default_rng(7).random((3, 32, 32, 1)).astype("float32")
    model = _tiny(4, lookahead=1.0, first_localization=True, placement="relative")
    model(images)
    head = model.first_localization_head.dense
    head.set_weights([head.get_weights()[0] * 0.0, np.array([0.0, 8.0, 8.0], "float32")])
    with tf.GradientTape() as tape:
        params = model(images, training=True)["glimpse_params"]
        extra = tf.add_n(model.losses)
    assert np.all(params.numpy()[:, 1, 1:] >= 1 - params.numpy()[:, 1, :1] - 1e-6)  # clipped
    bias = tape.gradient(extra, head.bias).numpy()
    assert np.abs(bias[1:]).max() > 0 and abs(bias[0]) < 1e-9


def test_lookahead_moves_glimpse_2_towards_the_last_glimpse_in_training():
    # A few SGD steps on the lookahead loss alone bring glimpse 2's centre nearer
    # the last glimpse's.
    images = np.random.default_rng(5).random((8, 32, 32, 1)).astype("float32")
    model = _tiny(4, lookahead=1.0, first_localization=True, placement="relative")
    model(images)
    optimizer = keras.optimizers.SGD(0.05)

    def distance():
        params = model(images)["glimpse_params"].numpy()
        return np.abs(params[:, 1, 1:] - params[:, -1, 1:]).sum(-1).mean()

    before = distance()
    for _ in range(20):
        with tf.GradientTape() as tape:
            model(images, training=True)
            loss = tf.add_n(model.losses)
        variables = model.first_localization_head.trainable_variables
        optimizer.apply(tape.gradient(loss, variables), variables)
    assert distance() < 0.5 * before, (before, distance())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lookahead": -0.1}, "lookahead"),
        ({"lookahead": "1"}, "lookahead"),
        ({"lookahead": float("nan")}, "lookahead"),
        ({"lookahead": True}, "lookahead"),
        ({"lookahead": 0.1, "num_glimpses": 2}, "num_glimpses >= 3"),
        ({"lookahead": 0.1, "first_localization": False}, "first_localization=True"),
        ({"first_localization": 1}, "first_localization"),
        ({"lookahead": 0.1, "placement": "absolute"}, "placement='absolute'"),
        (
            {"lookahead": 0.1, "image_size": 56, "placement": "spatial",
             "spatial_rescale_at": "input"},
            "spatial_rescale_at='input'",
        ),
    ],
)
def test_lookahead_errors_name_the_value(kwargs, message):
    kwargs = {
        "num_glimpses": 3, "first_localization": True, "placement": "relative", **kwargs
    }
    with pytest.raises(ValueError, match=message):
        _tiny(**kwargs)


def test_lookahead_survives_a_keras_round_trip(tmp_path):
    model = _tiny(3, lookahead=0.25, first_localization=True, placement="relative")
    images = np.random.rand(2, 32, 32, 1).astype("float32")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.lookahead == 0.25 and loaded.first_localization
    np.testing.assert_allclose(
        loaded(images)["glimpse_params"].numpy(),
        model(images)["glimpse_params"].numpy(),
        atol=1e-6,
    )


def test_lookahead_start_gates_the_loss_by_epoch():
    from training.callbacks import LookaheadStart

    images = np.random.default_rng(6).random((4, 32, 32, 1)).astype("float32")
    model = _tiny(4, lookahead=0.5, first_localization=True, placement="relative")
    model(images)
    callback = LookaheadStart(2)
    callback.set_model(model)
    extra = {}
    for epoch in (0, 1, 2, 5):
        callback.on_epoch_begin(epoch)
        model(images, training=True)
        extra[epoch] = float(tf.add_n(model.losses))
    assert extra[0] == extra[1] == 0.0
    assert extra[2] > 0 and extra[5] == pytest.approx(extra[2])
    # A model without the loss has no gate: the callback leaves it alone.
    callback.set_model(_tiny(4))
    callback.on_epoch_begin(0)
    with pytest.raises(ValueError, match="start"):
        LookaheadStart(-1)
