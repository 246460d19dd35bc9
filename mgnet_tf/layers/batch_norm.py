"""Batch normalization whose inference is one fused op.

Keras 3's `BatchNormalization` computes inference as a handful of elementwise ops
(subtract, multiply, add over the whole feature map, plus rsqrt and friends on the
statistics). On a CPU at batch 1 each op costs a fixed overhead, and MGNet runs the
backbone once per glimpse on small feature maps, so those ops weigh on it most. Here
inference on channels-last 4-D input is TensorFlow's single `FusedBatchNormV3`, which
TensorFlow's graph optimizer folds into the preceding convolution inside a
`tf.function` (oneDNN's fused convolution on CPUs, cuDNN's on GPUs). Training, other
ranks and axes, masks and synchronized statistics use Keras' own code unchanged, and
the layer holds the same weights under the same names, so checkpoints load either way.
On the other Keras backends the layer is Keras' own.
"""

import keras


@keras.saving.register_keras_serializable(package="mgnet_tf")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with a fused inference path."""

    def _fusable(self, inputs, training, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and not training
            and mask is None
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.center
            and self.scale
            and keras.backend.standardize_dtype(inputs.dtype)
            in ("float32", "float16", "bfloat16")
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # noqa: PLC0415 (the TensorFlow backend only)

        stats = [
            tf.cast(tf.convert_to_tensor(v), tf.float32)
            for v in (self.gamma, self.beta, self.moving_mean, self.moving_variance)
        ]
        outputs = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=stats[0],
            offset=stats[1],
            mean=stats[2],
            variance=stats[3],
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=False,
        )[0]
        return tf.cast(outputs, self.compute_dtype)
