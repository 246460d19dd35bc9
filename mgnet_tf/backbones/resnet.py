"""torchvision-equivalent ResNet family (channels_last, no classifier head).

The architecture, layer for layer, is that of `torchvision.models.resnet`,
including "ResNet v1.5" (the stride of a bottleneck sits on its 3x3 conv).
Layer names follow torchvision's module names with dots replaced by
underscores (`layer2_0_downsample_conv` is `layer2.0.downsample.0`), so
weights can be mapped between the two by name.

PyTorch pads symmetrically, whereas Keras' `padding="same"` puts the extra
pixel of a strided convolution at the bottom/right. Every strided conv and
pool with a kernel larger than 1 therefore pads explicitly with
`ZeroPadding2D` and then runs with `padding="valid"`.
"""

import keras

from mgnet_tf.layers.batch_norm import BatchNormalization
from mgnet_tf.backbones._validation import is_positive_int, validate_input_shape

# PyTorch's BatchNorm2d defaults; Keras' momentum is 1 - PyTorch's momentum.
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9

_STAGE_PLANES = (64, 128, 256, 512)
_EXPANSION = {"basic": 1, "bottleneck": 4}


def resnet(
    input_shape,
    block,
    layers,
    groups=1,
    width_per_group=64,
    small_input=False,
    name="resnet",
):
    """Builds a torchvision-style ResNet ending in global average pooling.

    Args:
        input_shape: `(height, width, channels)` of the (normalized) images.
        block: `"basic"` (two 3x3 convs, expansion 1) or `"bottleneck"`
            (1x1, 3x3, 1x1 convs, expansion 4).
        layers: Number of blocks in each of the four stages, e.g.
            `[2, 2, 2, 2]` for ResNet-18.
        groups: Groups of the bottleneck's 3x3 conv (32 for ResNeXt-50 32x4d).
        width_per_group: Bottleneck width per group at 64 planes (4 for
            ResNeXt-50 32x4d, 128 for Wide ResNet-50-2).
        small_input: If True, drop the stem's max-pool, as the MGNet paper
            does for 64-pixel glimpses; the weights are unchanged.
        name: Name of the returned model.

    Returns:
        A functional `keras.Model` mapping `(batch, height, width, channels)`
        images to `(batch, 512 * expansion)` features.
    """
    input_shape = validate_input_shape(input_shape)
    if block not in _EXPANSION:
        raise ValueError(
            f"Expected block to be one of {sorted(_EXPANSION)}. "
            f"Received: block={block!r}"
        )
    if (
        not isinstance(layers, (tuple, list))
        or len(layers) != len(_STAGE_PLANES)
        or not all(is_positive_int(count) for count in layers)
    ):
        raise ValueError(
            "Expected layers to be 4 positive ints (blocks per stage). "
            f"Received: layers={layers!r}"
        )
    if not is_positive_int(groups) or not is_positive_int(width_per_group):
        raise ValueError(
            "Expected groups and width_per_group to be positive ints. "
            f"Received: groups={groups!r}, width_per_group={width_per_group!r}"
        )
    if block == "basic" and (groups != 1 or width_per_group != 64):
        # Same restriction as torchvision's BasicBlock.
        raise ValueError(
            "The basic block only supports groups=1 and width_per_group=64. "
            f"Received: groups={groups!r}, width_per_group={width_per_group!r}"
        )
    if not isinstance(small_input, bool):
        raise ValueError(
            f"Expected small_input to be a bool. Received: small_input={small_input!r}"
        )

    inputs = keras.Input(shape=input_shape, name="images")
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = _conv(x, 64, 7, strides=2, name="conv1")
    x = _batch_norm(x, name="bn1")
    x = keras.layers.ReLU(name="relu")(x)
    if not small_input:
        # Zero padding equals PyTorch's -inf max-pool padding here because
        # the ReLU output is non-negative.
        x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
        x = keras.layers.MaxPool2D(3, strides=2, name="maxpool")(x)

    expansion = _EXPANSION[block]
    in_channels = 64
    for stage, (planes, num_blocks) in enumerate(zip(_STAGE_PLANES, layers), 1):
        for index in range(num_blocks):
            strides = 2 if stage > 1 and index == 0 else 1
            prefix = f"layer{stage}_{index}"
            shortcut = x
            if strides != 1 or in_channels != planes * expansion:
                shortcut = _conv(
                    x,
                    planes * expansion,
                    1,
                    strides=strides,
                    name=f"{prefix}_downsample_conv",
                )
                shortcut = _batch_norm(shortcut, name=f"{prefix}_downsample_bn")
            if block == "basic":
                x = _basic_block(x, planes, strides, prefix)
            else:
                x = _bottleneck_block(
                    x, planes, strides, groups, width_per_group, prefix
                )
            x = keras.layers.Add(name=f"{prefix}_add")([x, shortcut])
            x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
            in_channels = planes * expansion

    outputs = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    return keras.Model(inputs, outputs, name=name)


