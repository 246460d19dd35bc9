import math

import numpy as np
import pytest

import keras
from mgnet_tf.schedules import OneCycle, learning_rate_schedule


def _torch_one_cycle(peak, total):
    torch = pytest.importorskip("torch")
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=peak)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peak, total_steps=total, cycle_momentum=False
    )
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.array(rates)


@pytest.mark.parametrize("total", [10, 101])
def test_one_cycle_matches_pytorch(total):
    schedule = OneCycle(0.1, total)
    ours = np.array([float(schedule(step)) for step in range(total)])
    np.testing.assert_allclose(ours, _torch_one_cycle(0.1, total), rtol=1e-4, atol=1e-9)


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
