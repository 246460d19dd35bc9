"""Trains MGNet (or its FF-Net baseline) with the paper's settings for each data set.

    # Translated Fashion-MNIST (offline: apt-get install dataset-fashion-mnist)
    python train.py --dataset=translated_fashion_mnist --model_dir=runs/fashion
    # Tiny ImageNet with the paper's ResNet-18 (dagger) setting
    python train.py --backbone=resnet18 --dataset=tiny_imagenet \
        --data_dir=/data/tiny-imagenet-200 --model_dir=runs/tiny
    # The FF-Net baseline: one full-resolution glimpse
    python train.py --dataset=tiny_imagenet --data_dir=... --num_glimpses=1 --downsample=1
    # A two-step smoke run
    python train.py --dataset=translated_fashion_mnist --model_dir=/tmp/smoke \
        --epochs=1 --steps_per_epoch=2 --validation_steps=1

Every setting left unset comes from the data set's preset (presets.py); the resolved
configuration is written to <model_dir>/config.json. Rerunning the same command after
an interruption resumes from the last finished epoch.
"""

import os
import sys
import time

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mgnet_tf  # noqa: E402  (first: it starts TensorFlow without no-GPU noise)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import pipelines  # noqa: E402
import presets  # noqa: E402
from mgnet_tf import MGNet, backbones, files  # noqa: E402
from training import checkpoints, strategies  # noqa: E402
from training.callbacks import (  # noqa: E402
    GlimpseImages,
    LearningRateLogger,
    LocalizationLogger,
    LookaheadStart,
    epoch_summary,
)
from mgnet_tf.mgnet import INITIALIZERS, SIZE_PENALTY_MODES  # noqa: E402
from mgnet_tf.optimizers import WEIGHT_DECAY_MODES, sgd  # noqa: E402
from mgnet_tf.export import export_saved_model  # noqa: E402
from mgnet_tf.flops import parse_downsample  # noqa: E402
from mgnet_tf.schedules import SCHEDULES, OneCycleMomentum, learning_rate_schedule  # noqa: E402

FLAGS = flags.FLAGS
_PRESET = "default: the data set's preset"