# The family, as torchvision defines it: name -> (block, blocks per stage, groups,
# width per group) and the parameter count with a 1000-way classifier.
RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2), 1, 64),  # 11.7M
    "resnet34": ("basic", (3, 4, 6, 3), 1, 64),  # 21.8M
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1, 64),  # 25.6M, v1.5
    "resnet101": ("bottleneck", (3, 4, 23, 3), 1, 64),  # 44.5M, v1.5
    "resnext50_32x4d": ("bottleneck", (3, 4, 6, 3), 32, 4),  # 25.0M
    "wide_resnet50_2": ("bottleneck", (3, 4, 6, 3), 1, 128),  # 68.9M
}


def resnet_by_name(name, input_shape, small_input=False):
    """A member of `RESNETS` by its torchvision name.

    Args:
        name: A key of `RESNETS`, e.g. "resnet18".
        input_shape: `(height, width, channels)` of the images.
        small_input: If True, drop the stem's max-pool.
    """
    block, layers, groups, width_per_group = RESNETS[name]
    return resnet(
        input_shape,
        block,
        list(layers),
        groups=groups,
        width_per_group=width_per_group,
        small_input=small_input,
        name=name,
    )


def _basic_block(x, planes, strides, prefix):
    x = _conv3x3(x, planes, strides, 1, name=f"{prefix}_conv1")
    x = _batch_norm(x, name=f"{prefix}_bn1")
    x = keras.layers.ReLU(name=f"{prefix}_relu1")(x)
    x = _conv3x3(x, planes, 1, 1, name=f"{prefix}_conv2")
    return _batch_norm(x, name=f"{prefix}_bn2")


def _bottleneck_block(x, planes, strides, groups, width_per_group, prefix):
    width = int(planes * (width_per_group / 64.0)) * groups
    x = _conv(x, width, 1, name=f"{prefix}_conv1")
    x = _batch_norm(x, name=f"{prefix}_bn1")
    x = keras.layers.ReLU(name=f"{prefix}_relu1")(x)
    x = _conv3x3(x, width, strides, groups, name=f"{prefix}_conv2")
    x = _batch_norm(x, name=f"{prefix}_bn2")
    x = keras.layers.ReLU(name=f"{prefix}_relu2")(x)
    x = _conv(x, planes * 4, 1, name=f"{prefix}_conv3")
    return _batch_norm(x, name=f"{prefix}_bn3")


def _conv3x3(x, filters, strides, groups, name):
    if strides == 1:
        # With stride 1 "same" pads one pixel on every side, like PyTorch.
        return _conv(x, filters, 3, groups=groups, padding="same", name=name)
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return _conv(x, filters, 3, strides=strides, groups=groups, name=name)


def _conv(x, filters, kernel_size, strides=1, groups=1, padding="valid", name=None):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        use_bias=False,
        # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        kernel_initializer=keras.initializers.VarianceScaling(
            2.0, mode="fan_out", distribution="untruncated_normal"
        ),
        name=name,
    )(x)


def _batch_norm(x, name):
    # gamma=1, beta=0 are Keras' defaults, as in torchvision. Inference is one
    # fused op that TensorFlow folds into the convolution before it.
    return BatchNormalization(
        momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name
    )(x)
