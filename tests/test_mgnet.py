import keras
import numpy as np
import pytest

from backend import value_and_grads
import mgnet_tf
from mgnet_tf import MGNet


def _tiny(num_glimpses=3, **kwargs):
    defaults = dict(
        backbone="vanilla_cnn",
        num_classes=5,
        image_size=32,
        num_glimpses=num_glimpses,
        downsample=2,
        channels=1,
    )
    defaults.update(kwargs)
    return MGNet(**defaults)


def _images(batch=2, size=32, channels=1):
    return np.random.rand(batch, size, size, channels).astype("float32")


@pytest.mark.parametrize("num_glimpses", [1, 3])
def test_output_shapes(num_glimpses):
    model = _tiny(num_glimpses)
    out = model(_images())
    assert set(out) == {"logits", "glimpse_logits", "glimpse_params"}
    assert tuple(out["logits"].shape) == (2, num_glimpses, 5)
    assert tuple(out["glimpse_logits"].shape) == (2, num_glimpses, 5)
    assert tuple(out["glimpse_params"].shape) == (2, num_glimpses, 3)


@pytest.mark.parametrize(
    "image_size, downsample, expected",
    [(224, 7 / 3, 96), (64, 2, 32), (112, 4, 28), (112, 1, 112), (100, 3, 33)],
)
def test_glimpse_size_is_floor_of_ratio(image_size, downsample, expected):
    assert mgnet_tf.glimpse_size(image_size, downsample) == expected


def test_first_glimpse_is_identity_and_later_ones_stay_inside():
    out = _tiny(4)(_images(8))
    params = np.asarray(out["glimpse_params"])
    np.testing.assert_allclose(params[:, 0], np.tile([1.0, 0.0, 0.0], (8, 1)))
    scale = params[:, 1:, 0]
    assert np.all((scale >= 0.2 - 1e-6) & (scale <= 0.5 + 1e-6))
    assert np.all(np.abs(params[:, 1:, 1:]) <= (1 - scale)[..., None] + 1e-6)


def test_first_glimpse_sees_the_downsampled_image():
    # With a backbone that returns the glimpse's pixels, the first glimpse must equal
    # the normalized image resampled by the identity transform.
    inputs = keras.Input((16, 16, 1))
    flat = keras.layers.Flatten()(inputs)
    spy = keras.Model(inputs, flat)
    model = MGNet(
        spy, num_classes=2, image_size=32, num_glimpses=1, downsample=2, channels=1
    )
    images = _images(1)
    out_features = spy(
        model.sampler(model.normalize(images), np.array([[1.0, 0, 0]], "float32"))
    )
    # The 16 x 16 identity glimpse of a 32 px image samples pixel 31 i / 15.
    expected = (images[0, :, :, 0] - 0.5) / 0.5
    idx = np.arange(16) * 31 / 15
    lo = np.floor(idx).astype(int)
    hi = np.minimum(lo + 1, 31)
    w = idx - lo
    rows = expected[lo] * (1 - w)[:, None] + expected[hi] * w[:, None]
    manual = rows[:, lo] * (1 - w)[None] + rows[:, hi] * w[None]
    np.testing.assert_allclose(np.asarray(out_features).reshape(16, 16), manual, atol=1e-5)


