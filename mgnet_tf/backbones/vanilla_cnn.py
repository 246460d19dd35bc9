"""The small CNN of the MGNet paper's Appendix B (used for MNIST glimpses)."""

import keras

from mgnet_tf.backbones._validation import validate_input_shape

# (filters, kernel size, padding, followed by a 2x2 max-pool)
_CONV_SPECS = (
    (16, 5, "valid", True),
    (32, 5, "same", True),
    (64, 3, "same", True),
    (128, 3, "same", False),
)


def torch_conv_initializers(kernel_size, in_channels):
    """PyTorch's default `nn.Conv2d` initialization (the official code's vanilla CNN):
    kernel and bias uniform in +-1 / sqrt(fan_in) (kaiming_uniform_ with a = sqrt(5))."""
    bound = 1.0 / (kernel_size * kernel_size * in_channels) ** 0.5
    return (
        keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        keras.initializers.RandomUniform(-bound, bound),
    )


def vanilla_cnn(input_shape, name="vanilla_cnn", initializer="keras"):
    """Builds the Appendix-B CNN: four ReLU convolutions and global pooling.

    Convolutions have 16, 32, 64 and 128 filters with kernel sizes 5, 5, 3
    and 3. The first one is unpadded, the others keep the spatial size, and
    each of the first three is followed by a 2x2 max-pool with stride 2.

    Args:
        input_shape: `(height, width, channels)` of the (normalized) images.
        name: Name of the returned model.
        initializer: "keras" (Glorot-uniform kernels, zero biases) or "torch"
            (PyTorch's default convolution initialization, as the official code).

    Returns:
        A functional `keras.Model` mapping `(batch, height, width, channels)`
        images to `(batch, 128)` features.
    """
    input_shape = validate_input_shape(input_shape)
    inputs = keras.Input(shape=input_shape, name="images")
    if initializer not in ("keras", "torch"):
        raise ValueError(
            f"Expected initializer 'keras' or 'torch'. Received: {initializer!r}"
        )
    x = inputs
    for index, (filters, kernel_size, padding, pool) in enumerate(_CONV_SPECS, 1):
        kernel, bias = (
            torch_conv_initializers(kernel_size, x.shape[-1])
            if initializer == "torch"
            else ("glorot_uniform", "zeros")
        )
        x = keras.layers.Conv2D(
            filters,
            kernel_size,
            padding=padding,
            activation="relu",
            kernel_initializer=kernel,
            bias_initializer=bias,
            name=f"conv{index}",
        )(x)
        if pool:
            x = keras.layers.MaxPool2D(2, strides=2, name=f"pool{index}")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    return keras.Model(inputs, outputs, name=name)
