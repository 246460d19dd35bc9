"""Learning-rate schedules used by train.py: one-cycle (the paper's), cosine, constant."""

import math

import keras
from keras import ops


def _check_one_cycle(total_steps, warmup_fraction):
    if total_steps < 1:
        raise ValueError(
            f"`total_steps` must be >= 1. Received: total_steps={total_steps}"
        )
    if not 0.0 < warmup_fraction < 1.0:
        raise ValueError(
            f"`warmup_fraction` must be in (0, 1). Received: warmup_fraction={warmup_fraction}"
        )


def _one_cycle(step, total_steps, warmup_fraction, start, middle, end):
    """PyTorch `OneCycleLR`'s two half cosines (its default anneal_strategy="cos"):
    from `start` to `middle` at step `warmup_fraction * total_steps - 1`, then to `end`
    at step `total_steps - 1`."""
    step = ops.cast(step, "float32")
    # As PyTorch: the middle is reached at step warmup_steps, the end at total - 1.
    warmup_steps = max(warmup_fraction * total_steps - 1.0, 1.0)
    decay_steps = max(total_steps - 1.0 - warmup_steps, 1.0)

    def cosine(first, last, fraction):
        fraction = ops.clip(fraction, 0.0, 1.0)
        return last + (first - last) * 0.5 * (1.0 + ops.cos(math.pi * fraction))

    rising = cosine(start, middle, step / warmup_steps)
    falling = cosine(middle, end, (step - warmup_steps) / decay_steps)
    return ops.where(step <= warmup_steps, rising, falling)


@keras.saving.register_keras_serializable(package="mgnet_tf")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle schedule (Smith & Topin, 2019) as PyTorch's `OneCycleLR` defaults.

    The rate rises from `peak / div_factor` to `peak` over the first `warmup_fraction`
    of the steps along a half cosine, then falls to `peak / (div_factor *
    final_div_factor)` along another half cosine. The paper trains every model with it
    (peak 0.1 on ImageNet100).

    Args:
        peak_learning_rate: float, the highest rate.
        total_steps: int, optimizer steps of the whole run.
        warmup_fraction: float in (0, 1), share of the steps spent rising (PyTorch: 0.3).
        div_factor: float, peak / initial rate (PyTorch: 25).
        final_div_factor: float, initial / final rate (PyTorch: 1e4).

    Example:

    ```python
    schedule = OneCycle(0.1, total_steps=1000)
    optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
    ```
    """

    def __init__(
        self,
        peak_learning_rate,
        total_steps,
        warmup_fraction=0.3,
        div_factor=25.0,
        final_div_factor=1e4,
    ):
        _check_one_cycle(total_steps, warmup_fraction)
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_fraction = float(warmup_fraction)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)

    def __call__(self, step):
        initial = self.peak_learning_rate / self.div_factor
        final = initial / self.final_div_factor
        return _one_cycle(
            step,
            self.total_steps,
            self.warmup_fraction,
            initial,
            self.peak_learning_rate,
            final,
        )

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_fraction,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


@keras.saving.register_keras_serializable(package="mgnet_tf")
class OneCycleMomentum(keras.optimizers.schedules.LearningRateSchedule):
    """The momentum of PyTorch's `OneCycleLR` with `cycle_momentum=True` (its
    default, which the paper's official code keeps): the mirror image of the rate's
    cycle, from `max_momentum` down to `base_momentum` where the rate peaks and back up
    to `max_momentum` at the end, along the same half cosines. `CoupledSGD` reads it
    each step (`momentum_schedule`).

    Args:
        total_steps: int, optimizer steps of the whole run.
        warmup_fraction: float in (0, 1), as the rate's `OneCycle`.
        base_momentum: float, the momentum at the rate's peak (PyTorch: 0.85).
        max_momentum: float, at the start and the end (PyTorch: 0.95).
    """

    def __init__(
        self, total_steps, warmup_fraction=0.3, base_momentum=0.85, max_momentum=0.95
    ):
        _check_one_cycle(total_steps, warmup_fraction)
        if not 0.0 <= base_momentum <= max_momentum < 1.0:
            raise ValueError(
                "Expected 0 <= base_momentum <= max_momentum < 1. Received: "
                f"base_momentum={base_momentum}, max_momentum={max_momentum}"
            )
        self.total_steps = int(total_steps)
        self.warmup_fraction = float(warmup_fraction)
        self.base_momentum = float(base_momentum)
        self.max_momentum = float(max_momentum)

    def __call__(self, step):
        return _one_cycle(
            step,
            self.total_steps,
            self.warmup_fraction,
            self.max_momentum,
            self.base_momentum,
            self.max_momentum,
        )

    def get_config(self):
        return {
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_fraction,
            "base_momentum": self.base_momentum,
            "max_momentum": self.max_momentum,
        }


SCHEDULES = ("one_cycle", "cosine", "constant")


def learning_rate_schedule(name, learning_rate, total_steps, warmup_fraction=0.3):
    """Builds the schedule `name` peaking (or staying) at `learning_rate`.

    Args:
        name: one of `SCHEDULES`.
        learning_rate: float, the peak (one_cycle), initial (cosine) or fixed rate.
        total_steps: int, optimizer steps of the whole run.
        warmup_fraction: one_cycle only: the share of the steps spent rising
            (PyTorch's default 0.3; the paper's official code 0.2).

    Returns:
        A `LearningRateSchedule`, or the float itself for "constant".
    """
    if name == "one_cycle":
        return OneCycle(learning_rate, total_steps, warmup_fraction=warmup_fraction)
    if name == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, total_steps)
    if name == "constant":
        return float(learning_rate)
    raise ValueError(
        f"Unknown schedule. Received: schedule={name!r}; expected one of {SCHEDULES}"
    )