def test_fewer_glimpses_run_fewer_backbone_calls():
    model = _tiny(3)
    model(_images())
    calls = []
    original = model.backbone.call

    def counting_call(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    model.backbone.call = counting_call
    model(_images())
    assert len(calls) == 3
    calls.clear()
    early = model(_images(), num_glimpses=1)
    assert len(calls) == 1
    assert tuple(early["logits"].shape) == (2, 1, 5)


def test_early_exit_equals_prefix_of_full_run():
    model = _tiny(3)
    images = _images()
    full = np.asarray(model(images)["logits"])
    two = np.asarray(model(images, num_glimpses=2)["logits"])
    np.testing.assert_allclose(two, full[:, :2], atol=1e-5)


def test_weights_are_shared_across_glimpses():
    two = _tiny(2)
    five = _tiny(5)
    two(_images())
    five(_images())
    assert len(two.trainable_weights) == len(five.trainable_weights)
    assert two.count_params() == five.count_params()


def test_two_fit_steps_lower_the_loss():
    keras.utils.set_random_seed(1)
    model = _tiny(2)
    images = _images(8)
    labels = np.arange(8) % 5
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = model.evaluate(images, labels, verbose=0, return_dict=True)
    history = model.fit(images, labels, batch_size=8, epochs=2, verbose=0)
    after = model.evaluate(images, labels, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"]
    assert {"loss", "acc_1", "acc_2"} <= set(history.history)


def test_joint_loss_is_equation_6():
    model = _tiny(3, alpha=0.3)
    images, labels = _images(4), np.array([0, 1, 2, 3])
    out = model(images)

    def ce(logits):
        logits = np.asarray(logits).astype("float64")
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return -logp[np.arange(4), :, labels].T.mean()  # mean over batch and steps

    expected = 0.3 * ce(out["glimpse_logits"]) + 0.7 * ce(out["logits"])
    loss = model.compute_loss(images, labels, out)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_size_penalty_adds_the_l2_term():
    model = _tiny(3, size_penalty=2.0)
    images, labels = _images(4), np.array([0, 1, 2, 3])
    out = model(images)
    plain = _tiny(3)
    plain.set_weights(model.get_weights())
    scales = np.asarray(out["glimpse_params"])[:, 1:, 0]
    penalty = 2.0 * np.mean((scales - 0.2) ** 2)
    np.testing.assert_allclose(
        float(model.compute_loss(images, labels, out)),
        float(plain.compute_loss(images, labels, out)) + penalty,
        rtol=1e-5,
    )


def test_localization_learns_from_the_loss():
    model = _tiny(2)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    images = _images(4)
    labels = np.array([0, 1, 2, 3])
    before = model.localization.dense.kernel.numpy().copy()
    model.train_on_batch(images, labels)
    assert not np.allclose(before, model.localization.dense.kernel.numpy())


def test_keras_round_trip_with_safe_mode(tmp_path):
    model = _tiny(2)
    images = _images()
    expected = model(images)
    path = tmp_path / "mgnet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True by default
    assert isinstance(loaded, MGNet)
    for key in expected:
        np.testing.assert_allclose(loaded(images)[key], expected[key], atol=1e-6)


def test_keras_round_trip_with_a_custom_backbone(tmp_path):
    inputs = keras.Input((16, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = MGNet(
        keras.Model(inputs, features),
        num_classes=3,
        image_size=32,
        num_glimpses=2,
        downsample=2,
    )
    images = _images(2, 32, 3)
    expected = model(images)["logits"]
    path = tmp_path / "custom.keras"
    model.save(path)
    np.testing.assert_allclose(
        keras.saving.load_model(path)(images)["logits"], expected, atol=1e-6
    )


def test_train_step_compiles_with_xla():
    model = _tiny(2)
    model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=True)
    history = model.fit(
        _images(4), np.array([0, 1, 2, 3]), epochs=1, batch_size=2, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])


def test_ff_net_baseline_is_the_backbone_on_the_whole_image():
    model = _tiny(1, downsample=1)
    assert model.glimpse_size == 32
    assert model.localization is None  # nothing to locate: no unused weights
    out = model(_images())
    assert tuple(out["logits"].shape) == (2, 1, 5)


def test_gradients_reach_the_input_pixels():
    model = _tiny(3)
    model(_images())  # built outside the gradient computation
    _, (grad,) = value_and_grads(
        lambda images: keras.ops.sum(model(images)["logits"][:, -1]), _images()
    )
    assert np.abs(grad).sum() > 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_glimpses=0), "num_glimpses"),
        (dict(downsample=0.5), "downsample"),
        (dict(alpha=1.5), "alpha"),
        (dict(backbone="resnet1000"), "resnet1000"),
        (dict(backbone=3), "backbone"),
        (dict(mean=(0.1, 0.2)), "mean"),
        (dict(size_penalty=-1.0), "size_penalty"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _tiny(**kwargs)


def test_bad_num_glimpses_at_call():
    with pytest.raises(ValueError, match="num_glimpses"):
        _tiny(2)(_images(), num_glimpses=3)


def test_compiled_loss_is_refused():
    model = _tiny(1)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="joint loss"):
        model.train_on_batch(_images(), np.array([0, 1]))
