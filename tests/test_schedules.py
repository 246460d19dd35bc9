import math
import os

import numpy as np
import pytest

import keras
from mgnet_tf.schedules import OneCycle, OneCycleMomentum, learning_rate_schedule


# PyTorch's OneCycleLR(max_lr=0.1, total_steps=total, cycle_momentum=False): the rate
# of each step, computed once by tests/data/torch_reference.py.
PYTORCH_REFERENCE = os.path.join(
    os.path.dirname(__file__), "data", "one_cycle_pytorch.npz"
)


@pytest.mark.parametrize("total", [10, 101])
def test_one_cycle_matches_pytorch(total):
    with np.load(PYTORCH_REFERENCE) as reference:
        peak, expected = float(reference["peak"]), reference[f"rates_{total}"]
    assert peak == 0.1 and expected.shape == (total,)
    schedule = OneCycle(peak, total)
    ours = np.array([float(schedule(step)) for step in range(total)])
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("total", [10, 101])
def test_official_one_cycle_matches_pytorch(total):
    """The official code's OneCycleLR(pct_start=0.2), whose default cycle_momentum
    moves SGD's momentum 0.95 -> 0.85 -> 0.95: rate and momentum of every step."""
    with np.load(PYTORCH_REFERENCE) as reference:
        rates = reference[f"official_rates_{total}"]
        momenta = reference[f"official_momenta_{total}"]
    assert rates.shape == momenta.shape == (total,)
    schedule = learning_rate_schedule("one_cycle", 0.1, total, warmup_fraction=0.2)
    momentum = OneCycleMomentum(total, warmup_fraction=0.2)
    np.testing.assert_allclose(
        [float(schedule(step)) for step in range(total)], rates, rtol=1e-4, atol=1e-9
    )
    np.testing.assert_allclose(
        [float(momentum(step)) for step in range(total)], momenta, rtol=1e-5
    )
    # The default warm-up share is PyTorch's 0.3, not the official 0.2: another peak.
    default = learning_rate_schedule("one_cycle", 0.1, total)
    assert np.argmax([float(default(step)) for step in range(total)]) != np.argmax(rates)


def test_one_cycle_momentum_round_trip_and_bad_values():
    momentum = OneCycleMomentum(40, warmup_fraction=0.25, base_momentum=0.8, max_momentum=0.9)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(momentum))
    assert [float(clone(s)) for s in (0, 9, 39)] == pytest.approx([0.9, 0.8, 0.9], abs=1e-6)
    with pytest.raises(ValueError, match="base_momentum"):
        OneCycleMomentum(40, base_momentum=0.95, max_momentum=0.85)
    with pytest.raises(ValueError, match="warmup_fraction"):
        OneCycleMomentum(40, warmup_fraction=1.0)


def test_one_cycle_shape():
    schedule = OneCycle(0.1, 1000)
    rates = np.array([float(schedule(step)) for step in range(1000)])
    assert math.isclose(rates[0], 0.1 / 25, rel_tol=1e-5)
    assert math.isclose(rates.max(), 0.1, rel_tol=1e-4)
    assert 250 <= int(np.argmax(rates)) <= 300
    assert rates[-1] < 1e-5


def test_one_cycle_config_round_trip():
    schedule = OneCycle(0.2, 50, warmup_fraction=0.25)
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule)
    )
    assert float(clone(10)) == pytest.approx(float(schedule(10)))


def test_cosine_and_constant():
    cosine = learning_rate_schedule("cosine", 0.1, 100)
    assert float(cosine(0)) == pytest.approx(0.1)
    assert float(cosine(50)) == pytest.approx(0.05, rel=1e-4)
    assert float(cosine(100)) == pytest.approx(0.0, abs=1e-7)
    assert learning_rate_schedule("constant", 0.1, 100) == 0.1
    assert isinstance(learning_rate_schedule("one_cycle", 0.1, 100), OneCycle)


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="linear"):
        learning_rate_schedule("linear", 0.1, 100)
    with pytest.raises(ValueError, match="total_steps"):
        OneCycle(0.1, 0)
