"""mgnet-tf: the Multi-Glimpse Network (MGNet, BMVC 2021) in Keras 3 / TensorFlow."""

from mgnet_tf import backbones, layers
from mgnet_tf.mgnet import MGNet, glimpse_size

__version__ = "0.1.0"

__all__ = ["MGNet", "backbones", "glimpse_size", "layers"]
