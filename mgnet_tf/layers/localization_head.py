"""Localization network (eq. 4): where the next glimpse looks."""

import keras
from keras import ops

from mgnet_tf.layers.gradient_rescale import GradientRescale

RESCALE_AT = ("output", "input")
PLACEMENTS = ("absolute", "relative", "spatial")


def check_spatial_rescale_at(spatial_rescale_at, placement):
    """Raises a ValueError naming both settings unless `spatial_rescale_at` is None,
    or one of RESCALE_AT with placement="spatial" (the only placement with a
    soft-argmax to re-scale apart)."""
    if spatial_rescale_at is not None and (
        spatial_rescale_at not in RESCALE_AT or placement != "spatial"
    ):
        raise ValueError(
            f"`spatial_rescale_at` must be None, or one of {RESCALE_AT} with "
            "placement='spatial' (it places the re-scaling of that placement's "
            f"soft-argmax). Received: spatial_rescale_at={spatial_rescale_at!r} with "
            f"placement={placement!r}"
        )


@keras.saving.register_keras_serializable(package="mgnet_tf")
class LocalizationHead(keras.layers.Layer):
    """Predicts the next glimpse's (s, x, y) from the fused feature F_t (eq. 4).

    Dense(3) -> sigmoid -> gradient re-scaling by `grad_scale` (eq. 5), then
    s = sigma_s (scale_max - scale_min) + scale_min and
    (x, y) = (2 sigma_xy - 1)(1 - s), which keeps the glimpse inside the image.

    Args:
        grad_scale: float, the gradient re-scaling factor s of eq. 5. The paper
            uses 0.02 for ResNet-18 and 0.01 for larger backbones.
        scale_min: float in (0, 1], smallest glimpse side as a fraction of the image
            (the paper's a_min = 0.2).
        scale_max: float in [scale_min, 1], largest one (a_max = 0.5).
        kernel_initializer: initializer of the Dense(3) kernel (its bias starts at 0).
        rescale_at: where the gradient re-scaling sits. "output": after the sigmoid,
            as eq. 4 and the official code place it, so the Dense(3) layer itself
            learns `grad_scale` times slower. "input": on the fused feature going
            in, so the backbone and the fusion get `grad_scale` times the
            localization gradient while the Dense(3) layer learns at the full rate.
        placement: how the centre is given. "absolute" (eq. 4, the official code):
            (x, y) = (2 sigma_xy - 1)(1 - s) anywhere in the image. "relative" (ours):
            the centre of the glimpse just taken moved by (2 sigma_xy - 1) times its
            half side s_t, clipped to [s - 1, 1 - s]: a zero output keeps the glimpse
            where it is, so a later glimpse refines the one before. From glimpse 1
            (the whole image) both reach the whole image. Its call takes `previous`,
            the (s, x, y) of the glimpse just taken (no gradient flows into it).
            "spatial" (ours): "relative", plus a move read from the glimpse's own
            feature map: a 1x1 projection scores each cell of the backbone's last
            map before pooling, and the soft-argmax of those scores (the
            score-weighted mean of the cells' centres, in units of the half side)
            is added to the move. The map is translation-equivariant where the
            pooled feature is not, so the head can say "the item is up and to the
            left of this window's centre" by which cells respond; localization
            policies that read a spatial map (Saccader, Elsayed et al. 2019) do the
            same. The projection starts at zero (uniform scores: no move). Eq. 5's
            re-scaling sits where `rescale_at` says, as for the Dense(3) layer:
            after the soft-argmax ("output": the projection learns `grad_scale`
            times slower) or on the feature map going in ("input"). Its call also
            takes `feature_map` (B, h, w, map_channels).
        spatial_rescale_at: None (as `rescale_at`), "output" or "input": where eq.
            5's re-scaling sits for the soft-argmax alone (placement="spatial"):
            "input" lets the cell scores learn at the full rate while the gradient
            into the backbone's map stays re-scaled; the soft-argmax's move is
            bounded by the window's half side, so a fast projection cannot send the
            glimpse across the image or change its size, what a fast Dense(3) does.
        map_channels: int, channels of that feature map; needed by "spatial" only.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    head = mgnet_tf.layers.LocalizationHead(grad_scale=0.02)
    head(np.random.rand(2, 515).astype("float32")).shape  # (2, 3)
    ```
    """

    def __init__(
        self,
        grad_scale=0.02,
        scale_min=0.2,
        scale_max=0.5,
        kernel_initializer="glorot_uniform",
        rescale_at="output",
        placement="absolute",
        map_channels=None,
        spatial_rescale_at=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if placement not in PLACEMENTS:
            raise ValueError(
                f"Expected placement in {PLACEMENTS}. Received: placement={placement!r}"
            )
        self.placement = placement
        if placement == "spatial" and not (
            isinstance(map_channels, int) and map_channels >= 1
        ):
            raise ValueError(
                "LocalizationHead(placement='spatial') needs `map_channels`, the "
                f"channels of the backbone's feature map. Received: map_channels={map_channels!r}"
            )
        self.map_channels = map_channels if placement == "spatial" else None
        if rescale_at not in RESCALE_AT:
            raise ValueError(
                f"Expected rescale_at in {RESCALE_AT}. Received: rescale_at={rescale_at!r}"
            )
        if not 0.0 < scale_min <= scale_max <= 1.0:
            raise ValueError(
                "Expected 0 < scale_min <= scale_max <= 1. Received: "
                f"scale_min={scale_min}, scale_max={scale_max}"
            )
        check_spatial_rescale_at(spatial_rescale_at, placement)
        self.spatial_rescale_at = spatial_rescale_at
        self.grad_scale = grad_scale
        self.scale_min = scale_min
        self.scale_max = scale_max
        self.rescale_at = rescale_at
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.dense = keras.layers.Dense(
            3, kernel_initializer=self.kernel_initializer, name="dense"
        )
        self.rescale = GradientRescale(grad_scale, name="gradient_rescale")
        self.cell_scores = (
            keras.layers.Dense(1, kernel_initializer="zeros", name="cell_scores")
            if placement == "spatial"
            else None
        )

    def build(self, features_shape):
        self.dense.build(features_shape)
        if self.cell_scores is not None:
            self.cell_scores.build((None, self.map_channels))

    def spatial_move(self, feature_map):
        """(B, 2) soft-argmax (x, y) of `feature_map` (B, h, w, C) in units of the
        glimpse's half side: cell (i, j) of an h x w map stands for the point
        ((2j + 1) / w - 1, (2i + 1) / h - 1), the centre of its share of the window cut
        evenly into h x w cells, and the scores' softmax weighs them. These are nominal
        centres: a backbone's receptive fields may sit off them (the vanilla CNN's on a
        28 px glimpse at +-0.59 instead of +-0.67, a ResNet's nearer each cell's top
        left); the learned scores and the Dense(3) move absorb such offsets, and with
        uniform scores (the start) the move is exactly zero."""
        height, width = feature_map.shape[1], feature_map.shape[2]
        if height is None or width is None:
            raise ValueError(
                "placement='spatial' needs a feature map of static height and width. "
                f"Received: shape {feature_map.shape}"
            )
        scores = ops.reshape(self.cell_scores(feature_map), (-1, height * width))
        weights = ops.reshape(ops.softmax(scores, axis=-1), (-1, height, width))
        weights = ops.cast(weights, "float32")
        xs = (2.0 * ops.arange(width, dtype="float32") + 1.0) / width - 1.0
        ys = (2.0 * ops.arange(height, dtype="float32") + 1.0) / height - 1.0
        x = ops.sum(ops.sum(weights, axis=1) * xs, axis=-1)
        y = ops.sum(ops.sum(weights, axis=2) * ys, axis=-1)
        return ops.stack([x, y], axis=-1)

    def call(self, features, previous=None, clip=True, feature_map=None):
        """(B, 3) (s, x, y) of the next glimpse. `clip=False` (relative and spatial
        placement) leaves the centre where the move takes it, even outside the
        image. `feature_map`: the glimpse's map before pooling (spatial only)."""
        if self.rescale_at == "input":
            raw = ops.sigmoid(self.dense(self.rescale(features)))
        else:
            raw = self.rescale(ops.sigmoid(self.dense(features)))
        scale = raw[:, 0:1] * (self.scale_max - self.scale_min) + self.scale_min
        move = 2.0 * raw[:, 1:3] - 1.0
        if self.placement == "absolute":
            centre = move * (1.0 - scale)
        else:
            if previous is None:
                raise ValueError(
                    f"LocalizationHead(placement={self.placement!r}) needs `previous`, the "
                    "(s, x, y) of the glimpse just taken"
                )
            if self.placement == "spatial":
                if feature_map is None:
                    raise ValueError(
                        "LocalizationHead(placement='spatial') needs `feature_map`, the "
                        "backbone's map of the glimpse just taken, before pooling"
                    )
                if (self.spatial_rescale_at or self.rescale_at) == "input":
                    spatial = self.spatial_move(self.rescale(feature_map))
                else:
                    spatial = self.rescale(self.spatial_move(feature_map))
                move = move + ops.cast(spatial, move.dtype)
            previous = ops.stop_gradient(ops.cast(previous, scale.dtype))
            centre = previous[:, 1:3] + move * previous[:, 0:1]
            if clip:
                limit = 1.0 - scale
                centre = ops.clip(centre, -limit, limit)
        return ops.concatenate([scale, centre], axis=-1)

    def compute_output_shape(self, features_shape):
        return (features_shape[0], 3)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grad_scale": self.grad_scale,
                "scale_min": self.scale_min,
                "scale_max": self.scale_max,
                "rescale_at": self.rescale_at,
                "placement": self.placement,
                "map_channels": self.map_channels,
                "spatial_rescale_at": self.spatial_rescale_at,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