flags.DEFINE_enum("dataset", None, sorted(pipelines.DATASETS), "Data set to train on.")
flags.DEFINE_string("data_dir", None, "Data set root (local or gs://).")
flags.DEFINE_string("model_dir", None, "Where config, checkpoints and logs go.")
flags.DEFINE_string("classes_file", None, "imagenet100: class list, one wnid a line.")
flags.DEFINE_string("backbone", None, f"Backbone name or keras_app:<Name> ({_PRESET}).")
flags.DEFINE_integer("image_size", None, f"Input side in pixels ({_PRESET}).")
flags.DEFINE_integer(
    "num_glimpses", None, f"Glimpses T; 1 with --downsample=1 is FF-Net ({_PRESET})."
)
flags.DEFINE_alias("glimpses", "num_glimpses")  # the flag's name before 2026-12
flags.DEFINE_string("downsample", None, f"Downsampling M, e.g. 2 or 7/3 ({_PRESET}).")
flags.DEFINE_bool("small_input", None, f"ResNet without stem max-pool ({_PRESET}).")
flags.DEFINE_float(
    "alpha", None, f"Glimpse-loss weight of eq. 6, in [0, 1] ({_PRESET})."
)
flags.DEFINE_float("grad_scale", None, f"Gradient re-scaling s of eq. 5 ({_PRESET}).")
flags.DEFINE_float(
    "scale_min", None, f"Smallest glimpse, a fraction of the image ({_PRESET})."
)
flags.DEFINE_float(
    "scale_max", None, f"Largest glimpse, a fraction of the image ({_PRESET})."
)
flags.DEFINE_float(
    "size_penalty", None, f"Weight of the glimpse-size penalty ({_PRESET})."
)
flags.DEFINE_enum(
    "size_penalty_mode",
    None,
    list(SIZE_PENALTY_MODES),
    f"all: every learned glimpse; confident_last: the official code's ({_PRESET}).",
)
flags.DEFINE_float(
    "size_penalty_threshold",
    None,
    f"confident_last: cross-entropy bound of the penalized examples ({_PRESET}).",
)
flags.DEFINE_integer(
    "glimpse_loss_from",
    None,
    "First glimpse of the glimpse-classifier loss: 1 (eq. 8), 2 (official) or a later "
    f"one (ours) ({_PRESET}).",
)
flags.DEFINE_list(
    "global_loss_weights",
    None,
    "One weight per glimpse for the global classifier's loss, e.g. 0,1,1,1,1 "
    "(the official code's --n_iter_coef; empty: the mean of eq. 7) "
    f"({_PRESET}).",
)
flags.DEFINE_enum(
    "initializer", None, list(INITIALIZERS), f"keras or torch (official) ({_PRESET})."
)
flags.DEFINE_bool(
    "attention_bias", None, f"Biases on the attention projections ({_PRESET})."
)
flags.DEFINE_bool(
    "size_penalty_rescaled",
    None,
    "Whether the size penalty's gradient passes eq. 5's re-scaling like the other "
    f"localization gradients (the paper, the official code) ({_PRESET}).",
)
flags.DEFINE_enum(
    "rescale_at",
    None,
    ["output", "input"],
    "Where eq. 5's gradient re-scaling sits: after the localization sigmoid (output: "
    f"the paper, the official code) or before its Dense layer (input) ({_PRESET}).",
)
flags.DEFINE_enum(
    "placement",
    None,
    ["absolute", "relative", "spatial"],
    "Where the localization network puts a glimpse's centre: anywhere in the image "
    "(absolute: eq. 4, the official code) or as a move from the glimpse just taken "
    "(relative; spatial: that move plus a soft-argmax over the glimpse's feature map, "
    f"ours) ({_PRESET}).",
)
flags.DEFINE_string(
    "placement_map",
    None,
    "With --placement=spatial: the backbone layer whose map the soft-argmax reads "
    "(e.g. conv3 for the vanilla CNN: 6 x 6 cells on a 28 px glimpse); empty: the last "
    f"map before pooling ({_PRESET}).",
)
flags.DEFINE_string(
    "spatial_rescale_at",
    None,
    "With --placement=spatial: where eq. 5's re-scaling sits for the soft-argmax "
    "alone, output or input (its cell scores learn at the full rate, the gradient "
    f"into the backbone stays re-scaled); empty: as --rescale_at ({_PRESET}).",
)
flags.DEFINE_float(
    "shift_consistency",
    None,
    "Weight of the shift-consistency loss (ours; needs --placement=relative): a "
    "shifted copy of each learned glimpse must lead to the same next centre, so the "
    f"localization learns to correct a glimpse from its content; 0 is off ({_PRESET}).",
)
flags.DEFINE_float(
    "shift_consistency_radius",
    None,
    "Largest shift per axis of --shift_consistency, as a fraction of the glimpse's "
    f"half side ({_PRESET}).",
)
flags.DEFINE_bool(
    "first_localization",
    None,
    "Glimpse 2 is placed by a localization head of its own, which reads the first "
    f"(whole, coarse) view; the shared head places glimpses 3..T ({_PRESET}).",
)
flags.DEFINE_float(
    "lookahead",
    None,
    "Weight of the lookahead loss (ours; needs --num_glimpses >= 3 and "
    "--first_localization): glimpse 2 is pulled towards the last glimpse's centre "
    "(held fixed), training the first localization head alone, so glimpse 2 goes "
    f"where the model ends up looking; 0 is off ({_PRESET}).",
)
flags.DEFINE_integer(
    "lookahead_start",
    None,
    "Epochs trained before --lookahead counts (from the first step it drags every "
    f"glimpse into a corner, before the last glimpse has found the item) ({_PRESET}).",
)
flags.DEFINE_list(
    "mean", None, f"Per-channel normalization mean, e.g. 0.1307 ({_PRESET})."
)
flags.DEFINE_list("std", None, f"Per-channel normalization std ({_PRESET}).")
flags.DEFINE_enum(
    "weight_decay_mode",
    None,
    list(WEIGHT_DECAY_MODES),
    f"coupled (PyTorch's SGD, the official code) or decoupled (Keras') ({_PRESET}).",
)
flags.DEFINE_float(
    "noise_std", None, f"Translated MNIST: Gaussian noise std ({_PRESET})."
)
flags.DEFINE_integer("epochs", None, f"Training epochs ({_PRESET}).")
flags.DEFINE_integer("batch_size", None, f"Global batch size ({_PRESET}).")
flags.DEFINE_float("learning_rate", None, f"Peak learning rate ({_PRESET}).")
flags.DEFINE_float(
    "global_clipnorm",
    None,
    "Largest joint l2 norm of each step's gradients (Keras' global_clipnorm); 0: no "
    f"clipping ({_PRESET}).",
)
flags.DEFINE_float("weight_decay", None, f"SGD weight decay ({_PRESET}).")
flags.DEFINE_float("momentum", None, f"SGD momentum ({_PRESET}).")
flags.DEFINE_enum("schedule", None, SCHEDULES, f"Learning-rate schedule ({_PRESET}).")
flags.DEFINE_float(
    "warmup_fraction",
    None,
    "--schedule=one_cycle: the share of the steps over which the rate rises (PyTorch's "
    f"OneCycleLR default 0.3; the official code 0.2) ({_PRESET}).",
)
flags.DEFINE_bool(
    "cycle_momentum",
    None,
    "--schedule=one_cycle: cycle SGD's momentum 0.95 -> 0.85 (at the rate's peak) -> "
    "0.95 as PyTorch's OneCycleLR does by default (the official code), instead of "
    f"holding --momentum; needs --weight_decay_mode=coupled ({_PRESET}).",
)
flags.DEFINE_enum(
    "augment", None, pipelines.augment.POLICIES, f"Augmentation policy ({_PRESET})."
)
flags.DEFINE_integer("seed", 0, "Random seed for weights, shuffling and augmentation.")
flags.DEFINE_string(
    "init_from",
    None,
    "A .keras model (e.g. a finished run's final.keras) whose weights a new run "
    "starts from instead of random ones; the optimizer and the schedule start afresh.",
)
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass).")
flags.DEFINE_integer("validation_steps", None, "Validation steps (default: one pass).")
flags.DEFINE_enum(
    "mixed_precision",
    "float32",
    ["float32", "mixed_float16", "mixed_bfloat16"],
    "Keras dtype policy.",
)
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_bool(
    "deterministic",
    False,
    "Deterministic ops: an interrupted and resumed run ends with the same weights "
    "as an uninterrupted one (slower on GPU).",
)
flags.DEFINE_enum(
    "strategy",
    "auto",
    strategies.STRATEGIES,
    "auto: TPU if reachable, else all GPUs, else the CPU.",
)
flags.DEFINE_string("tpu", None, "TPU address or name; 'local' on a TPU VM.")
flags.DEFINE_integer(
    "num_cpu_replicas", 2, "--strategy=mirrored without GPUs: logical CPU devices."
)
flags.DEFINE_bool(
    "overwrite",
    False,
    "Start afresh in --model_dir, moving the run there aside to "
    "<model_dir>.old-<date>-<time> (nothing is deleted).",
)
flags.mark_flags_as_required(["dataset", "model_dir"])

