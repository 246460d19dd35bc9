"""Differentiable glimpse sampler: scale + translation affine crop with bilinear interpolation."""

import keras
from keras import ops


def _base_grid(size):
    """Normalized output coordinates, as PyTorch `affine_grid(align_corners=True)`.

    PyTorch places a single sample at 0 (the centre), not at -1.
    """
    if size == 1:
        return ops.zeros([1], "float32")
    return ops.linspace(-1.0, 1.0, size, dtype="float32")


def _axis_taps(centers, input_size):
    """Bilinear taps along one axis for normalized sample positions.

    `grid_sample(align_corners=True)` maps -1 and 1 to the centres of the first and last
    pixel. Each sample reads the two pixels around it with tent weights; a pixel outside
    the image gets weight 0, which is exactly zero padding.

    Args:
        centers: float32 (B, n) normalized positions.
        input_size: int, the input length along this axis.

    Returns:
        (low index, high index, low weight, high weight), each (B, n); indices are
        clipped into range, and the weight of an out-of-range tap is 0.
    """
    position = (centers + 1.0) * 0.5 * float(input_size - 1)
    low = ops.floor(position)
    high_weight = position - low
    low_weight = 1.0 - high_weight
    low_index = ops.cast(low, "int32")
    high_index = low_index + 1

    def in_range(index):
        return ops.cast(
            ops.logical_and(index >= 0, index < input_size), "float32"
        )

    low_weight *= in_range(low_index)
    high_weight *= in_range(high_index)
    last = input_size - 1
    return (
        ops.clip(low_index, 0, last),
        ops.clip(high_index, 0, last),
        low_weight,
        high_weight,
    )


def _gather_slices(x, index):
    """`out[b, i] = x[b, index[b, i]]` for x (B, N, ...) and index (B, n).

    One gather on the flattened leading axes: a plain axis-0 gather is fast and
    XLA-compatible on every Keras backend, and its gradient is a scatter-add.
    """
    batch, length = ops.shape(x)[0], x.shape[1]
    flat = ops.reshape(x, (-1, *x.shape[2:]))
    offsets = ops.arange(batch, dtype="int32")[:, None] * length
    return ops.take(flat, index + offsets, axis=0)


METHODS = ("gather", "matmul")


def _check_method(method):
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")


def _interpolation_matrix(centers, input_size, dtype):
    """(B, n, input_size): row i holds sample i's two bilinear weights (`_axis_taps`)
    at its two pixels, zeros elsewhere; an out-of-range tap has weight 0."""
    low, high, low_weight, high_weight = _axis_taps(centers, input_size)
    matrix = ops.one_hot(low, input_size) * low_weight[..., None] + ops.one_hot(
        high, input_size
    ) * high_weight[..., None]
    return ops.cast(matrix, dtype)


