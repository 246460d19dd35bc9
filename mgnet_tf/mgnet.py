"""The Multi-Glimpse Network (Tan, Dong, Ma, BMVC 2021) as a Keras 3 model."""

import inspect
import math
import warnings

import keras
from keras import ops

from mgnet_tf import backbones
from mgnet_tf.layers import FeatureFusion, GlimpseSampler, LocalizationHead
from mgnet_tf.layers.localization_head import (
    PLACEMENTS,
    RESCALE_AT,
    check_spatial_rescale_at,
)

# ImageNet statistics, the convention of torchvision and the paper's code.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE_PENALTY_MODES = ("all", "confident_last")
# Keras warns when a trainable variable gets no gradient. The glimpse classifier gets none
# where no glimpse carries its loss (FF-Net with the glimpse loss from glimpse 2, or
# alpha = 0); the warning then names its two variables and nothing else, and its advice
# ("did you forget to provide a `loss`?") does not apply. Any other variable without a
# gradient still warns.
_UNUSED_GLIMPSE_CLASSIFIER_WARNING = (
    r"Gradients do not exist for variables "
    r"\['[^']*glimpse_classifier/[^']*'(, '[^']*glimpse_classifier/[^']*')*\] "
)
INITIALIZERS = ("keras", "torch")


def glimpse_size(image_size, downsample):
    """Side of a glimpse: floor(image_size / downsample), e.g. 224 / (7/3) = 96.

    A small tolerance keeps exact ratios exact: 224 / 2.3333333333333335 is
    95.99999999999999 in floating point, and the paper's glimpse is 96 px.
    """
    return int(math.floor(image_size / downsample + 1e-6))


