"""Image backbones: images `(B, H, W, C)` to pooled features `(B, D)`.

Use `get_backbone(name, input_shape)`; `available_backbones()` lists the
registered names. Any `keras.applications` model is also available as
`"keras_app:<Name>"`, e.g. `"keras_app:MobileNetV3Small"`.
"""

import functools

from mgnet_tf.backbones import keras_applications
from mgnet_tf.backbones import resnet
from mgnet_tf.backbones.vanilla_cnn import vanilla_cnn

# Builders taking `(input_shape, small_input)`: the ResNet family's spec table.
_RESNET_BUILDERS = {
    name: functools.partial(resnet.resnet_by_name, name) for name in resnet.RESNETS
}
# Builders taking `(input_shape)` only.
_OTHER_BUILDERS = {
    "vanilla_cnn": vanilla_cnn,
}


def available_backbones():
    """Lists the registered backbone names.

    Besides these, `get_backbone` accepts `"keras_app:<Name>"` for any model
    constructor `<Name>` in `keras.applications`.

    Returns:
        The sorted list of registered names.
    """
    return sorted({**_RESNET_BUILDERS, **_OTHER_BUILDERS})


def get_backbone(name, input_shape, small_input=False, initializer="keras"):
    """Builds a backbone by name.

    Args:
        name: One of `available_backbones()`, or `"keras_app:<Name>"` for a
            randomly initialised `keras.applications.<Name>` (its model is
            named `"keras_app_<Name>"`, since TensorFlow rejects ":" in
            graph-mode name scopes).
        input_shape: `(height, width, channels)` of the (normalized) images;
            any number of channels.
        small_input: If True, drop the stem max-pool of a ResNet-family
            backbone (for small images, e.g. 64-pixel glimpses). Only
            ResNet-family names accept it.
        initializer: "keras" or "torch": the vanilla CNN's initialization
            (`vanilla_cnn`); the other backbones keep their own.

    Returns:
        A functional `keras.Model` named after the backbone, mapping
        `(batch, height, width, channels)` images to `(batch, features)`.

    Raises:
        ValueError: If the name is unknown or `small_input=True` is given for
            a backbone that is not a ResNet.
    """
    if not isinstance(small_input, bool):
        raise ValueError(
            f"Expected small_input to be a bool. Received: small_input={small_input!r}"
        )
    is_keras_app = isinstance(name, str) and name.startswith(keras_applications.PREFIX)
    # List membership, unlike dict lookup, also works for unhashable names.
    if not is_keras_app and name not in available_backbones():
        raise ValueError(
            f"Unknown backbone. Received: backbone={name!r}; expected one of "
            f"{available_backbones()} or '{keras_applications.PREFIX}<Name>'"
        )
    if small_input and name not in _RESNET_BUILDERS:
        raise ValueError(
            "small_input=True only applies to ResNet-family backbones "
            f"{sorted(_RESNET_BUILDERS)}. Received: backbone={name!r}, "
            "small_input=True"
        )
    if is_keras_app:
        return keras_applications.keras_application(
            name[len(keras_applications.PREFIX) :], input_shape
        )
    if name in _RESNET_BUILDERS:
        return _RESNET_BUILDERS[name](input_shape, small_input=small_input)
    if name == "vanilla_cnn":
        return vanilla_cnn(input_shape, initializer=initializer)
    return _OTHER_BUILDERS[name](input_shape)
