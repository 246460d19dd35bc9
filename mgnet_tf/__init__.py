"""mgnet-tf: the Multi-Glimpse Network (MGNet, BMVC 2021) in Keras 3 / TensorFlow."""

# schedules is imported for its registration: trained .keras files name OneCycle.
from mgnet_tf import _native_logs

_native_logs.start_quietly()  # before Keras and TensorFlow are imported below

# optimizers: registers CoupledSGD, so that a model saved with it loads anywhere.
from mgnet_tf import backbones, layers, optimizers, schedules  # noqa: E402
from mgnet_tf.mgnet import MGNet, glimpse_size  # noqa: E402

__version__ = "0.1.0"

__all__ = ["MGNet", "backbones", "glimpse_size", "layers", "optimizers", "schedules"]
