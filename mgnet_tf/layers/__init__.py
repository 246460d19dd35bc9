"""MGNet's custom Keras layers."""

from mgnet_tf.layers.batch_norm import BatchNormalization
from mgnet_tf.layers.feature_fusion import FeatureFusion
from mgnet_tf.layers.glimpse_sampler import GlimpseSampler, sample_glimpses
from mgnet_tf.layers.gradient_rescale import GradientRescale
from mgnet_tf.layers.localization_head import LocalizationHead

__all__ = [
    "BatchNormalization",
    "FeatureFusion",
    "GlimpseSampler",
    "GradientRescale",
    "LocalizationHead",
    "sample_glimpses",
]