# Flags whose unset value comes from the preset.
_PRESET_FLAGS = (
    "backbone",
    "image_size",
    "num_glimpses",
    "downsample",
    "small_input",
    "alpha",
    "grad_scale",
    "scale_min",
    "scale_max",
    "size_penalty",
    "size_penalty_mode",
    "size_penalty_threshold",
    "glimpse_loss_from",
    "global_loss_weights",
    "initializer",
    "attention_bias",
    "rescale_at",
    "placement",
    "placement_map",
    "spatial_rescale_at",
    "shift_consistency",
    "shift_consistency_radius",
    "first_localization",
    "lookahead",
    "lookahead_start",
    "size_penalty_rescaled",
    "mean",
    "std",
    "weight_decay_mode",
    "noise_std",
    "epochs",
    "batch_size",
    "learning_rate",
    "global_clipnorm",
    "weight_decay",
    "momentum",
    "schedule",
    "warmup_fraction",
    "cycle_momentum",
    "augment",
    "classes_file",
)


def _lookahead_applies(config):
    """Whether run `config` has a glimpse 2 for the lookahead loss to teach (MGNet's
    conditions for `lookahead` > 0)."""
    return (
        config["num_glimpses"] >= 3
        and config["first_localization"]
        and config["placement"] != "absolute"
        and config["spatial_rescale_at"] in (None, config["rescale_at"])
    )


def resolve_config():
    """Preset for the data set, overridden by every flag given; validated."""
    config = presets.preset(FLAGS.dataset, FLAGS.backbone)
    for name in _PRESET_FLAGS:
        if FLAGS[name].value is not None:
            config[name] = FLAGS[name].value
    if isinstance(config["downsample"], str):
        try:
            config["downsample"] = parse_downsample(config["downsample"])
        except ValueError:
            raise app.UsageError(
                f"--downsample={config['downsample']} is invalid; expected a number "
                ">= 1 or a fraction such as 7/3"
            ) from None
    for name in ("mean", "std"):
        if config[name] is not None:
            config[name] = _floats(name, config[name], "one per channel")
    # An empty --placement_map= is the last map before pooling.
    config["placement_map"] = config.get("placement_map") or None
    # An empty --spatial_rescale_at= follows --rescale_at.
    config["spatial_rescale_at"] = config.get("spatial_rescale_at") or None
    if config["global_loss_weights"] is not None:
        # An empty --global_loss_weights= is eq. 7's mean.
        weights = _floats("global_loss_weights", config["global_loss_weights"], "one per glimpse")
        config["global_loss_weights"] = weights or None
    if FLAGS.lookahead is None and not _lookahead_applies(config):
        # The preset's lookahead (translated MNIST's) teaches glimpse 2 where to go; a
        # run without such a glimpse 2 (FF-Net's one glimpse, two glimpses, eq. 4's
        # placement, one localization head) trains without it. A --lookahead given is
        # checked by _validate.
        config["lookahead"] = 0.0
    config.update(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        seed=FLAGS.seed,
        steps_per_epoch=FLAGS.steps_per_epoch,
        validation_steps=FLAGS.validation_steps,
        mixed_precision=FLAGS.mixed_precision,
        jit_compile=FLAGS.jit_compile,
        deterministic=FLAGS.deterministic,
        init_from=FLAGS.init_from,
    )
    _validate(config)
    return config