@keras.saving.register_keras_serializable(package="mgnet_tf")
class MGNet(keras.Model):
    """Multi-Glimpse Network: classifies an image from a few low-resolution glimpses.

    Each step t samples a glimpse of `image_size / downsample` pixels (the first one is
    the whole image, downsampled), encodes it with the shared backbone into h_t, appends
    the glimpse's (s, x, y) (stop-gradient) as a positional code, fuses all tokens so far
    by attention into F_t (eq. 3), classifies F_t (global classifier) and predicts where
    to look next from F_t (eq. 4). A glimpse classifier on h_t adds the auxiliary loss of
    eq. 8 during training. `num_glimpses=1, downsample=1` is the FF-Net baseline.

    Images enter as float32 in [0, 1]; mean/std normalization happens inside, so
    attacks and serving work in pixel space.

    Args:
        backbone: a registered name (`mgnet_tf.backbones.available_backbones()`, or
            `"keras_app:<Name>"`), or a `keras.Model` mapping a glimpse
            (B, g, g, channels) to a pooled feature vector (B, D).
        num_classes: int, number of classes.
        image_size: int, side of the (square) input image.
        num_glimpses: int, T, glimpses per image (the paper: 4 on ImageNet100, 3 on
            Tiny ImageNet, 3-5 on translated MNIST).
        downsample: float >= 1, M; a glimpse has floor(image_size / M) pixels a side.
        channels: int, image channels (3 for RGB, 1 for MNIST).
        alpha: float in [0, 1], weight of the glimpse classifier loss (eq. 6).
        grad_scale: float, gradient re-scaling factor s of the localization network
            (eq. 5).
        scale_min: float, smallest glimpse side as a fraction of the image (a_min).
        scale_max: float, largest glimpse side as a fraction of the image (a_max).
        size_penalty: float >= 0, weight of the squared penalty on (s - scale_min)
            (Appendix B, translated MNIST); 0 turns it off.
        size_penalty_mode: which glimpses and examples the size penalty covers.
            "all": every learned glimpse (2..T) of every example, the paper's
            ||a^s - a_min||. "confident_last": the official code's form: the last
            glimpse only, and only the examples whose cross-entropy after the last
            glimpse is below `size_penalty_threshold` (the batch mean over all
            examples, so it is scaled by their fraction).
        size_penalty_threshold: float, the cross-entropy bound of
            "confident_last" (the official code's 0.4).
        size_penalty_rescaled: bool. True (the paper, the official code): the size
            penalty's gradient passes eq. 5's re-scaling like every localization
            gradient, so with `rescale_at="output"` it reaches the localization layer
            `grad_scale` times weaker. False: the penalty's gradient bypasses the
            re-scaling (the same loss value; its gradient 1 / `grad_scale` times
            stronger), while the classification losses stay re-scaled.
        glimpse_loss_from: int from 1 to max(T, 2), the first glimpse whose
            glimpse-classifier loss counts. 1 is eq. 8 as the paper writes it (all T
            glimpses, the first one being the whole image, downsampled). 2 is the
            official code: glimpses 2..T, the mean over T - 1. Larger values (ours)
            leave out more of the early, coarser glimpses. With one glimpse and 2,
            there is no glimpse loss and the global classifier's loss has weight 1
            (the official code sets alpha = 0 for FF-Net).
        global_loss_weights: None, or one non-negative weight per glimpse (T values,
            not all zero): the weights of glimpses 1..T in the global classifier's
            loss (eq. 7), normalized to sum to 1; the glimpse classifier's loss takes
            the same weights over the glimpses it covers, normalized again. None is
            eq. 7's mean (every glimpse 1 / T). The official code's `--n_iter_coef`
            (default all 1); e.g. (0, 1, ..., 1) frees the backbone from classifying
            glimpse 1, the whole image downsampled, on its own.
        initializer: "keras" (Glorot-uniform kernels, zero biases: Keras' defaults)
            or "torch" (the official code: Kaiming-normal, fan-in, for the two
            classifiers, the localization layer and the attention projections;
            PyTorch's default Kaiming-uniform for the vanilla CNN's convolutions).
        attention_bias: bool, biases on the four attention projections (zero at
            start), as PyTorch's `nn.MultiheadAttention` has; eq. 3 has none.
        rescale_at: "output" (eq. 4 and the official code: the re-scaling follows
            the sigmoid, so the localization layer learns `grad_scale` times slower)
            or "input" (it precedes the localization layer: only the gradient into
            the fused feature, the fusion and the backbone is re-scaled).
        spatial_rescale_at: None (as `rescale_at`), "output" or "input": the same
            choice for placement="spatial"'s soft-argmax alone (ours): "input" lets its
            cell scores learn at the full rate, the gradient into the backbone's map
            still re-scaled, while the Dense(3) layer (s and the pooled move) keeps
            `rescale_at`. See `LocalizationHead`.
        placement: "absolute" (eq. 4, the official code: the localization network
            gives each glimpse's centre in the image) or "relative" (the centre of the
            glimpse just taken plus a move of up to its half side; see
            `LocalizationHead`) or "spatial" (ours: "relative", plus a move read by
            a soft-argmax from the backbone's feature map of the glimpse just taken,
            before its global average pooling; the backbone must end with a
            channels-last `GlobalAveragePooling2D`, as the vanilla CNN, the ResNets
            and most `keras_app:` models do). With one glimpse (FF-Net) there is no
            localization and the placement changes nothing.
        placement_map: None or the name of a backbone layer with a channels-last
            (B, h, w, C) output: the map whose cells placement="spatial" scores,
            instead of the last map before pooling. A finer, earlier map has cells
            closer together (the vanilla CNN on a 28 px glimpse: "conv3", 6 x 6 cells
            4 px apart, against the last map's 3 x 3); the backbone's pooled feature is
            unchanged.
        shift_consistency: float >= 0, weight of a self-supervised loss (ours, not in
            the paper) that teaches the localization network to correct a glimpse from
            what it sees: during training, at every learned glimpse t < T, a quarter of
            the batch also takes glimpse t shifted by a random offset (uniform, up to
            `shift_consistency_radius` of its half side per axis) while its positional
            code still says the unshifted place, and the move the localization network
            proposes from there must reach the same next centre as from the unshifted
            glimpse (squared error in half sides; details in
            `shift_consistency_error`). Only the shifted glimpse's content tells the
            offset, so the loss cannot be met by placing from the first glimpse
            alone. Needs `placement="relative"` and T >= 3; its gradient bypasses eq. 5's
            re-scaling (`rescale_at="output"`). No box labels are used. Costs two
            extra backbone passes on a quarter of the batch per glimpse 2..T-1. 0
            turns it off (no extra backbone pass).
        shift_consistency_radius: float in (0, 1], the largest shift per axis as a
            fraction of the glimpse's half side.
        first_localization: bool (ours). True: glimpse 2 is placed by a
            localization head of its own (the same form as the shared one), which
            reads the first view, the whole image at 1 / downsample of its
            resolution; glimpses 3..T by the shared head, which reads glimpses. The
            two tasks differ (find the item in a coarse whole view; refine from a
            close one) and the lookahead loss trains the first one alone.
        lookahead: float >= 0, weight of a self-supervised loss (ours, not in the
            paper) that teaches glimpse 2 to go where the model's last glimpse went:
            the squared distance between glimpse 2's centre and the last glimpse's
            centre (held fixed), in half sides of the last glimpse, batch mean. The
            last glimpse, placed after T - 1 looks, is the model's best estimate of
            where the item is; glimpse 2 lands further off (8-9 px against about 3
            on translated Fashion-MNIST). The loss trains only the first
            localization head (its inputs are held fixed, so neither the backbone nor
            the fusion moves), at the full rate (past eq. 5's re-scaling). It needs
            `first_localization=True`: through a shared head it moves every later
            glimpse too, and each early glimpse chases a last glimpse placed relative
            to it (measured: all glimpses in a corner of the image within an epoch).
            It also needs placement="relative" or "spatial", where glimpse 2's
            centre does not depend on its size (taken unclipped), so only the
            centre is pulled. No box labels, no extra backbone pass. Needs T >= 3.
            0 turns it off. The
            model then holds a non-trainable `lookahead_gate` (1 at start) that
            multiplies the loss; train.py's `--lookahead_start` keeps it at 0 for the
            first epochs (`training.callbacks.LookaheadStart`), while the last
            glimpse has not found anything yet.
        small_input: bool, ResNet backbones without the stem max-pool (the paper's
            dagger networks for 64 px images).
        dropout: float, dropout on the fusion attention weights.
        num_heads: int, fusion attention heads (the paper: 1).
        mean: per-channel mean subtracted inside the model; None means the ImageNet
            mean for 3 channels and 0.5 otherwise.
        std: per-channel standard deviation; None means the ImageNet std for 3 channels
            and 0.5 otherwise.
        crop_fraction: None or a float in (0, 1], the evaluation transform the
            model was trained for, recorded for serving (`pipelines.transform`):
            None resizes the whole image, 0.875 resizes the shorter side and crops
            the centre (the ImageNet-like sets). The model itself does not use it.
        **kwargs: standard `keras.Model` arguments (e.g. `name`).

    Example:

    ```python
    model = mgnet_tf.MGNet("resnet18", num_classes=200, image_size=64,
                           num_glimpses=3, downsample=2, small_input=True)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(images, labels, epochs=1)          # joint loss of eq. 6
    outputs = model(images)                      # logits: (B, 3, 200)
    early = model(images, num_glimpses=1)        # one backbone pass only
    ```
    """

    def __init__(
        self,
        backbone="resnet18",
        num_classes=1000,
        image_size=224,
        num_glimpses=4,
        downsample=7 / 3,
        channels=3,
        alpha=0.6,
        grad_scale=0.02,
        scale_min=0.2,
        scale_max=0.5,
        size_penalty=0.0,
        small_input=False,
        dropout=0.0,
        num_heads=1,
        mean=None,
        std=None,
        size_penalty_mode="all",
        size_penalty_threshold=0.4,
        size_penalty_rescaled=True,
        glimpse_loss_from=1,
        global_loss_weights=None,
        initializer="keras",
        attention_bias=False,
        rescale_at="output",
        placement="absolute",
        placement_map=None,
        spatial_rescale_at=None,
        shift_consistency=0.0,
        shift_consistency_radius=0.5,
        first_localization=False,
        lookahead=0.0,
        crop_fraction=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_positive_int("num_classes", num_classes)
        _check_positive_int("image_size", image_size)
        _check_positive_int("num_glimpses", num_glimpses)
        _check_positive_int("channels", channels)
        if not isinstance(downsample, (int, float)) or downsample < 1:
            raise ValueError(
                f"`downsample` must be a number >= 1. Received: downsample={downsample!r}"
            )
        if glimpse_size(image_size, downsample) < 1:
            raise ValueError(
                "`image_size / downsample` must be at least 1 pixel. Received: "
                f"image_size={image_size}, downsample={downsample}"
            )
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha!r}")
        if size_penalty < 0:
            raise ValueError(
                f"`size_penalty` must be >= 0. Received: size_penalty={size_penalty!r}"
            )
        if size_penalty_mode not in SIZE_PENALTY_MODES:
            raise ValueError(
                f"`size_penalty_mode` must be one of {SIZE_PENALTY_MODES}. "
                f"Received: size_penalty_mode={size_penalty_mode!r}"
            )
        if not (
            isinstance(glimpse_loss_from, int)
            and not isinstance(glimpse_loss_from, bool)
            and 1 <= glimpse_loss_from <= max(num_glimpses, 2)
        ):
            raise ValueError(
                "`glimpse_loss_from` must be an int from 1 (eq. 8: every glimpse; 2: "
                f"the official code) to max(num_glimpses, 2) = {max(num_glimpses, 2)}. "
                f"Received: glimpse_loss_from={glimpse_loss_from!r}"
            )
        if global_loss_weights is not None:
            global_loss_weights = tuple(float(w) for w in global_loss_weights)
            if (
                len(global_loss_weights) != num_glimpses
                or min(global_loss_weights) < 0
                or sum(global_loss_weights) <= 0
            ):
                raise ValueError(
                    f"`global_loss_weights` must be None or {num_glimpses} weights "
                    "(one per glimpse), >= 0 and not all 0. Received: "
                    f"global_loss_weights={global_loss_weights!r}"
                )
            if num_glimpses >= glimpse_loss_from and not sum(
                global_loss_weights[glimpse_loss_from - 1 :]
            ):
                raise ValueError(
                    "`global_loss_weights` gives no weight to the glimpses of the glimpse "
                    f"classifier's loss (from glimpse {glimpse_loss_from}). Received: "
                    f"global_loss_weights={global_loss_weights!r}"
                )
        if initializer not in INITIALIZERS:
            raise ValueError(
                f"`initializer` must be one of {INITIALIZERS}. "
                f"Received: initializer={initializer!r}"
            )
        default_mean, default_std = (
            (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,) * channels,) * 2
        )
        mean = tuple(float(v) for v in (default_mean if mean is None else mean))
        std = tuple(float(v) for v in (default_std if std is None else std))
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ValueError(
                f"`mean` and `std` need {channels} values (one per channel) and std > 0. "
                f"Received: mean={mean}, std={std}"
            )

        self.num_classes = num_classes
        self.image_size = image_size
        self.num_glimpses = num_glimpses
        self.downsample = float(downsample)
        self.channels = channels
        self.alpha = float(alpha)
        self.grad_scale = float(grad_scale)
        self.scale_min = float(scale_min)
        self.scale_max = float(scale_max)
        self.size_penalty = float(size_penalty)
        self.small_input = bool(small_input)
        self.dropout = float(dropout)
        self.num_heads = num_heads
        self.mean = mean
        self.std = std
        self.size_penalty_mode = size_penalty_mode
        self.size_penalty_threshold = float(size_penalty_threshold)
        self.size_penalty_rescaled = bool(size_penalty_rescaled)
        self.glimpse_loss_from = int(glimpse_loss_from)
        if not self.glimpse_loss_is_used:
            # Once, here: Keras's warning that the glimpse classifier gets no gradient is
            # silenced (that one only). Not per loss call: each new filter resets
            # Python's once-per-place record, so other warnings would repeat every
            # eager step.
            warnings.filterwarnings(
                "ignore", message=_UNUSED_GLIMPSE_CLASSIFIER_WARNING, category=UserWarning
            )
        self.global_loss_weights = global_loss_weights
        self.initializer = initializer
        self.attention_bias = bool(attention_bias)
        if rescale_at not in RESCALE_AT:
            raise ValueError(
                f"`rescale_at` must be one of {RESCALE_AT}. Received: rescale_at={rescale_at!r}"
            )
        self.rescale_at = rescale_at
        if placement not in PLACEMENTS:
            raise ValueError(
                f"`placement` must be one of {PLACEMENTS}. Received: placement={placement!r}"
            )
        self.placement = placement
        if placement_map is not None and not (
            isinstance(placement_map, str) and placement_map
        ):
            raise ValueError(
                "`placement_map` must be None or the name of a backbone layer. "
                f"Received: placement_map={placement_map!r}"
            )
        if placement_map is not None and placement != "spatial":
            raise ValueError(
                "`placement_map` names the map that placement='spatial' reads; it means "
                f"nothing with placement={placement!r}. Received: "
                f"placement_map={placement_map!r}"
            )
        self.placement_map = placement_map
        # Checked here too: with one glimpse no LocalizationHead is built to check it.
        check_spatial_rescale_at(spatial_rescale_at, placement)
        self.spatial_rescale_at = spatial_rescale_at
        if not isinstance(shift_consistency, (int, float)) or shift_consistency < 0:
            raise ValueError(
                "`shift_consistency` must be a number >= 0. Received: "
                f"shift_consistency={shift_consistency!r}"
            )
        if shift_consistency > 0 and (placement != "relative" or num_glimpses < 3):
            raise ValueError(
                "`shift_consistency` > 0 needs placement='relative' (with eq. 4's "
                "absolute placement the proposal does not depend on where the glimpse "
                "is) and num_glimpses >= 3 (a glimpse to refine). Received: "
                f"placement={placement!r}, num_glimpses={num_glimpses}"
            )
        if not 0.0 < shift_consistency_radius <= 1.0:
            raise ValueError(
                "`shift_consistency_radius` must be in (0, 1]. Received: "
                f"shift_consistency_radius={shift_consistency_radius!r}"
            )
        if (
            isinstance(lookahead, bool)
            or not isinstance(lookahead, (int, float))
            or not lookahead >= 0  # NaN too
            or lookahead == float("inf")
        ):
            raise ValueError(
                "`lookahead` must be a finite number >= 0. Received: "
                f"lookahead={lookahead!r}"
            )
        if lookahead > 0 and (num_glimpses < 3 or not first_localization):
            raise ValueError(
                "`lookahead` > 0 needs num_glimpses >= 3 (a learned glimpse before the "
                "last one) and first_localization=True (the loss trains that head "
                "alone). Received: "
                f"num_glimpses={num_glimpses}, first_localization={first_localization!r}"
            )
        if lookahead > 0 and (
            placement == "absolute"
            or spatial_rescale_at not in (None, rescale_at)
        ):
            raise ValueError(
                "`lookahead` > 0 needs placement='relative' or 'spatial' (with eq. 4's "
                "absolute placement a glimpse's centre depends on its size, and the "
                "loss would shrink glimpse 2 too) and spatial_rescale_at None or equal "
                "to rescale_at (one re-scaling to undo). Received: "
                f"placement={placement!r}, rescale_at={rescale_at!r}, "
                f"spatial_rescale_at={spatial_rescale_at!r}"
            )
        if not isinstance(first_localization, bool):
            raise ValueError(
                "`first_localization` must be True or False. Received: "
                f"first_localization={first_localization!r}"
            )
        self.first_localization = first_localization
        self.lookahead = float(lookahead)
        # Only models that use it carry it (older files load as before).
        self.lookahead_gate = (
            self.add_weight(
                shape=(), initializer="ones", trainable=False, name="lookahead_gate"
            )
            if self.lookahead > 0
            else None
        )
        self.shift_consistency = float(shift_consistency)
        self.shift_consistency_radius = float(shift_consistency_radius)
        # Only models that use it carry its random state (older files load as before).
        self._shift_seed = (
            keras.random.SeedGenerator(name="shift_consistency_seed")
            if self.shift_consistency > 0
            else None
        )
        if crop_fraction is not None and not 0.0 < crop_fraction <= 1.0:
            raise ValueError(
                "`crop_fraction` must be None or in (0, 1]. Received: "
                f"crop_fraction={crop_fraction!r}"
            )
        self.crop_fraction = None if crop_fraction is None else float(crop_fraction)
        self.glimpse_size = glimpse_size(image_size, downsample)

        # === Layers ===
        glimpse_shape = (self.glimpse_size, self.glimpse_size, channels)
        if isinstance(backbone, str):
            self.backbone_name = backbone
            self.backbone = backbones.get_backbone(
                backbone, glimpse_shape, small_input, initializer=initializer
            )
        elif isinstance(backbone, keras.Model):
            self.backbone_name = None
            self.backbone = backbone
        else:
            raise ValueError(
                "`backbone` must be a registered name or a keras.Model. "
                f"Received: backbone={backbone!r}"
            )
        # The spatial placement reads the backbone's last map before pooling (or the
        # map of `placement_map`); the sub-model shares the backbone's layers (its
        # weights are the backbone's, saved once under `backbone`: Keras walks
        # attributes in sorted order, so keep this name sorting after "backbone").
        self.backbone_map = (
            _feature_map_model(self.backbone, placement_map)
            if placement == "spatial" and num_glimpses > 1
            else None
        )
        map_channels = None
        if self.backbone_map is not None:
            map_shape = self.backbone_map.compute_output_shape((None, *glimpse_shape))
            if placement_map is not None:
                map_shape = map_shape[1]  # (pooled map, placement map)
            if None in map_shape[1:3] or map_shape[1] * map_shape[2] < 2:
                raise ValueError(
                    "placement='spatial' needs a feature map of at least 2 cells to "
                    f"choose from; a {self.glimpse_size} px glimpse gives the backbone's "
                    f"map{'' if placement_map is None else f' at {placement_map!r}'} the "
                    f"shape {map_shape[1:]}. Use larger glimpses (a smaller downsample), "
                    "another placement_map or another placement"
                )
            map_channels = map_shape[-1]
        feature_shape = self.backbone.compute_output_shape((None, *glimpse_shape))
        if len(feature_shape) != 2:
            raise ValueError(
                "The backbone must map a glimpse to a pooled vector (B, D). Received: "
                f"output shape {feature_shape} for a glimpse of shape {glimpse_shape}"
            )
        self.feature_dim = feature_shape[-1]
        self.sampler = GlimpseSampler(self.glimpse_size, name="glimpse_sampler")
        kernel = head_initializer(initializer)
        self.glimpse_classifier = keras.layers.Dense(
            num_classes, kernel_initializer=kernel, name="glimpse_classifier"
        )
        self.fusion = FeatureFusion(
            num_heads,
            dropout,
            use_bias=attention_bias,
            kernel_initializer=kernel,
            name="feature_fusion",
        )
        self.classifier = keras.layers.Dense(
            num_classes, kernel_initializer=kernel, name="global_classifier"
        )
        def localization_head(name):
            return LocalizationHead(
                grad_scale,
                scale_min,
                scale_max,
                kernel_initializer=kernel,
                rescale_at=rescale_at,
                placement=placement,
                map_channels=map_channels,
                spatial_rescale_at=spatial_rescale_at,
                name=name,
            )

        # With one glimpse there is nothing to locate (FF-Net): no unused weights.
        self.localization = (
            localization_head("localization") if num_glimpses > 1 else None
        )
        self.first_localization_head = (
            localization_head("first_localization")
            if num_glimpses > 1 and first_localization
            else None
        )
        # Top-1 accuracy after each glimpse, the early-exit curve during training.
        self.glimpse_accuracies = [
            keras.metrics.SparseCategoricalAccuracy(name=f"acc_{t}")
            for t in range(1, num_glimpses + 1)
        ]
        # Every weight's shape is known now; building here lets users count
        # parameters or load weights before the first call.
        self.build()

    def build(self, input_shape=None):
        token_dim = self.feature_dim + 3
        self.glimpse_classifier.build((None, self.feature_dim))
        self.fusion.build((None, None, token_dim))
        self.classifier.build((None, token_dim))
        if self.localization is not None:
            self.localization.build((None, token_dim))
        if self.first_localization_head is not None:
            self.first_localization_head.build((None, token_dim))
        self.built = True

    def call(self, images, training=None, num_glimpses=None):
        """Runs the glimpse loop.

        Args:
            images: float (B, image_size, image_size, channels) in [0, 1].
            training: bool, training mode (batch norm, dropout).
            num_glimpses: int <= T, glimpses to take (early exit); the backbone runs
                exactly this many times. None means all T.

        Returns:
            dict of `logits` (B, t, num_classes), the global classifier after each
            glimpse; `glimpse_logits` (B, t, num_classes), the glimpse classifier (only
            for the loss); `glimpse_params` (B, t, 3), the (s, x, y) of each glimpse.
        """
        steps = self.num_glimpses if num_glimpses is None else num_glimpses
        if not isinstance(steps, int) or not 1 <= steps <= self.num_glimpses:
            raise ValueError(
                f"`num_glimpses` must be an int in [1, {self.num_glimpses}]. "
                f"Received: num_glimpses={num_glimpses!r}"
            )
        images = self.normalize(images)
        params = self.first_glimpse_params(ops.shape(images)[0])
        tokens, logits, glimpse_logits, glimpse_params = None, [], [], []
        consistency = []
        for step in range(steps):
            out = self.glimpse_step(images, tokens, params, training=training)
            if step == 0:
                first_out = out
            tokens = out["tokens"]
            logits.append(out["logits"])
            glimpse_logits.append(out["glimpse_logits"])
            glimpse_params.append(params)
            if step + 1 < steps:
                taken, params = params, self.next_glimpse_params(out, params)
                if training and self.shift_consistency > 0 and step > 0:
                    consistency.append(
                        self.shift_consistency_error(images, tokens, taken, training)
                    )
        if consistency:
            self.add_loss(self.shift_consistency * ops.mean(ops.stack(consistency)))
        if training and self.lookahead > 0 and steps >= 3:
            error = self._lookahead_error(
                self._first_head_alone(first_out, glimpse_params[0]), glimpse_params[-1]
            )
            gate = ops.cast(self.lookahead_gate, "float32")
            self.add_loss(self.lookahead * gate * ops.mean(error))
        return {
            "logits": ops.stack(logits, axis=1),
            "glimpse_logits": ops.stack(glimpse_logits, axis=1),
            "glimpse_params": ops.stack(
                [ops.cast(p, "float32") for p in glimpse_params], axis=1
            ),
        }

    def first_glimpse_params(self, batch):
        """(batch, 3) params of glimpse 1: A_1 is the identity, the whole image,
        downsampled."""
        return ops.tile(ops.convert_to_tensor([[1.0, 0.0, 0.0]]), (batch, 1))

    def next_glimpse_params(self, out, params, clip=True):
        """(B, 3) (s, x, y) of the next glimpse from a `glimpse_step` output `out`
        and the `params` of the glimpse it took (the localization network, eq. 4;
        after the first glimpse, the first localization head where there is one)."""
        return self._head_after(out)(
            out["fused"], params, clip=clip, feature_map=out.get("feature_map")
        )

    def _head_after(self, out):
        """The localization head that places the glimpse after `out`'s."""
        if self.first_localization_head is None:
            return self.localization
        taken = out["tokens"].shape[1]
        if taken is None:
            raise ValueError(
                "With first_localization=True the glimpse step needs tokens of a static "
                "length (which head places the next glimpse depends on it); received "
                f"tokens of shape {out['tokens'].shape}"
            )
        return self.first_localization_head if taken == 1 else self.localization

    def _first_head_alone(self, first_out, first_params):
        """Glimpse 2's (s, x, y) again, with a gradient into the first localization
        head's own weights only, at the full rate (the lookahead loss)."""
        feature_map = first_out.get("feature_map")
        # Unclipped: at the image's edge the clip would pass the gradient to the size.
        proposal = self.first_localization_head(
            ops.stop_gradient(first_out["fused"]),
            first_params,
            clip=False,
            feature_map=None if feature_map is None else ops.stop_gradient(feature_map),
        )
        return self._past_rescaling(ops.cast(proposal, "float32"))

    def glimpse_step(self, images, tokens, params, training=None):
        """One step of the glimpse loop: the unit an anytime client runs per call.

        Args:
            images: normalized float (B, image_size, image_size, channels) (`normalize`).
            tokens: None at the first glimpse, else (B, t-1, feature_dim + 3): the
                tokens of the glimpses taken so far, oldest first (this method's
                earlier `tokens` output).
            params: (B, 3) (s, x, y) where this glimpse looks: `first_glimpse_params`
                at the first glimpse, else `self.next_glimpse_params(out, params)` of
                the earlier step's output and `params`.
            training: bool, training mode.

        Returns:
            dict of `logits` (B, num_classes), the global classifier after this
            glimpse; `glimpse_logits` (B, num_classes); `tokens` (B, t, feature_dim + 3);
            `fused` (B, feature_dim + 3), the global feature F_t; with
            placement="spatial" also `feature_map`, the backbone's map of this glimpse
            before pooling. `self.next_glimpse_params(out, params)` gives glimpse
            t + 1's (s, x, y) from them (t < T).
        """
        # At full size glimpse 1 is the identity: sampling would copy it.
        whole = tokens is None and self.glimpse_size == self.image_size
        features, feature_map = self.glimpse_features(images, params, whole, training)
        # (s, x, y) is a positional code, not a path for gradients (Section 3).
        position = ops.cast(ops.stop_gradient(params), features.dtype)
        token = ops.expand_dims(ops.concatenate([features, position], axis=-1), 1)
        tokens = token if tokens is None else ops.concatenate([tokens, token], axis=1)
        fused = self.fusion(tokens, training=training)
        out = {
            "logits": self.classifier(fused),
            "glimpse_logits": self.glimpse_classifier(features),
            "tokens": tokens,
            "fused": fused,
        }
        if feature_map is not None:
            out["feature_map"] = feature_map
        return out

    def glimpse_features(self, images, params, whole=False, training=None):
        """The backbone's features (B, feature_dim) of the glimpse at `params` (B, 3)
        in normalized `images`, and its map before pooling (placement="spatial"; else
        None). `whole=True`: the images themselves are the glimpse (glimpse 1 at full
        size), not sampled."""
        glimpse = images if whole else self.sampler(images, params)
        if self.backbone_map is None:
            return self.backbone(glimpse, training=training), None
        last_map = feature_map = self.backbone_map(glimpse, training=training)
        if self.placement_map is not None:
            last_map, feature_map = feature_map
        return ops.mean(last_map, axis=(1, 2)), feature_map  # the backbone's own pooling

    def shift_consistency_error(self, images, tokens, taken, training=None):
        """The shift-consistency loss at one glimpse (see `shift_consistency`).

        Args:
            images: normalized images (B, H, W, C).
            tokens: (B, t, D + 3), the tokens up to the glimpse just taken.
            taken: (B, 3), where that glimpse was taken.
            training: bool, training mode.

        Returns:
            Scalar: the mean over a quarter of the batch (at least one image) of the
            squared distance, in half sides of the glimpse, between the next centre
            proposed from the glimpse shifted by d and that proposed from the glimpse
            where it was, minus d. Both proposals are made the same way (the glimpse
            sampled again at its place, the earlier tokens held fixed, the positional
            code the unshifted place) and the gradient flows through both, so the
            loss trains only their difference, how the proposal follows what the
            glimpse shows (moving every proposal alike does not change it). Both
            are taken before the image's edge clips them: clipped, a glimpse pushed
            against the edge would meet the loss without reading anything. Only the
            images whose window stays inside the image under every shift the draw
            allows count: a window across the edge shows the sampler's zero padding,
            a cue of the shift that has nothing to do with the item, and keeping only
            the shifted windows that happen to stay inside would bias the shifts
            towards the middle. (Runs with a fixed unshifted target, or with either
            edge rule missing, sent every glimpse into a corner.)
        """
        batch = ops.shape(images)[0]
        count = max(batch // 4, 1) if isinstance(batch, int) else ops.maximum(batch // 4, 1)
        images = images[:count]
        taken = ops.stop_gradient(ops.cast(taken[:count], "float32"))
        half = taken[:, 0:1]
        offset = keras.random.uniform(
            ops.shape(taken[:, 1:3]),
            -self.shift_consistency_radius,
            self.shift_consistency_radius,
            seed=self._shift_seed,
        )
        shifted = ops.concatenate([half, taken[:, 1:3] + offset * half], axis=-1)
        # The earlier glimpses are context only: the loss trains the reading of this one.
        earlier = ops.stop_gradient(tokens[:count, :-1])

        def centre(where):
            features = self.backbone(self.sampler(images, where), training=training)
            # The positional code says the unshifted place: only the content shows d.
            code = ops.cast(taken, features.dtype)
            token = ops.expand_dims(ops.concatenate([features, code], axis=-1), 1)
            fused = self.fusion(ops.concatenate([earlier, token], axis=1), training=training)
            proposal = ops.cast(self.localization(fused, where, clip=False), "float32")
            return self._past_rescaling(proposal)[:, 1:3]

        error = ops.sum(ops.square((centre(shifted) - centre(taken)) / half), axis=-1)
        # Every shift the draw allows keeps the window inside the image.
        reach = ops.concatenate(
            [half * (1.0 + self.shift_consistency_radius), taken[:, 1:3]], axis=-1
        )
        inside = window_inside_image(reach)
        return ops.sum(error * inside) / ops.maximum(ops.sum(inside), 1.0)

    def normalize(self, images):
        """Maps [0, 1] pixels to the backbone's input scale: (x - mean) / std."""
        images = ops.cast(images, self.compute_dtype)
        mean = ops.convert_to_tensor(self.mean, self.compute_dtype)
        std = ops.convert_to_tensor(self.std, self.compute_dtype)
        return (images - mean) / std

    @property
    def glimpse_loss_is_used(self):
        """Whether the glimpse classifier's loss covers any glimpse (alpha > 0 and
        T >= glimpse_loss_from); where not (FF-Net with the official form, or alpha = 0)
        the glimpse classifier is not trained."""
        return self.alpha > 0 and self.num_glimpses >= self.glimpse_loss_from

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        """Joint loss of eqs. 6-8, plus the optional glimpse-size penalty.

        L = alpha * mean_{t >= glimpse_loss_from} CE(glimpse_logits_t)
            + (1 - alpha) * mean_t CE(logits_t),
        the means weighted by `global_loss_weights` where given.
        `y` holds integer class labels (B,).
        """
        if self._compile_loss is not None:
            raise ValueError(
                "MGNet trains with its own joint loss (eqs. 6-8); call "
                "`compile()` without `loss`. Received a compiled loss."
            )
        labels = ops.cast(ops.reshape(y, (-1, 1)), "int32")
        steps = y_pred["logits"].shape[1]

        def cross_entropy(logits):  # (B, t, classes) -> (B, t)
            return keras.losses.sparse_categorical_crossentropy(
                ops.broadcast_to(labels, (ops.shape(labels)[0], logits.shape[1])),
                ops.cast(logits, "float32"),
                from_logits=True,
            )

        global_ce = cross_entropy(y_pred["logits"])
        first = self.glimpse_loss_from - 1
        weights = (
            None if self.global_loss_weights is None else self.global_loss_weights[:steps]
        )

        def mean_over_glimpses(values, weights):  # (B, t) -> (B,)
            if weights is None:
                return ops.mean(values, axis=1)
            weights = ops.convert_to_tensor(weights, "float32")
            return ops.sum(values * weights, axis=1) / ops.sum(weights)

        global_term = mean_over_glimpses(global_ce, weights)
        if steps > first:
            glimpse_ce = cross_entropy(y_pred["glimpse_logits"][:, first:])
            glimpse_term = mean_over_glimpses(
                glimpse_ce, None if weights is None else weights[first:]
            )
            per_example = self.alpha * glimpse_term + (1.0 - self.alpha) * global_term
        else:
            # No glimpse the glimpse loss covers (FF-Net with the official form).
            per_example = global_term
        if self.size_penalty > 0 and steps > 1:
            per_example += self.size_penalty * self._size_penalty(
                y_pred["glimpse_params"][:, :, 0], global_ce[:, -1]
            )
        if sample_weight is not None:
            weights = ops.cast(ops.reshape(sample_weight, (-1,)), "float32")
            loss = ops.sum(per_example * weights) / ops.maximum(ops.sum(weights), 1e-12)
        else:
            loss = ops.mean(per_example)
        for extra in self.losses:
            loss += ops.cast(ops.sum(extra), "float32")
        # Keras sums gradients over replicas; scale so the sum is the global mean.
        return loss / _replicas_in_sync()

    def _past_rescaling(self, params):
        """`params` (glimpse parameters out of the localization network) unchanged,
        with eq. 5's factor undone for the gradient of a loss taken on them: its
        gradient reaches the localization layer unscaled. Identity unless the
        re-scaling follows the sigmoid (`rescale_at="output"`) with a factor > 0."""
        if self.rescale_at != "output" or self.grad_scale <= 0:
            return params
        free = params / self.grad_scale
        return free + ops.stop_gradient(params - free)

    @staticmethod
    def _lookahead_error(second, last):
        """(B,) the lookahead loss per example: the squared distance between the
        centres of `second` (B, 3) and `last` (B, 3) (held fixed), in half sides of
        the last glimpse."""
        last = ops.stop_gradient(ops.cast(last, "float32"))
        distance = (ops.cast(second, "float32")[:, 1:3] - last[:, 1:3]) / last[:, 0:1]
        return ops.sum(ops.square(distance), axis=-1)

    def _size_penalty(self, scales, last_cross_entropy):
        """Per-example size penalty of `size_penalty_mode`, from the glimpse sides
        `scales` (B, t) and the cross-entropy after the last glimpse (B,)."""
        if not self.size_penalty_rescaled:
            scales = self._past_rescaling(scales)
        if self.size_penalty_mode == "all":
            # Only learned glimpses; the first is the fixed identity.
            return ops.mean(ops.square(scales[:, 1:] - self.scale_min), axis=1)
        confident = ops.cast(
            ops.stop_gradient(last_cross_entropy) < self.size_penalty_threshold,
            "float32",
        )
        return confident * ops.square(scales[:, -1] - self.scale_min)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        logits = y_pred["logits"]
        for step, metric in enumerate(self.glimpse_accuracies[: logits.shape[1]]):
            metric.update_state(y, logits[:, step], sample_weight=sample_weight)
        if self._compile_metrics is not None:
            # Metrics given to compile() judge the final prediction.
            self._compile_metrics.update_state(y, logits[:, -1], sample_weight)
        return self.get_metrics_result()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": self.backbone_name
                or keras.saving.serialize_keras_object(self.backbone),
                "num_classes": self.num_classes,
                "image_size": self.image_size,
                "num_glimpses": self.num_glimpses,
                "downsample": self.downsample,
                "channels": self.channels,
                "alpha": self.alpha,
                "grad_scale": self.grad_scale,
                "scale_min": self.scale_min,
                "scale_max": self.scale_max,
                "size_penalty": self.size_penalty,
                "small_input": self.small_input,
                "dropout": self.dropout,
                "num_heads": self.num_heads,
                "mean": list(self.mean),
                "std": list(self.std),
                "size_penalty_mode": self.size_penalty_mode,
                "size_penalty_threshold": self.size_penalty_threshold,
                "size_penalty_rescaled": self.size_penalty_rescaled,
                "glimpse_loss_from": self.glimpse_loss_from,
                "global_loss_weights": (
                    None
                    if self.global_loss_weights is None
                    else list(self.global_loss_weights)
                ),
                "initializer": self.initializer,
                "attention_bias": self.attention_bias,
                "rescale_at": self.rescale_at,
                "placement": self.placement,
                "placement_map": self.placement_map,
                "spatial_rescale_at": self.spatial_rescale_at,
                "shift_consistency": self.shift_consistency,
                "shift_consistency_radius": self.shift_consistency_radius,
                "first_localization": self.first_localization,
                "lookahead": self.lookahead,
                "crop_fraction": self.crop_fraction,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["backbone"], dict):
            config["backbone"] = keras.saving.deserialize_keras_object(
                config["backbone"]
            )
        return cls(**config)

    @classmethod
    def from_settings(cls, settings, **overrides):
        """The one builder: MGNet from a larger mapping of settings.

        train.py's resolved flags and preset, a run's config.json, the benchmarks'
        flags: their keys are the constructor's argument names, so the model is one
        hop away. Keys that are not arguments (epochs, learning_rate, ...) are
        ignored; `overrides` win. The key `glimpses` (config.json files written
        before the flag took the argument's name) is read as `num_glimpses`.

        Args:
            settings: a mapping of settings.
            **overrides: constructor arguments that replace the settings' values
                (e.g. `num_classes` and `channels` from the data set).

        Returns:
            An `MGNet`.
        """
        settings = dict(settings)
        if "glimpses" in settings and "num_glimpses" not in settings:
            settings["num_glimpses"] = settings.pop("glimpses")
        names = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
        arguments = {k: v for k, v in settings.items() if k in names}
        arguments.update(overrides)
        return cls(**arguments)


