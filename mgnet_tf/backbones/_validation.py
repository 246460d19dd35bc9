"""Argument checks shared by the backbone builders."""


def validate_input_shape(input_shape):
    """Checks an image shape and returns it as a tuple.

    Args:
        input_shape: `(height, width, channels)`. Height and width are positive
            ints or `None` (any size); channels is a positive int, since the
            first convolution needs a fixed number of input channels.

    Returns:
        The shape as a tuple.

    Raises:
        ValueError: If the shape is not of that form.
    """
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(
            "Expected input_shape=(height, width, channels). "
            f"Received: input_shape={input_shape!r}"
        )
    height, width, channels = input_shape
    for dim in (height, width):
        if dim is not None and not is_positive_int(dim):
            raise ValueError(
                "Expected height and width to be positive ints or None. "
                f"Received: input_shape={input_shape!r}"
            )
    if not is_positive_int(channels):
        raise ValueError(
            "Expected channels to be a positive int. "
            f"Received: input_shape={input_shape!r}"
        )
    return tuple(input_shape)


def is_positive_int(value):
    """Whether `value` is an int greater than zero (bools excluded)."""
    # bool is an int subclass, but True as an image size is surely a mistake.
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