def _floats(name, values, each):
    try:
        return [float(v) for v in values]
    except ValueError:
        raise app.UsageError(
            f"--{name}={','.join(values)} is invalid; expected numbers, {each}"
        ) from None


def _validate(config):
    backbone = config["backbone"]
    if not (
        backbone in backbones.available_backbones() or backbone.startswith("keras_app:")
    ):
        raise app.UsageError(
            f"--backbone={backbone} is not known; expected one of "
            f"{backbones.available_backbones()} or keras_app:<Name>"
        )
    checks = [
        ("downsample", config["downsample"] >= 1, "a number >= 1"),
        ("num_glimpses", config["num_glimpses"] >= 1, "an int >= 1"),
        ("alpha", 0 <= config["alpha"] <= 1, "in [0, 1]"),
        ("epochs", config["epochs"] >= 1, "an int >= 1"),
        ("batch_size", config["batch_size"] >= 1, "an int >= 1"),
        ("image_size", config["image_size"] >= 1, "an int >= 1"),
        ("noise_std", config["noise_std"] >= 0, "a number >= 0"),
        ("global_clipnorm", config["global_clipnorm"] >= 0, "a number >= 0 (0: no clipping)"),
        (
            "glimpse_loss_from",
            1 <= config["glimpse_loss_from"] <= max(config["num_glimpses"], 2),
            "from 1 (eq. 8) or 2 (official) to the number of glimpses "
            f"(--num_glimpses={config['num_glimpses']})",
        ),
    ]
    weights = config["global_loss_weights"]
    if weights is not None:
        checks.append(
            (
                "global_loss_weights",
                len(weights) == config["num_glimpses"]
                and min(weights) >= 0
                and sum(weights[config["glimpse_loss_from"] - 1 :]) > 0,
                f"{config['num_glimpses']} weights (one per glimpse, --num_glimpses), "
                ">= 0, and some weight on the glimpses of the glimpse loss (from "
                f"--glimpse_loss_from={config['glimpse_loss_from']})",
            )
        )
    checks += [
        (
            "placement_map",
            config["placement_map"] is None or config["placement"] == "spatial",
            "empty unless --placement=spatial (received "
            f"--placement={config['placement']})",
        ),
        (
            "spatial_rescale_at",
            config["spatial_rescale_at"] in (None, "output", "input"),
            "empty, output or input",
        ),
        (
            "spatial_rescale_at",
            config["spatial_rescale_at"] is None or config["placement"] == "spatial",
            "empty unless --placement=spatial (received "
            f"--placement={config['placement']})",
        ),
        ("warmup_fraction", 0 < config["warmup_fraction"] < 1, "in (0, 1)"),
        (
            "cycle_momentum",
            not config["cycle_momentum"]
            or (config["schedule"] == "one_cycle" and config["weight_decay_mode"] == "coupled"),
            "off unless --schedule=one_cycle and --weight_decay_mode=coupled (PyTorch's "
            f"update; received --schedule={config['schedule']}, "
            f"--weight_decay_mode={config['weight_decay_mode']})",
        ),
        ("shift_consistency", config["shift_consistency"] >= 0, "a number >= 0"),
        ("lookahead", config["lookahead"] >= 0, "a number >= 0"),
        ("lookahead_start", config["lookahead_start"] >= 0, "an int >= 0"),
        (
            "lookahead",
            config["lookahead"] == 0 or _lookahead_applies(config),
            "0 unless --num_glimpses >= 3, --first_localization, --placement="
            "relative or spatial and --spatial_rescale_at empty or as --rescale_at "
            f"(received --num_glimpses={config['num_glimpses']}, "
            f"--first_localization={config['first_localization']}, "
            f"--placement={config['placement']}, "
            f"--spatial_rescale_at={config['spatial_rescale_at'] or ''}, "
            f"--rescale_at={config['rescale_at']})",
        ),
        (
            "shift_consistency",
            config["shift_consistency"] == 0
            or (config["placement"] == "relative" and config["num_glimpses"] >= 3),
            "0 unless --placement=relative and --num_glimpses >= 3 (received "
            f"--placement={config['placement']}, --num_glimpses={config['num_glimpses']})",
        ),
        (
            "shift_consistency_radius",
            0 < config["shift_consistency_radius"] <= 1,
            "in (0, 1]",
        ),
    ]
    for name, ok, expected in checks:
        if not ok:
            raise app.UsageError(
                f"--{name}={config[name]} is invalid; expected {expected}"
            )
    if config["placement_map"] is not None and config["num_glimpses"] > 1:
        # A layer name is checked against the backbone itself, before any data loads.
        try:
            MGNet.from_settings(
                config, num_classes=2, channels=pipelines.spec(config["dataset"]).channels
            )
        except ValueError as error:
            raise app.UsageError(
                f"--placement_map={config['placement_map']} is invalid: {error}; "
                "expected a layer of the backbone with a (B, h, w, C) map"
            ) from None