def sample_glimpses(images, glimpse_params, output_size, method="gather"):
    """Samples one glimpse per image; the functional form of `GlimpseSampler`.

    Args:
        images: float tensor (B, H, W, C).
        glimpse_params: float tensor (B, 3) of (s, x, y): the affine matrix
            [[s, 0, x], [0, s, y]] in normalized coordinates [-1, 1] (eq. 1).
        output_size: (h, w) of the glimpse.
        method: "gather" (four corner gathers and a blend: 4 multiply-adds per
            output value) or "matmul" (the same sums as two batched matrix products
            with the (h, H) and (w, W) interpolation matrices: H + W multiply-adds
            per output value, but only dense products, which runtimes without a fast
            gather, such as LiteRT's XNNPACK, run in one piece). Same values up to
            float rounding, same gradients.

    Returns:
        Tensor (B, h, w, C) of `images.dtype`.
    """
    _check_method(method)
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        raise ValueError(
            "GlimpseSampler needs static image height and width (XLA and TPUs need "
            f"static shapes). Received: images.shape={images.shape}"
        )
    # Coordinates stay in float32 under mixed precision: a bfloat16 pixel position is
    # off by whole pixels at 224 px.
    glimpse_params = ops.cast(glimpse_params, "float32")
    scale = glimpse_params[:, 0:1]
    x_center = glimpse_params[:, 1:2]
    y_center = glimpse_params[:, 2:3]
    # Scale + translation is separable: a row's position depends only on y and a
    # column's only on x. So the four bilinear corners are two row gathers followed by
    # two column gathers (no arithmetic), and the blend costs what bilinear
    # interpolation costs: 4 multiply-adds per output value and channel.
    y_centers = scale * _base_grid(output_size[0])[None, :] + y_center
    x_centers = scale * _base_grid(output_size[1])[None, :] + x_center
    if method == "matmul":
        rows = _interpolation_matrix(y_centers, height, images.dtype)  # (B, h, H)
        columns = _interpolation_matrix(x_centers, width, images.dtype)  # (B, w, W)
        picked = ops.einsum("bhy,byxc->bhxc", rows, images)
        return ops.einsum("bwx,bhxc->bhwc", columns, picked)
    y_low, y_high, wy_low, wy_high = _axis_taps(y_centers, height)
    x_low, x_high, wx_low, wx_high = _axis_taps(x_centers, width)
    # A gather copies one slice per index; gathering columns of (B, h, W, C) would
    # copy C values (12 bytes) at a time, slow on CPUs. So the gathered rows are
    # transposed to (B, W, h, C) and columns are gathered as whole (h, C) slices; the
    # blend runs in that layout and one transpose restores (B, h, w, C). Same values
    # and the same arithmetic as gathering in place.
    rows_low, rows_high = (
        ops.transpose(_gather_slices(images, rows), (0, 2, 1, 3))
        for rows in (y_low, y_high)
    )
    total = None
    for rows, wy in ((rows_low, wy_low), (rows_high, wy_high)):
        for columns, wx in ((x_low, wx_low), (x_high, wx_high)):
            corner = _gather_slices(rows, columns)  # (B, w, h, C)
            weight = wx[:, :, None, None] * wy[:, None, :, None]  # (B, w, h, 1)
            term = corner * ops.cast(weight, images.dtype)
            total = term if total is None else total + term
    return ops.transpose(total, (0, 2, 1, 3))


@keras.saving.register_keras_serializable(package="mgnet_tf")
class GlimpseSampler(keras.layers.Layer):
    """Glimpse generator of MGNet (eqs. 1-2): crops and resamples a region of each image.

    The region is given by (s, x, y): the affine matrix A = [[s, 0, x], [0, s, y]] maps
    the glimpse's normalized grid onto the image, with the conventions of PyTorch's
    `F.affine_grid` and `F.grid_sample(mode="bilinear", padding_mode="zeros",
    align_corners=True)`, which the paper's reference code used: (s, x, y) = (1, 0, 0) is
    the whole image; samples outside the image read zeros. Gradients flow to both the
    images (for attacks) and the parameters (to learn where to look). Static shapes,
    no loop over the batch: it compiles with XLA (`jit_compile=True`) and on TPUs.

    Args:
        output_size: (height, width) of the glimpse, or one int for a square glimpse.
        method: "gather" or "matmul", how the bilinear sums are computed
            (`sample_glimpses`); the same values and gradients.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    sampler = mgnet_tf.layers.GlimpseSampler(output_size=(32, 32))
    images = np.random.rand(2, 64, 64, 3).astype("float32")
    params = np.array([[1.0, 0.0, 0.0], [0.5, -0.5, 0.5]], "float32")
    glimpses = sampler(images, params)  # (2, 32, 32, 3)
    ```
    """

    def __init__(self, output_size, method="gather", **kwargs):
        super().__init__(**kwargs)
        _check_method(method)
        self.method = method
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        output_size = tuple(output_size)
        if len(output_size) != 2 or not all(
            isinstance(size, int) and size >= 1 for size in output_size
        ):
            raise ValueError(
                "`output_size` must be (height, width) with two positive ints. "
                f"Received: output_size={output_size}"
            )
        self.output_size = output_size

    def call(self, images, glimpse_params):
        return sample_glimpses(images, glimpse_params, self.output_size, self.method)

    def compute_output_shape(self, images_shape, glimpse_params_shape):
        return (images_shape[0], *self.output_size, images_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"output_size": self.output_size, "method": self.method})
        return config
