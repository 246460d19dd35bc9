"""mgnet-tf: the Multi-Glimpse Network (MGNet, BMVC 2021) in Keras 3 / TensorFlow."""

# schedules is imported for its registration: trained .keras files name OneCycle.
from mgnet_tf import backbones, layers, schedules
from mgnet_tf.mgnet import MGNet, glimpse_size

__version__ = "0.1.0"

__all__ = ["MGNet", "backbones", "glimpse_size", "layers", "schedules"]