def head_initializer(name):
    """Kernel initializer of the classifiers, the localization layer and the
    attention projections for `MGNet(initializer=name)`."""
    if name == "torch":
        # torch.nn.init.kaiming_normal_: N(0, 2 / fan_in), not truncated.
        return keras.initializers.VarianceScaling(
            2.0, mode="fan_in", distribution="untruncated_normal"
        )
    return "glorot_uniform"


def _feature_map_model(backbone, placement_map=None):
    """The backbone up to its final `GlobalAveragePooling2D`: (B, h, w, C) maps; with
    `placement_map` (a layer name) the pair (that map, the named layer's output)."""
    last = backbone.layers[-1]
    if not (
        isinstance(last, keras.layers.GlobalAveragePooling2D)
        and last.data_format == "channels_last"
        and not last.keepdims
    ):
        raise ValueError(
            "placement='spatial' reads the backbone's feature map before its pooling, "
            "so the backbone must end with a channels-last GlobalAveragePooling2D "
            f"layer (keepdims=False). Received: backbone {backbone.name!r} ending with "
            f"{type(last).__name__} {last.name!r}"
        )
    if placement_map is None:
        return keras.Model(backbone.inputs, last.input, name=f"{backbone.name}_map")
    names = [layer.name for layer in backbone.layers]
    if placement_map not in names:
        raise ValueError(
            f"placement_map={placement_map!r} is not a layer of the backbone "
            f"{backbone.name!r}; its layers: {names}"
        )
    layer = backbone.get_layer(placement_map)
    if len(layer.output.shape) != 4:
        raise ValueError(
            f"placement_map={placement_map!r}: the layer's output must be a "
            f"channels-last (B, h, w, C) map. Received: shape {layer.output.shape}"
        )
    return keras.Model(
        backbone.inputs, [last.input, layer.output], name=f"{backbone.name}_map"
    )


def window_inside_image(params, tolerance=1e-4):
    """(B,) 1.0 where the window (s, x, y) lies inside the image ([-1, 1] on both
    axes: |x| + s <= 1 and |y| + s <= 1), else 0.0."""
    params = ops.convert_to_tensor(params, "float32")
    reach = ops.abs(params[:, 1:3]) + params[:, 0:1]
    return ops.cast(ops.all(reach <= 1.0 + tolerance, axis=-1), "float32")


def _replicas_in_sync():
    """Replicas whose gradients Keras sums (tf.distribute); 1 on other backends."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf  # noqa: PLC0415

    return tf.distribute.get_strategy().num_replicas_in_sync


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
