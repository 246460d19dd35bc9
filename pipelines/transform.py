"""The one road from an image file (or an image) to a model's input, for evaluation
and serving.

The tf.data evaluation pipeline, `evaluate.py --images` and every SavedModel signature
(`mgnet_tf.export`) call the same `EvalTransform`, so the accuracy we report is the
accuracy of what we serve. A model records its transform (`MGNet.crop_fraction`; size
and channels are its own), so a served model needs no flag to preprocess right.

Only TensorFlow ops: the transform is traced into SavedModels.
"""

import dataclasses
import logging

import numpy as np
import tensorflow as tf

from pipelines import augment
from pipelines.decode import decode_image, to_channels


@dataclasses.dataclass(frozen=True)
class EvalTransform:
    """Decode, channels, resize (and centre crop) to a model's input.

    Attributes:
        size: int, the output side (the model's `image_size`).
        channels: 3 (RGB) or 1 (grayscale), the model's channels.
        crop_fraction: None: resize the whole image to `size` x `size` (antialiased;
            an image already at the size passes untouched), the translated sets and
            Tiny ImageNet. A float in (0, 1]: resize the shorter side to
            `round(size / crop_fraction)` and crop the centre (0.875: torchvision's
            `Resize(256)` + `CenterCrop(224)`), the ImageNet-like sets.
    """

    size: int
    channels: int
    crop_fraction: float = None

    def __post_init__(self):
        if not isinstance(self.size, int) or self.size <= 0:
            raise ValueError(f"Expected size > 0. Received: size={self.size!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"Expected channels 1 or 3. Received: {self.channels!r}")
        if self.crop_fraction is not None and not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(
                "Expected crop_fraction None or in (0, 1]. Received: "
                f"crop_fraction={self.crop_fraction!r}"
            )

    def uint8(self, image):
        """uint8 (H, W, C) or (B, H, W, C), any of 1-4 channels -> uint8 at the size."""
        image = to_channels(tf.convert_to_tensor(image, tf.uint8), self.channels)
        return self._resized(image)

    def _resized(self, image):
        """uint8 with the model's channels -> uint8 at the size."""
        if self.crop_fraction is None:
            return augment.resize(image, self.size)
        return augment.center_crop_resize(image, self.size, self.crop_fraction)

    def image(self, image):
        """uint8 image or batch -> float32 in [0, 1], the model's input."""
        return tf.cast(self.uint8(image), tf.float32) / 255.0

    def file_bytes(self, image_bytes):
        """An encoded JPEG/PNG/GIF/BMP/WebP file -> float32 (size, size, channels)."""
        # decode_image already converts the channels (with to_channels).
        image = self._resized(decode_image(image_bytes, self.channels))
        return tf.cast(image, tf.float32) / 255.0

    def read_files(self, paths):
        """`evaluate.py --images`: the transformed files as float32 (N, S, S, C) and
        the paths read; a file that cannot be read is named (logged) and skipped."""
        images, kept = [], []
        for path in paths:
            try:
                images.append(self.file_bytes(tf.io.read_file(path)).numpy())
            except tf.errors.OpError as error:
                logging.warning(
                    "Skipping %s: not a readable image (%s)", path, error.message
                )
                continue
            kept.append(path)
        shape = (0, self.size, self.size, self.channels)
        return (np.stack(images) if images else np.zeros(shape, np.float32)), kept

    @classmethod
    def of_model(cls, model):
        """The transform a model records: its size, channels and crop."""
        return cls(model.image_size, model.channels, getattr(model, "crop_fraction", None))