# What a run writes in --model_dir (train.py's and Keras' files).
_RUN_FILES = (
    "config.json",
    "final.keras",
    "best.keras",
    "best.keras.json",
    "metrics.csv",
    "logs",
    "backup",
    "saved_model",
)
# The files written through checkpoints' write-then-rename, whose temporaries a kill
# can leave behind (in model_dir, and the last two in backup/).
_RENAMED_FILES = (
    "config.json",
    "final.keras",
    "best.keras",
    "best.keras.json",
    "metrics.csv",
    checkpoints.BACKUP_WEIGHTS,
    checkpoints.TRAINING_METADATA,
)


def upgrade_config(saved):
    """A config.json written by an older train.py, in today's names (None stays None)."""
    if saved is None:
        return None
    saved = dict(saved)
    if "glimpses" in saved and "num_glimpses" not in saved:
        saved["num_glimpses"] = saved.pop("glimpses")
    return saved


def prepare_model_dir(model_dir, config, overwrite):
    """Creates model_dir; refuses to mix runs.

    Returns:
        "new", "resume" (an interrupted run's backup is there), or "export" (a
        finished run whose SavedModel export was interrupted).
    """
    backup_dir = os.path.join(model_dir, "backup")
    final_path = os.path.join(model_dir, "final.keras")
    if overwrite and _holds_a_run(model_dir):
        _move_aside(model_dir)
    saved = upgrade_config(checkpoints.read_json(os.path.join(model_dir, "config.json")))
    resuming = tf.io.gfile.exists(backup_dir)
    state = "resume" if resuming else "new"
    if tf.io.gfile.exists(final_path) and not resuming:
        if tf.io.gfile.exists(os.path.join(model_dir, "saved_model")):
            raise app.UsageError(
                f"{model_dir} already holds a finished run ({final_path}); pass "
                "--overwrite to move it aside and start again, or choose another "
                "--model_dir"
            )
        state = "export"  # killed while exporting: finish the export
    if state != "new" and saved is not None:
        # The hardware and where the data lie may change between attempts (another
        # machine resumes a stored run); the recipe may not (the learning-rate
        # schedule spans --epochs, so that may not change either). --init_from only
        # seeds a new run: a resumed one reads its weights from the backup.
        free = ("strategy", "num_replicas", "backend", "data_dir", "init_from")
        if saved.get("num_glimpses") == config.get("num_glimpses"):
            free += presets.unused_settings(config)
        # A setting the saved run does not record (a flag added since) cannot differ.
        changed = sorted(
            k
            for k in config
            if k in saved and saved[k] != config[k] and k not in free
        )
        if changed:
            differences = ", ".join(
                f"--{k}={_flag_text(config[k])} (the run has {_flag_text(saved[k])})"
                for k in changed
            )
            raise app.UsageError(
                f"{model_dir} holds an interrupted run with other settings: "
                f"{differences}; rerun it with the same flags to resume, pass "
                "--overwrite to move it aside and start again, or choose another "
                "--model_dir"
            )
    tf.io.gfile.makedirs(model_dir)
    return state  # config.json is written once the model is built (main)


def _flag_text(value):
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _holds_a_run(model_dir):
    return tf.io.gfile.isdir(model_dir) and any(
        tf.io.gfile.exists(os.path.join(model_dir, name)) for name in _RUN_FILES
    )


