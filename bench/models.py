"""The pair every benchmark compares: FF-Net and MGNet on one backbone, from shared flags."""

from absl import flags

flags.DEFINE_string("backbone", "resnet18", "Backbone of both models.")
flags.DEFINE_integer("image_size", 224, "FF-Net input side.")
flags.DEFINE_integer("num_classes", 100, "Classes (the paper's ImageNet100).")
flags.DEFINE_integer("num_glimpses", 4, "MGNet's T.")
flags.DEFINE_alias("glimpses", "num_glimpses")
flags.DEFINE_string("downsample", "7/3", "MGNet's M.")
flags.DEFINE_integer("channels", 3, "Image channels.")
flags.DEFINE_bool("small_input", False, "ResNet without stem max-pool.")
FLAGS = flags.FLAGS
MODEL_FLAGS = (
    "backbone",
    "image_size",
    "num_classes",
    "num_glimpses",
    "downsample",
    "channels",
    "small_input",
)


def build(which):
    """FF-Net (`which="ff"`: one full-size glimpse) or MGNet (`"mgnet"`) from the flags."""
    from mgnet_tf import MGNet
    from mgnet_tf.flops import parse_downsample

    if which == "ff":
        glimpses, downsample = 1, 1.0
    else:
        glimpses, downsample = FLAGS.num_glimpses, parse_downsample(FLAGS.downsample)
    return MGNet.from_settings(
        {name: FLAGS[name].value for name in MODEL_FLAGS},
        num_glimpses=glimpses,
        downsample=downsample,
    )
