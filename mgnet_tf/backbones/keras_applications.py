"""Backbones taken from `keras.applications`, randomly initialised."""

import inspect
import types

import keras

from mgnet_tf.backbones._validation import validate_input_shape

PREFIX = "keras_app:"

# Every backbone must be headless, pooled and built for the given shape.
_REQUIRED_KWARGS = ("weights", "include_top", "pooling", "input_shape")


def available_applications():
    """Lists the model constructors exported by `keras.applications`.

    Returns:
        Sorted names such as `"MobileNetV3Small"` (submodules such as
        `keras.applications.resnet` are left out).
    """
    return sorted(
        name
        for name, value in vars(keras.applications).items()
        if name[:1].isupper()
        and callable(value)
        and not isinstance(value, types.ModuleType)
    )


def keras_application(application, input_shape):
    """Builds a `keras.applications` model as a headless feature extractor.

    The model is built with `weights=None, include_top=False,
    pooling="avg"`. Applications that can switch off their built-in input
    preprocessing (`include_preprocessing`, e.g. MobileNetV3, EfficientNetV2,
    ConvNeXt) get it switched off, since the images arrive normalized.
    EfficientNet B0-B7 cannot: they always rescale by 1/255 first.

    Args:
        application: Name of the constructor in `keras.applications`, e.g.
            `"MobileNetV3Small"` or `"EfficientNetB0"`.
        input_shape: `(height, width, channels)` of the images. Each
            application has its own minimum size (32 for most).

    Returns:
        A functional `keras.Model` named `"keras_app_<application>"` (not
        `"keras_app:<application>"`: TensorFlow rejects ":" in graph-mode
        name scopes) mapping `(batch, height, width, channels)` images to
        `(batch, features)` vectors.
    """
    input_shape = validate_input_shape(input_shape)
    known = available_applications()
    if application not in known:
        raise ValueError(
            "Unknown keras.applications model. "
            f"Received: application={application!r}; expected one of {known}"
        )
    constructor = getattr(keras.applications, application)
    parameters = inspect.signature(constructor).parameters
    missing = [kwarg for kwarg in _REQUIRED_KWARGS if kwarg not in parameters]
    if missing:
        raise ValueError(
            f"keras.applications.{application} cannot be built as a pooled "
            f"feature extractor: it does not accept {missing}."
        )
    kwargs = {
        "weights": None,
        "include_top": False,
        "pooling": "avg",
        "input_shape": input_shape,
    }
    if "include_preprocessing" in parameters:
        kwargs["include_preprocessing"] = False
    model = constructor(**kwargs)
    # Renaming afterwards works for every application, whether or not its
    # constructor takes `name`.
    model.name = f"keras_app_{application}"
    return model