def _move_aside(model_dir):
    """--overwrite: renames model_dir to <model_dir>.old-<time>; nothing is deleted."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = f"{model_dir.rstrip('/')}.old-{stamp}"
    suffix = 1
    while tf.io.gfile.exists(target):
        suffix += 1
        target = f"{model_dir.rstrip('/')}.old-{stamp}-{suffix}"
    tf.io.gfile.rename(model_dir.rstrip("/"), target)
    logging.warning(
        "--overwrite: moved the run that was in %s to %s (nothing was deleted)",
        model_dir,
        target,
    )
    return target


def _clean_up_after_a_kill(model_dir, initial_epoch):
    """Removes what a killed attempt left: our temporaries, and the CSV rows and
    TensorBoard steps of epochs that were not backed up (they run again)."""
    removed = checkpoints.remove_temporaries(model_dir, _RENAMED_FILES)
    removed += checkpoints.remove_temporaries(
        os.path.join(model_dir, "backup"), _RENAMED_FILES
    )
    for path in removed:
        logging.info("Removed %s, left by an interrupted write", path)
    dropped = checkpoints.keep_csv_epochs(
        os.path.join(model_dir, "metrics.csv"), initial_epoch
    )
    if dropped:
        logging.info(
            "Dropped %d row(s) of metrics.csv from epochs that run again", dropped
        )
    checkpoints.restart_tensorboard(os.path.join(model_dir, "logs"), initial_epoch)


def build_model(config, num_classes, channels):
    """MGNet from the resolved configuration (its keys are MGNet's arguments)."""
    return MGNet.from_settings(
        config,
        num_classes=num_classes,
        channels=channels,
        crop_fraction=pipelines.crop_fraction(config["dataset"]),
    )


def main(argv):
    del argv
    config = resolve_config()
    # Before any other TensorFlow work: logical devices and TPUs need a fresh runtime.
    if keras.backend.backend() == "jax":
        # keras.distribution splits each batch over the devices; the input pipeline
        # stays one tf.data stream (tf.distribute's default strategy).
        replicas = strategies.jax_distribution(FLAGS.strategy)
        if config["batch_size"] % replicas:
            raise app.UsageError(
                f"--batch_size={config['batch_size']} does not split evenly over the "
                f"{replicas} devices of --strategy={FLAGS.strategy} on JAX"
            )
        strategy = tf.distribute.get_strategy()
    else:
        strategy = strategies.build_strategy(
            FLAGS.strategy, FLAGS.tpu, FLAGS.num_cpu_replicas
        )
        replicas = strategy.num_replicas_in_sync
    config.update(
        strategy=FLAGS.strategy,
        num_replicas=replicas,
        backend=keras.backend.backend(),  # the model file is backend-free
    )
    chief = strategies.is_chief(strategy)
    model_dir = strategies.output_dir(FLAGS.model_dir, strategy)
    state = prepare_model_dir(model_dir, config, FLAGS.overwrite)
    if state == "new" and config["init_from"] and not tf.io.gfile.exists(config["init_from"]):
        raise app.UsageError(
            f"--init_from={config['init_from']} does not exist; expected a .keras "
            "file, e.g. a finished run's final.keras"
        )
    if state == "export":
        _finish_export(model_dir)
        return
    keras.utils.set_random_seed(config["seed"])
    if config["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_dtype_policy(config["mixed_precision"])

    steps_per_epoch = _steps_per_epoch(config)
    initial_epoch = checkpoints.completed_epochs(os.path.join(model_dir, "backup"))
    _clean_up_after_a_kill(model_dir, initial_epoch)
    skipped = pipelines.SkippedFiles()
    train_data, validation_data = _input_data(
        config, strategy, initial_epoch * steps_per_epoch, skipped
    )
    model = _compiled_model(config, strategy, steps_per_epoch)
    if state == "new" and config["init_from"]:
        # A resumed run gets its weights from the backup instead.
        initialize_from(model, config["init_from"])
    # One write of the run's config.json, with the model's own arguments under one
    # key: MGNet.from_config(config["model"]).
    checkpoints.write_json(
        {**config, "model": model.get_config()}, os.path.join(model_dir, "config.json")
    )
    callbacks = _callbacks(model, config, model_dir, steps_per_epoch, skipped)
    if state == "resume":
        logging.info(
            "Resuming the interrupted run in %s after epoch %d", model_dir, initial_epoch
        )
    model.fit(
        train_data,
        validation_data=validation_data,
        epochs=config["epochs"],
        steps_per_epoch=steps_per_epoch,
        validation_steps=config["validation_steps"],
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles
        verbose=0,  # epoch_summary prints the progress
    )
    if not chief:
        tf.io.gfile.rmtree(model_dir)  # the chief holds the run's files
        return
    logging.info("Saved %s", os.path.join(model_dir, "final.keras"))
    _export(model, model_dir)


def initialize_from(model, path):
    """--init_from: copies the weights of the model saved in `path` into `model`.

    Raises:
        app.UsageError: `path` cannot be loaded, or its model has other weights (the
            settings that differ are named).
    """
    try:
        source = files.load_model(path)
    except files.ModelFileError as error:
        raise app.UsageError(f"--init_from={path}: {error}") from None
    have = [tuple(w.shape) for w in source.weights]
    want = [tuple(w.shape) for w in model.weights]
    theirs, ours = source.get_config(), model.get_config()
    differ = sorted(
        k for k in ours if k not in ("name", "dtype") and theirs.get(k) != ours[k]
    )
    details = ", ".join(f"{k}={theirs.get(k)!r} (this run: {ours[k]!r})" for k in differ)
    if have != want:
        raise app.UsageError(
            f"--init_from={path} holds a model with other weights than this run's "
            f"({len(have)} arrays against {len(want)}"
            + (f"; it was built with {details}" if details else "")
            + "); expected a model of the same backbone and classes, with a "
            "localization network if this run has one"
        )
    if differ:
        # Same weights, other settings (glimpse size, normalization, recipe): allowed
        # (fine-tuning changes some on purpose), but said.
        logging.warning("--init_from=%s was built with %s", path, details)
    model.set_weights(source.get_weights())
    logging.info("Started from the weights of %s", path)


def _steps_per_epoch(config):
    train_size = pipelines.num_examples(
        config["dataset"], "train", config["data_dir"], config["classes_file"]
    )
    steps = config["steps_per_epoch"] or train_size // config["batch_size"]
    if steps < 1:
        raise app.UsageError(
            f"--batch_size={config['batch_size']} is larger than the training set "
            f"({train_size} images)"
        )
    return steps


def _data_args(config, skipped=None):
    """`pipelines.build_dataset`'s arguments that come from the run's config."""
    return dict(
        data_dir=config["data_dir"],
        batch_size=config["batch_size"],
        image_size=config["image_size"],
        seed=config["seed"],
        noise_std=config["noise_std"],
        classes_file=config["classes_file"],
        skipped=skipped,
    )


def _input_data(config, strategy, start_step, skipped):
    """The distributed training and validation data."""
    data_args = _data_args(config, skipped)

    def distributed(split, repeat, **kwargs):
        # Each input pipeline reads its own shard and yields per-replica batches.
        def dataset(context):
            data = pipelines.build_dataset(
                config["dataset"], split, input_context=context, **data_args, **kwargs
            )
            return data.repeat() if repeat else data

        return strategy.distribute_datasets_from_function(dataset)

    # One endless stream of training batches whose order and augmentation in each
    # pass are a function of (seed, pass): fit keeps its iterator across epochs,
    # and a resumed run starts the stream where the interrupted one stopped.
    train_data = distributed(
        "train",
        False,
        training=True,
        augment=config["augment"],
        start_step=start_step,
    )
    _check_validation_batches(config, strategy)
    # Several replicas: whole validation batches only, so that no replica gets an
    # empty one (fewer than one global batch of images is left out). With a step
    # count, fit keeps one validation iterator too: repeat the data so that it never
    # runs out.
    validation_data = distributed(
        "validation",
        config["validation_steps"] is not None,
        drop_remainder=config["num_replicas"] > 1,
    )
    return train_data, validation_data


def _compiled_model(config, strategy, steps_per_epoch):
    info = pipelines.dataset_info(
        config["dataset"], config["data_dir"], config["classes_file"]
    )
    with strategy.scope():
        model = build_model(config, info.num_classes, info.channels)
        total_steps = config["epochs"] * steps_per_epoch
        schedule = learning_rate_schedule(
            config["schedule"],
            config["learning_rate"],
            total_steps,
            warmup_fraction=config["warmup_fraction"],
        )
        momentum_schedule = (
            OneCycleMomentum(total_steps, warmup_fraction=config["warmup_fraction"])
            if config["cycle_momentum"]
            else None
        )
        model.compile(
            optimizer=sgd(
                schedule,
                config["momentum"],
                config["weight_decay"],
                config["weight_decay_mode"],
                config["global_clipnorm"],
                momentum_schedule=momentum_schedule,
            ),
            jit_compile=config["jit_compile"],
        )
    return model


def _callbacks(model, config, model_dir, steps_per_epoch, skipped):
    """What happens at the end of each epoch, in order: every record is written
    first and the backup last. A kill before the backup is complete reruns the epoch
    (its CSV rows and TensorBoard steps are dropped at the start, see
    _clean_up_after_a_kill), a kill after it loses nothing."""
    logs_dir = os.path.join(model_dir, "logs")
    final_path = os.path.join(model_dir, "final.keras")
    data_args = _data_args(config)
    samples = pipelines.build_dataset(
        config["dataset"], "validation", **{**data_args, "batch_size": 8}
    )
    sample_images, sample_labels = next(iter(samples))
    # Where the glimpses look, every epoch, on a fixed part of the validation split.
    watched = pipelines.build_dataset(
        config["dataset"],
        "validation",
        **{**data_args, "batch_size": 250},
    ).take(4)
    watched_images = np.concatenate([images.numpy() for images, _ in watched])
    watched_boxes = pipelines.object_boxes(
        config["dataset"],
        "validation",
        len(watched_images),
        config["seed"],
        image_size=config["image_size"],
    )
    # The best model by the validation accuracy after the last glimpse.
    final_accuracy = "val_" + model.glimpse_accuracies[-1].name
    return [
        LookaheadStart(config["lookahead_start"]),
        LearningRateLogger(),
        # Before the loggers below, which record what it adds to the epoch logs.
        LocalizationLogger(logs_dir, watched_images, watched_boxes),
        # Saved before the backup is deleted at the end: a kill in between resumes.
        keras.callbacks.LambdaCallback(
            on_train_end=lambda logs: checkpoints.save_model(model, final_path)
        ),
        checkpoints.BestModelCheckpoint(
            os.path.join(model_dir, "best.keras"), final_accuracy
        ),
        _CSVLogger(os.path.join(model_dir, "metrics.csv"), append=True),
        _TensorBoard(logs_dir),
        GlimpseImages(logs_dir, sample_images[:8], sample_labels[:8]),
        checkpoints.BackupAndRestore(os.path.join(model_dir, "backup")),
        keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: _report_skipped(skipped)
        ),
        # Last: it prints what the callbacks above added (at most 100 columns).
        epoch_summary(
            config["epochs"], steps_per_epoch, progress=sys.stdout.isatty()
        ),
    ]


def _export(model, model_dir):
    saved_model = os.path.join(model_dir, "saved_model")
    if not tf.io.gfile.exists(saved_model):  # a resumed run may have exported already
        export_saved_model(model, saved_model)
        logging.info("Exported %s for serving (docs/serving.md)", saved_model)


def _finish_export(model_dir):
    """A finished run killed while exporting: export final.keras now."""
    final_path = os.path.join(model_dir, "final.keras")
    logging.info(
        "%s holds a finished run without its SavedModel (the export was "
        "interrupted); exporting %s",
        model_dir,
        final_path,
    )
    _export(checkpoints.load_model(final_path), model_dir)


class _CSVLogger(keras.callbacks.CSVLogger):
    """Keras' CSV logger, with epochs counted from 1 as on the console; a full disk
    names the file."""

    def on_epoch_end(self, epoch, logs=None):
        try:
            super().on_epoch_end(epoch + 1, logs)
        except OSError as error:
            if checkpoints.is_disk_full(error):
                raise checkpoints.DiskFullError(
                    self.filename, f"the row of epoch {epoch + 1}"
                ) from error
            raise
        checkpoints.kill_point("csv_row")


class _TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, flushed every epoch: the summary writers buffer
    events for up to two minutes, which a kill would lose."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for writer in self._writers.values():
            writer.flush()
        checkpoints.kill_point("tensorboard")


def _check_validation_batches(config, strategy):
    """With several replicas validation reads whole batches only; every worker must
    get at least one, or the replicas' collectives fall out of step."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return
    workers = strategies.num_workers(strategy)
    size = pipelines.num_examples(
        config["dataset"], "validation", config["data_dir"], config["classes_file"]
    )
    per_worker_batch = config["batch_size"] // workers
    if size // workers < per_worker_batch:
        raise app.UsageError(
            f"The validation split has {size} images, fewer than {workers} worker(s) x "
            f"a batch of {per_worker_batch} (--batch_size={config['batch_size']} over "
            f"{replicas} replicas); every worker needs one whole validation batch. "
            "Use a smaller --batch_size."
        )


def _report_skipped(skipped):
    count = skipped.count()
    if count:
        logging.warning(
            "Skipped %d unreadable image file(s) this epoch (named above).", count
        )
        skipped.reset()


def _saved_so_far():
    """What the run in --model_dir has saved, for the messages below."""
    model_dir = FLAGS.model_dir
    epochs = checkpoints.completed_epochs(os.path.join(model_dir, "backup"))
    if epochs:
        return (
            f"Epochs 1-{epochs} are saved in {model_dir} (resume state in "
            f"{os.path.join(model_dir, 'backup')})."
        )
    if tf.io.gfile.exists(os.path.join(model_dir, "final.keras")):
        return f"The finished model is saved in {os.path.join(model_dir, 'final.keras')}."
    return "No epoch had finished; nothing of this run is saved yet."


def _fail(message, code):
    """Ends the process with `message` on stderr and exit status `code`."""
    print(f"train.py: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _hard_exit(code):
    # After a failed write TensorFlow and h5py can crash while the interpreter shuts
    # down (a segmentation fault after the message); everything is written by now.
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(argv):
    """`main`, with the errors a user can cause ending in one message and a non-zero
    exit status instead of a traceback."""
    try:
        main(argv)
    except KeyboardInterrupt:
        _fail(
            f"Interrupted. {_saved_so_far()} Rerun the same command to resume.", 130
        )
    except app.UsageError as error:
        _fail(f"{error}\nSee python train.py --help for the flags.", 1)
    except Exception as error:  # noqa: BLE001
        if not checkpoints.is_disk_full(error):
            raise
        where = ""
        if not isinstance(error, checkpoints.DiskFullError):  # a write not of ours
            path = getattr(error, "filename", None)
            where = f" ({path})" if path else ""
        try:
            print(
                f"train.py: {error}{where}. {_saved_so_far()} Free some space and "
                "rerun the same command to resume.",
                file=sys.stderr,
                flush=True,
            )
        finally:
            _hard_exit(1)


if __name__ == "__main__":
    app.run(run)
