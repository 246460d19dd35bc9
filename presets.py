"""The paper's settings per data set, which train.py's flags override.

Values the paper states are marked (paper), those taken from its official code
(siahuat0727/MGNet) (official code), and those we chose by a measurement (measured,
with where: docs/results.md's ablation); the others are the usual choices for the data
set and backbone, chosen here because neither the paper nor its code gives them.
docs/training.md's recipe table lists where the paper and the official code differ.
The data sets themselves (reader, size, channels, evaluation transform) are registered
in pipelines.SPECS; this module gives each its training recipe.
"""

import pipelines

# Settings shared by every data set unless its preset says otherwise.
COMMON = {
    "backbone": "resnet18",
    "alpha": 0.6,  # (paper) weight of the glimpse classifier loss, eq. 6
    # (paper) s of eq. 5 for ResNet-18; 0.01 for larger backbones. The official code's
    # default is 1; (measured) on translated Fashion-MNIST s = 1 diverges in the first
    # epoch and s = 0.2 pushes the glimpses off the items (docs/results.md).
    "grad_scale": 0.02,
    "scale_min": 0.2,  # (paper) a_min
    "scale_max": 0.5,  # (paper) a_max
    "size_penalty": 0.0,  # (paper) only used on translated MNIST
    "size_penalty_mode": "all",  # (paper) ||a^s - a_min|| of the learned glimpses
    "size_penalty_threshold": 0.4,  # (official code) for size_penalty_mode=confident_last
    # (official code) the glimpse loss on glimpses 2..T; eq. 8 reads 1..T. (measured)
    # On translated Fashion-MNIST, 4 epochs: test top-1 after 3 glimpses 67.3 against
    # 66.0%, glimpse centre 21-22 px from the item's against 30, IoU 0.19 against 0.11.
    "glimpse_loss_from": 2,
    # (paper) eq. 7's mean over glimpses 1..T; (official code) --n_iter_coef, all 1 by
    # default: the same. (measured) 0,1,1,1,1 on translated Fashion-MNIST, 20 epochs:
    # no better after 3 glimpses (90.0 against 89.5% on 2,000 test images, 88.7 against
    # 89.0 on validation), glimpse 1 at 58 instead of 72% (docs/results.md).
    "global_loss_weights": None,
    "initializer": "keras",  # Keras' defaults; official: "torch"
    "attention_bias": False,  # (paper) eq. 3 has none; official: True
    "rescale_at": "output",  # (paper, official code) eq. 4: s follows the sigmoid
    "placement": "absolute",  # (paper, official code) eq. 4: the centre in the image
    "placement_map": None,  # placement="spatial": the last map before pooling
    "spatial_rescale_at": None,  # placement="spatial": the soft-argmax as rescale_at
    # (ours, off by default: not in the paper or the official code) the weight of the
    # shift-consistency loss that teaches a relative localization to correct a glimpse
    # from what it sees (MGNet's docstring; docs/training.md).
    "shift_consistency": 0.0,
    "shift_consistency_radius": 0.5,
    # (ours, off by default: not in the paper or the official code) a localization
    # head of its own for glimpse 2, and the weight of the loss that pulls glimpse 2
    # towards where the last glimpse went (MGNet's docstring; docs/training.md).
    "first_localization": False,
    "lookahead": 0.0,
    "lookahead_start": 0,  # epochs before it counts
    "size_penalty_rescaled": True,  # (paper, official code) one autograd graph
    "mean": None,  # the model's default: ImageNet's for RGB, 0.5 otherwise
    "std": None,
    "weight_decay_mode": "decoupled",  # Keras' SGD; official: "coupled" (torch SGD)
    "small_input": False,
    "schedule": "one_cycle",  # (paper) one-cycle for every model
    # PyTorch OneCycleLR's default warm-up share; (official code) pct_start=0.2.
    "warmup_fraction": 0.3,
    # The momentum held at "momentum"; (official code) OneCycleLR's default
    # cycle_momentum=True: 0.95 -> 0.85 at the rate's peak -> 0.95.
    "cycle_momentum": False,
    "momentum": 0.9,  # SGD momentum, the usual ImageNet value
    "global_clipnorm": 0.0,  # (paper, official code) no gradient clipping
    "noise_std": 0.0,
    "augment": "none",
    "num_glimpses": 4,
    "downsample": 7 / 3,
    "classes_file": None,
}

# Settings of the localization network and its losses: a run of one glimpse (FF-Net)
# has none, so they change nothing in it (train.py resumes an FF-Net whose preset
# changed only these).
LOCALIZATION_SETTINGS = (
    "grad_scale",
    "scale_min",
    "scale_max",
    "size_penalty",
    "size_penalty_mode",
    "size_penalty_threshold",
    "size_penalty_rescaled",
    "rescale_at",
    "placement",
    "placement_map",
    "spatial_rescale_at",
    "shift_consistency",
    "shift_consistency_radius",
    "first_localization",
    "lookahead",
    "lookahead_start",
)


def unused_settings(config):
    """The settings of `config` that cannot change its run: the localization's, for
    a run of one glimpse (train.py's resume check, the study's recipe check)."""
    return LOCALIZATION_SETTINGS if config.get("num_glimpses") == 1 else ()


