import keras
import numpy as np
import pytest

from mgnet_tf import MGNet, attacks

EPS = 4 / 255


def _tiny(channels=1, **kwargs):
    return MGNet(
        "vanilla_cnn",
        num_classes=5,
        image_size=32,
        num_glimpses=2,
        downsample=2,
        channels=channels,
        **kwargs,
    )


def _images(batch=8, channels=1, seed=0):
    """Noise in [0, 1] with a band of exact 0s and one of exact 1s, where the pixel
    clip binds (and the normalized space steps out of range)."""
    images = np.random.default_rng(seed).random((batch, 32, 32, channels), "float32")
    images[:, :4] = 0.0
    images[:, -4:] = 1.0
    return images


LABELS = np.arange(8) % 5


@pytest.fixture(scope="module")
def model():
    """A one-channel model trained a few epochs on the test images, so that the
    clean loss is low and the attack has something to undo."""
    keras.utils.set_random_seed(0)
    model = _tiny()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(_images(), LABELS, batch_size=8, epochs=15, verbose=0)
    return model


@pytest.fixture(scope="module")
def rgb_model():
    """Three channels, ImageNet mean and std (the normalized-space checks)."""
    keras.utils.set_random_seed(1)
    return _tiny(channels=3)


def _final_loss(model, images, num_glimpses=None):
    logits = model(images, training=False, num_glimpses=num_glimpses)["logits"]
    return np.asarray(keras.losses.sparse_categorical_crossentropy(
        LABELS, logits[:, -1], from_logits=True
    ))


def _correct(model, images):
    logits = model(images, training=False)["logits"][:, -1]
    return np.argmax(np.asarray(logits), axis=-1) == LABELS


@pytest.mark.parametrize("steps", [1, 3, 12])
def test_pgd_stays_in_eps_ball_and_pixel_range(model, steps):
    images = _images()
    adversarial = attacks.pgd(
        model, images, LABELS, eps=EPS, step_size=1.5 / 255, steps=steps
    )
    assert keras.backend.standardize_dtype(adversarial.dtype) == "float32"
    assert tuple(adversarial.shape) == images.shape
    delta = np.abs(np.asarray(adversarial) - images)
    assert delta.max() <= EPS + 1e-6
    # The budget is used: 3 steps of 1.5/255 already reach the 4/255 ball's surface.
    assert delta.max() == pytest.approx(min(steps * 1.5 / 255, EPS), abs=1e-6)
    assert np.asarray(adversarial).min() >= 0.0 and np.asarray(adversarial).max() <= 1.0


def test_pgd_raises_the_final_glimpse_loss(model):
    images = _images()
    adversarial = attacks.pgd(model, images, LABELS, eps=EPS, steps=5)
    clean, attacked = _final_loss(model, images), _final_loss(model, adversarial)
    assert np.all(attacked >= clean - 1e-6)
    assert attacked.mean() > clean.mean() + 0.01


def test_early_exit_attack_targets_that_glimpse(model):
    images = _images()
    adversarial = attacks.pgd(model, images, LABELS, steps=3, num_glimpses=1)
    assert np.abs(np.asarray(adversarial) - images).max() <= EPS + 1e-6
    clean = _final_loss(model, images, num_glimpses=1)
    attacked = _final_loss(model, adversarial, num_glimpses=1)
    assert attacked.mean() > clean.mean()


@pytest.mark.parametrize("space", ["pixel", "normalized"])
def test_fgsm_is_one_pgd_step_of_size_eps(model, space):
    images = _images()
    one_step = attacks.pgd(
        model, images, LABELS, eps=EPS, step_size=EPS, steps=1, space=space
    )
    fast = attacks.fgsm(model, images, LABELS, eps=EPS, space=space)
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(one_step))


def test_attack_curve_points_equal_separate_pgd_runs(model):
    images = _images()
    kwargs = dict(eps=8 / 255, step_size=2 / 255)
    curve = attacks.attack_curve(model, images, LABELS, [6, 0, 1, 3], **kwargs)
    assert list(curve) == [0, 1, 3, 6]
    np.testing.assert_array_equal(curve[0], _correct(model, images))
    for k in (1, 3, 6):
        adversarial = attacks.pgd(model, images, LABELS, steps=k, **kwargs)
        assert curve[k].dtype == bool and curve[k].shape == (8,)
        np.testing.assert_array_equal(curve[k], _correct(model, adversarial))
    # The 6-step attack works: no image gains, and the loss of every image rises
    # (how many flip depends on the trained model, which differs between backends).
    assert curve[6].sum() <= curve[0].sum()
    assert np.all(_final_loss(model, adversarial) > _final_loss(model, images))


def test_attack_curve_per_glimpse(model):
    images = _images()
    final = attacks.attack_curve(model, images, LABELS, [0, 2])
    both = attacks.attack_curve(model, images, LABELS, [0, 2], per_glimpse=True)
    clean_logits = np.asarray(model(images, training=False)["logits"])
    np.testing.assert_array_equal(
        both[0], np.argmax(clean_logits, axis=-1) == LABELS[:, None]
    )
    for k in (0, 2):
        assert both[k].shape == (8, 2)
        np.testing.assert_array_equal(both[k][:, -1], final[k])


