"""Gradient re-scaling (eq. 5): identity forward, gradient multiplied by a factor."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mgnet_tf")
class GradientRescale(keras.layers.Layer):
    """Phi(x; s) of eq. 5: returns x unchanged and multiplies its gradient by `factor`.

    MGNet puts it in the localization network, whose gradients otherwise explode
    (the paper uses s = 0.01 to 0.02).

    Args:
        factor: float, the gradient multiplier s.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    layer = mgnet_tf.layers.GradientRescale(factor=0.02)
    x = tf.Variable([1.0, 2.0])  # on the TensorFlow backend
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(x))
    tape.gradient(y, x)  # [0.02, 0.02]
    ```
    """

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(factor, (int, float)) or isinstance(factor, bool):
            raise ValueError(f"`factor` must be a number. Received: factor={factor!r}")
        self.factor = float(factor)

    def call(self, inputs):
        factor = self.factor

        # keras.ops.custom_gradient is tf.custom_gradient on TensorFlow and
        # jax.custom_gradient on JAX; the backward takes the upstream gradient only.
        @ops.custom_gradient
        def rescale(x):
            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                return upstream * ops.cast(factor, upstream.dtype)

            return ops.copy(x), grad

        return rescale(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"factor": self.factor})
        return config
