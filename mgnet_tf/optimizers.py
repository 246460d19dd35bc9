"""SGD with PyTorch's coupled weight decay, the update of the paper's official code."""

import keras
from keras import ops

WEIGHT_DECAY_MODES = ("coupled", "decoupled")


@keras.saving.register_keras_serializable(package="mgnet_tf")
class CoupledSGD(keras.optimizers.SGD):
    """`torch.optim.SGD(lr, momentum, weight_decay)`: L2 decay added to the gradient.

    PyTorch adds `weight_decay * w` to the gradient before the momentum buffer
    (coupled L2, as an L2 term in the loss would), then steps by the learning rate
    times the buffer:

        g <- g + weight_decay * w
        b <- momentum * b + g        (b = g on the first step)
        w <- w - learning_rate * b

    Keras' `SGD(weight_decay=...)` is decoupled instead (`w <- w - lr * wd * w`
    beside the momentum step), so at momentum 0.9 the same number decays about 10x
    less than the official code's. Keras' SGD also folds the learning rate into
    its buffer; here the buffer holds gradients, as PyTorch's does, so a changing
    learning rate (one-cycle) scales the whole step as it does in PyTorch.

    Args:
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: float >= 0.
        coupled_weight_decay: float >= 0, PyTorch's `weight_decay`; it applies to
            every trainable variable, as the official code's `model.parameters()`.
        momentum_schedule: None, or a schedule (e.g. `schedules.OneCycleMomentum`)
            called with the step count, whose value replaces `momentum` at each step,
            as PyTorch's `OneCycleLR(cycle_momentum=True)` sets the group's momentum.
        **kwargs: other `keras.optimizers.Optimizer` arguments (not
            `weight_decay`, which would add Keras' decoupled decay on top).
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.0,
        coupled_weight_decay=0.0,
        momentum_schedule=None,
        name="coupled_sgd",
        **kwargs,
    ):
        if kwargs.get("nesterov"):
            raise ValueError("CoupledSGD has no Nesterov form. Received: nesterov=True")
        if kwargs.get("weight_decay"):
            raise ValueError(
                "CoupledSGD takes `coupled_weight_decay`; `weight_decay` would add "
                f"Keras' decoupled decay too. Received: weight_decay={kwargs['weight_decay']}"
            )
        kwargs.pop("nesterov", None)
        kwargs.pop("weight_decay", None)
        if coupled_weight_decay < 0:
            raise ValueError(
                "`coupled_weight_decay` must be >= 0. Received: "
                f"coupled_weight_decay={coupled_weight_decay}"
            )
        if isinstance(momentum_schedule, dict):
            momentum_schedule = keras.saving.deserialize_keras_object(momentum_schedule)
        if momentum_schedule is not None and not callable(momentum_schedule):
            raise ValueError(
                "`momentum_schedule` must be None or a schedule called with the step. "
                f"Received: momentum_schedule={momentum_schedule!r}"
            )
        if momentum_schedule is not None and not momentum:
            # Keras builds the momentum buffers only for a nonzero momentum.
            momentum = float(momentum_schedule(0))
        super().__init__(learning_rate, momentum=momentum, name=name, **kwargs)
        self.coupled_weight_decay = float(coupled_weight_decay)
        self.momentum_schedule = momentum_schedule

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay:
            gradient = gradient + ops.cast(
                self.coupled_weight_decay, variable.dtype
            ) * ops.convert_to_tensor(variable)
        if self.momentum != 0:
            buffer = self.momentums[self._get_variable_index(variable)]
            if self.momentum_schedule is None:
                momentum = ops.cast(self.momentum, variable.dtype)
            else:
                momentum = ops.cast(
                    self.momentum_schedule(self.iterations), variable.dtype
                )
            # PyTorch starts the buffer at g; a zero buffer times momentum plus g is g.
            self.assign(buffer, buffer * momentum + gradient)
            gradient = buffer
        self.assign_sub(variable, learning_rate * gradient)

    def get_config(self):
        config = super().get_config()
        config.pop("nesterov", None)
        config.pop("weight_decay", None)
        config["coupled_weight_decay"] = self.coupled_weight_decay
        config["momentum_schedule"] = (
            None
            if self.momentum_schedule is None
            else keras.saving.serialize_keras_object(self.momentum_schedule)
        )
        return config


def sgd(
    learning_rate,
    momentum,
    weight_decay,
    weight_decay_mode="decoupled",
    global_clipnorm=None,
    momentum_schedule=None,
):
    """The SGD of `weight_decay_mode`: "coupled" (PyTorch's, the official code) or
    "decoupled" (Keras' `SGD(weight_decay=...)`). `global_clipnorm` > 0 scales each
    step's gradients down so that their joint l2 norm is at most that (Keras'
    `global_clipnorm`, `torch.nn.utils.clip_grad_norm_`); None or 0: no clipping.
    `momentum_schedule` (coupled only: PyTorch's update, whose buffer does not hold
    the learning rate) replaces `momentum` at each step."""
    if weight_decay_mode not in WEIGHT_DECAY_MODES:
        raise ValueError(
            f"Expected weight_decay_mode in {WEIGHT_DECAY_MODES}. "
            f"Received: {weight_decay_mode!r}"
        )
    if global_clipnorm is not None and not global_clipnorm >= 0:
        raise ValueError(
            f"Expected global_clipnorm None or >= 0. Received: {global_clipnorm!r}"
        )
    clip = {"global_clipnorm": float(global_clipnorm)} if global_clipnorm else {}
    if weight_decay_mode == "coupled":
        return CoupledSGD(
            learning_rate,
            momentum,
            coupled_weight_decay=weight_decay,
            momentum_schedule=momentum_schedule,
            **clip,
        )
    if momentum_schedule is not None:
        raise ValueError(
            "A momentum schedule (--cycle_momentum) needs PyTorch's update: "
            "weight_decay_mode='coupled' (--weight_decay_mode=coupled). Received: "
            f"weight_decay_mode={weight_decay_mode!r}"
        )
    return keras.optimizers.SGD(
        learning_rate, momentum=momentum, weight_decay=weight_decay or None, **clip
    )
