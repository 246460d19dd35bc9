"""How --strategy=auto finds a TPU: on a TPU VM (today's Colab and Cloud TPUs) the
chips are local; the retired TPU-node runtime announced itself through COLAB_TPU_ADDR."""

import pytest

from training import strategies


@pytest.fixture
def tpu_calls(monkeypatch):
    calls = []

    def fake_tpu_strategy(tpu):
        calls.append(tpu)
        return "tpu strategy"

    monkeypatch.setattr(strategies, "_tpu_strategy", fake_tpu_strategy)
    for name in ("TPU_ACCELERATOR_TYPE", "COLAB_TPU_ADDR", "TPU_NAME"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_a_tpu_vm_is_found_as_local(monkeypatch, tpu_calls):
    monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v5litepod-8")
    assert strategies.build_strategy("auto") == "tpu strategy"
    assert tpu_calls == ["local"]


def test_the_device_files_alone_are_enough(monkeypatch, tpu_calls):
    real_exists = strategies.os.path.exists
    monkeypatch.setattr(
        strategies.os.path, "exists", lambda p: p == "/dev/accel0" or real_exists(p)
    )
    assert strategies.build_strategy("auto") == "tpu strategy"
    assert tpu_calls == ["local"]


def test_an_explicit_tpu_name_wins(monkeypatch, tpu_calls):
    monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v5litepod-8")
    strategies.build_strategy("auto", tpu="my-tpu")
    assert tpu_calls == ["my-tpu"]


def test_no_tpu_no_tpu_strategy(tpu_calls):
    strategy = strategies.build_strategy("auto")
    assert tpu_calls == []
    assert strategy.num_replicas_in_sync == 1