PRESETS = {
    "imagenet100": {
        "image_size": 224,  # (paper)
        "num_glimpses": 4,  # (paper) T = 4
        "downsample": 7 / 3,  # (paper) M = 7/3: four 96 px glimpses
        "augment": "autoaugment",  # (paper)
        "learning_rate": 0.1,  # (paper) one-cycle peak
        "epochs": 400,  # (paper)
        "batch_size": 256,  # the usual ImageNet batch for a 0.1 peak rate
        "weight_decay": 1e-4,  # the usual ResNet-on-ImageNet value
    },
    "tiny_imagenet": {
        "image_size": 64,  # (paper)
        "num_glimpses": 3,  # (paper) T = 3
        "downsample": 2,  # (paper) M = 2: three 32 px glimpses
        "small_input": True,  # (paper) the dagger networks, no stem max-pool
        "augment": "autoaugment",
        "learning_rate": 0.1,
        "epochs": 200,  # the paper says only "larger" than its baseline's
        "batch_size": 128,
        "weight_decay": 5e-4,  # the usual value for 64 px ResNets
    },
    "translated_mnist": {
        "backbone": "vanilla_cnn",  # (paper) Appendix B
        "image_size": 112,  # (paper) 28 px digits on a 112 px canvas
        "num_glimpses": 5,  # (paper) Table 4 reports 1 to 5 glimpses
        "downsample": 4,  # (paper) M = 4: 28 px glimpses
        # The paper adds the term without giving its weight. (measured) 1.0 on every
        # glimpse holds s near 0.35 but slows learning: 47% after 4 epochs instead of
        # 68%. (official code) the form: the last glimpse of the examples already
        # classified (cross-entropy < 0.4). (measured) Its gradient must bypass eq. 5's
        # s = 0.02, or it cannot move s off a_max (0.49 and IoU 0.21 at 4 epochs). Past
        # the re-scaling, 20 epochs at weight 0.1 took glimpses 3-5 to s = 0.31-0.32 and
        # a median IoU of 0.43-0.47 with the item; at 0.3 to s = 0.25-0.26 (the item's
        # own 28 px) and 0.49-0.54, for the same top-1 (89.5 against 89.8% after 3
        # glimpses; docs/results.md).
        "size_penalty": 0.3,
        "size_penalty_mode": "confident_last",
        "size_penalty_rescaled": False,
        "learning_rate": 0.05,  # a plain CNN without batch norm diverges at 0.1
        # (measured) At 20 epochs the glimpses were still closing in on the item (val
        # centre error 8.0 -> 7.1 px and IoU 0.48 -> 0.53 over the last 3 epochs). At 30
        # both models still gained from more epochs: 60 took FF-Net from 91.89 to 92.59%
        # and MGNet after 3 glimpses from 90.48 to 91.54% on the whole test split (seed
        # 0); by epochs 55-60 validation top-1 had flattened (MGNet 91.7 -> 91.8 after 3
        # glimpses; docs/results.md "MGNet, 60 epochs").
        "epochs": 60,
        "batch_size": 128,
        "weight_decay": 0.0,
        # (official code) MNIST's mean and std, and Kaiming-normal heads with PyTorch's
        # convolution init. (measured) Together, 4 epochs on translated Fashion-MNIST:
        # test top-1 after 3 glimpses 78.3% against 67.3% with 0.5/0.5 and Keras' init,
        # second glimpse 13.5 px from the item's centre against 20.6 (docs/results.md).
        "mean": (0.1307,),
        "std": (0.3081,),
        "initializer": "torch",
        # (measured, ours) The next centre moved from the glimpse just taken by a
        # soft-argmax over its feature map: 20 epochs, glimpse 3 4.1 px from the item's
        # centre with median IoU 0.67 (eq. 4: 8.0 px, 0.49), validation top-1 after 3
        # glimpses 90.3 against 89.0%, the glimpse classifier on centred glimpses
        # 90.2 against 88.8% (eq. 4 after 30 epochs; docs/results.md).
        "placement": "spatial",
        # (measured, ours) Glimpse 2 placed by a localization head of its own, which
        # learns to go where the last glimpse went (--lookahead, from epoch 6 on).
        # Without it glimpse 2, placed from the coarse first view, landed 8.8 px off the
        # item (median IoU 0.36) and MGNet after 3 glimpses stayed 1.05 points under
        # FF-Net; with it, 60 epochs, seed 0: glimpse 2 4.3 px off (IoU 0.66), top-1
        # after 3 glimpses 92.11 against 91.54%, 0.48 points under FF-Net; seed 1: 4.4
        # px (9.2 without), 91.81 against 91.31%, 0.79 under FF-Net seed 1. Through
        # the shared head the same loss sent every glimpse to a corner within an epoch
        # (docs/results.md, "A first localization head").
        "first_localization": True,
        "lookahead": 0.1,
        "lookahead_start": 5,
    },
}
PRESETS["imagenet"] = dict(PRESETS["imagenet100"])
PRESETS["folder"] = dict(PRESETS["imagenet100"], epochs=100)
PRESETS["translated_fashion_mnist"] = dict(PRESETS["translated_mnist"])
# One recipe for each data set of the registry (pipelines.SPECS), and no other.
if set(PRESETS) != set(pipelines.DATASETS):
    raise RuntimeError(
        "presets.PRESETS and pipelines.SPECS name different data sets: "
        f"{sorted(set(PRESETS) ^ set(pipelines.DATASETS))}; each data set needs "
        "its spec in pipelines/__init__.py and its recipe here"
    )


def preset(dataset, backbone=None):
    """The resolved preset for `dataset` (and `backbone`, which changes s)."""
    if dataset not in PRESETS:
        raise ValueError(
            f"Unknown dataset. Received: dataset={dataset!r}; expected one of "
            f"{sorted(pipelines.DATASETS)}"
        )
    config = {**COMMON, **PRESETS[dataset]}
    backbone = backbone or config["backbone"]
    if backbone != "resnet18" and config["backbone"] != "vanilla_cnn":
        config["grad_scale"] = 0.01  # (paper) s for ResNet-50, ResNeXt-50, WRN-50
    config["backbone"] = backbone
    return config