def test_normalized_space_is_the_reference_code_budget(rgb_model):
    images = _images(channels=3)
    std = np.array(rgb_model.std, "float32")
    mean = np.array(rgb_model.mean, "float32")
    for steps in (1, 4):
        adversarial = np.asarray(attacks.pgd(
            rgb_model, images, LABELS, eps=EPS, steps=steps, space="normalized"
        ))
        # In normalized units the iterate stays in the eps ball around z ...
        z_delta = (adversarial - mean) / std - (images - mean) / std
        assert np.abs(z_delta).max() <= EPS + 1e-5
        # ... which in pixels is eps * std_c per channel, not eps.
        per_channel = np.abs(adversarial - images).max(axis=(0, 1, 2))
        assert np.all(per_channel <= EPS * std + 1e-6)
        np.testing.assert_allclose(per_channel, min(steps / 255, EPS) * std, rtol=1e-3)
        assert np.all(per_channel < 0.3 * EPS)
        # No clip: pixels at 0 or 1 pushed outwards leave the valid range.
        assert adversarial.min() < 0.0 and adversarial.max() > 1.0
    pixel = np.asarray(attacks.pgd(rgb_model, images, LABELS, eps=EPS, steps=4))
    np.testing.assert_allclose(np.abs(pixel - images).max(), EPS, rtol=1e-5)
    assert 0.0 <= pixel.min() and pixel.max() <= 1.0


def test_gradient_flows_through_sampler_and_localization(model):
    images = _images()
    adversarial = attacks.pgd(model, images, LABELS, eps=8 / 255, steps=5)
    # Where the second glimpse looks is itself moved by the attack.
    clean_params = np.asarray(model(images, training=False)["glimpse_params"][:, 1])
    attacked_params = model(adversarial, training=False)["glimpse_params"][:, 1]
    assert np.abs(np.asarray(attacked_params) - clean_params).max() > 1e-4
    # The same weights with a zero gradient re-scaling (eq. 5) compute the same
    # logits but no gradient through the localization network into the sampler's
    # (s, x, y); the attack direction differs, so that path was part of it.
    cut = _tiny(grad_scale=0.0)
    cut.set_weights(model.get_weights())
    np.testing.assert_allclose(
        np.asarray(cut(images, training=False)["logits"]),
        np.asarray(model(images, training=False)["logits"]),
        atol=1e-6,
    )
    # One FGSM step can keep every gradient sign (it did on an AVX-512 CPU); ten PGD
    # steps let the path's share of the gradient move the iterates apart.
    full = np.asarray(attacks.pgd(model, images, LABELS, eps=8 / 255, steps=10))
    without_path = np.asarray(attacks.pgd(cut, images, LABELS, eps=8 / 255, steps=10))
    assert np.mean(full != without_path) > 0.01


@pytest.mark.parametrize("space", ["pixel", "normalized"])
def test_zero_eps_returns_the_images(rgb_model, space):
    images = _images(channels=3)
    unchanged = attacks.pgd(rgb_model, images, LABELS, eps=0, steps=2, space=space)
    np.testing.assert_array_equal(np.asarray(unchanged), images)
    np.testing.assert_array_equal(
        np.asarray(attacks.fgsm(rgb_model, images, LABELS, eps=0.0, space=space)), images
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(eps=-1 / 255), "eps"),
        (dict(eps=float("nan")), "eps"),
        (dict(step_size=0.0), "step_size"),
        (dict(steps=0), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(space="z"), "space"),
        (dict(num_glimpses=0), "num_glimpses"),
        (dict(labels=LABELS[:, None]), "labels"),
        (dict(labels=LABELS[:3]), "labels"),
        (dict(labels=LABELS.astype("float32")), "labels"),
        (dict(images=_images()[0]), "images"),
        (dict(images=(_images() * 255).astype("uint8")), "images"),
    ],
)
def test_pgd_rejects_bad_arguments(kwargs, name):
    # Validation comes before any model call, so no model is needed.
    arguments = dict(model=None, images=_images(), labels=LABELS)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=f"`{name}`.*Received"):
        attacks.pgd(**arguments)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x: attacks.fgsm(None, x, LABELS, eps=-0.1), "eps"),
        (lambda x: attacks.attack_curve(None, x, LABELS, []), "steps_list"),
        (lambda x: attacks.attack_curve(None, x, LABELS, [2, -1]), "steps_list"),
        (lambda x: attacks.attack_curve(None, x, LABELS, 5), "steps_list"),
        (lambda x: attacks.attack_curve(None, x, LABELS, [1], step_size=0), "step"),
    ],
)
def test_fgsm_and_curve_reject_bad_arguments(call, name):
    with pytest.raises(ValueError, match=f"`{name}"):
        call(_images())
