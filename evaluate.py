"""Evaluates a trained MGNet: early exit, dynamic exit, attacks, corruptions, pictures.

    # Clean accuracy, MFLOPs and CPU latency after each glimpse, and the dynamic exit
    python evaluate.py --model_dir=runs/fashion
    # Figure 4: PGD with 1, 2, 4, 10, 20 steps (eps 4/255, step 1/255)
    python evaluate.py --model_dir=runs/fashion --attack=pgd --steps=1,2,4,10,20
    # Table 2: the 15 corruptions x 5 severities, generated on the fly or read from disk
    python evaluate.py --model_dir=runs/tiny --corruptions=all --baseline_model_dir=runs/tiny-ff
    python evaluate.py --model_dir=runs/tiny --corruptions_dir=/data/Tiny-ImageNet-C
    # Figures 6-7: glimpse pictures of 8 validation images; or classify your own files
    python evaluate.py --model_dir=runs/fashion --visualize=8
    python evaluate.py --model=runs/fashion/final.keras --images='photos/*.png'

The data set, its directory and the split default to the training run's config.json.
Everything measured goes to <output_dir>/evaluation.json (with the configuration it came
from; default <model_dir>/eval/<date-time>), pictures and plots to PNG files beside it,
and a table to stdout.
"""

import dataclasses
import logging as pylogging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mgnet_tf  # noqa: E402  (first: it starts TensorFlow without no-GPU noise)
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import pipelines  # noqa: E402
import reports  # noqa: E402
from mgnet_tf import MGNet, files, flops  # noqa: E402
from pipelines import corruptions as corruption_lib  # noqa: E402
from pipelines.image_folder import IMAGE_EXTENSIONS, list_images  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model_dir", None, "A train.py run directory (config.json + model)."
)
flags.DEFINE_string("model", None, "A .keras model file (instead of --model_dir).")
flags.DEFINE_enum(
    "checkpoint", "final", ["final", "best"], "Model of --model_dir to use."
)
flags.DEFINE_string(
    "output_dir", None, "Report directory (default <model_dir>/eval/<date-time>)."
)
flags.DEFINE_bool("overwrite", False, "Replace a report already in --output_dir.")
flags.DEFINE_string("dataset", None, "Data set (default: the run's).")
flags.DEFINE_string("data_dir", None, "Data set root (default: the run's).")
flags.DEFINE_string("classes_file", None, "Class list (default: the run's).")
flags.DEFINE_string(
    "split", None, "Split (default: test for translated sets, else validation)."
)
flags.DEFINE_float(
    "noise_std", None, "Translated sets: Gaussian noise (default: the run's)."
)
flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.")
flags.DEFINE_integer("max_examples", None, "Evaluate on the first N examples only.")
flags.DEFINE_integer(
    "seed", 0, "Seed of the translated sets and generated corruptions."
)
flags.DEFINE_list(
    "exit_thresholds",
    ["0", "0.5", "0.7", "0.8", "0.9", "0.95", "0.99", "1"],
    "Confidence thresholds of the dynamic exit.",
)
flags.DEFINE_integer("latency_repeats", 20, "Timed runs per glimpse count (0: skip).")
flags.DEFINE_enum("attack", "none", ["none", "fgsm", "pgd"], "Adversarial attack.")
flags.DEFINE_float("eps", 4 / 255, "L-inf radius of the attack, in [0, 1] pixel units.")
flags.DEFINE_float("step_size", 1 / 255, "PGD step size.")
flags.DEFINE_list(
    "steps", ["1", "2", "4", "10", "20"], "PGD step counts (Figure 4's x axis)."
)
flags.DEFINE_enum(
    "attack_space",
    "pixel",
    ["pixel", "normalized"],
    "pixel: perturb [0, 1] pixels and clip; normalized: the paper code's way.",
)
flags.DEFINE_integer("attack_examples", 1000, "Examples attacked (the first N).")
flags.DEFINE_list("corruptions", [], "Corruptions generated on the fly, or 'all'.")
flags.DEFINE_string("corruptions_dir", None, "A <corruption>/<severity>/<class>/ tree.")
flags.DEFINE_list("severities", ["1", "2", "3", "4", "5"], "Corruption severities.")
flags.DEFINE_integer(
    "corruption_examples", 1000, "Examples per corruption and severity."
)
flags.DEFINE_string(
    "baseline_model_dir", None, "Baseline run for relative corruption error."
)
flags.DEFINE_integer("visualize", 0, "Write glimpse pictures of the first N examples.")
flags.DEFINE_string("images", None, "Classify image files (a path or glob).")
flags.DEFINE_integer("top_k", 5, "Classes listed per glimpse for --images.")


class _QuietRetracing(pylogging.Filter):
    """Drops TensorFlow's retracing notice: evaluate.py compiles one function per
    glimpse count on purpose (latency) and one per batch shape."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def load_run(model_dir, model_path, checkpoint):
    """Loads the model and the training run's config (empty without a run dir)."""
    if model_dir is None and model_path is None:
        raise app.UsageError(
            "Give --model_dir (a train.py run) or --model (a .keras file)"
        )
    config = {}
    if model_dir is not None:
        config = files.read_json(os.path.join(model_dir, "config.json")) or {}
        model_path = model_path or os.path.join(model_dir, f"{checkpoint}.keras")
    if not tf.io.gfile.exists(model_path):
        raise app.UsageError(
            f"No model at {model_path}; expected a .keras file from train.py"
        )
    try:
        model = files.load_model(model_path)
    except files.ModelFileError as error:
        raise app.UsageError(str(error)) from None
    if not isinstance(model, MGNet):
        raise app.UsageError(
            f"{model_path} holds a {type(model).__name__}, not an MGNet"
        )
    return model, config, model_path


def evaluation_data(config, model):
    """The data flags resolved against the run's config and validated against the
    model: (`reports.EvalData`, class names), or (None, None) without a data set."""
    dataset = FLAGS.dataset or config.get("dataset")
    if dataset is None:
        return None, None
    if dataset not in pipelines.DATASETS:
        raise app.UsageError(
            f"--dataset={dataset} is not known; expected one of {pipelines.DATASETS}"
        )
    data_dir = FLAGS.data_dir or config.get("data_dir")
    classes_file = FLAGS.classes_file or config.get("classes_file")
    info = pipelines.dataset_info(dataset, data_dir, classes_file)
    if (info.num_classes, info.channels) != (model.num_classes, model.channels):
        raise app.UsageError(
            f"The model has {model.num_classes} classes and {model.channels} channels, but "
            f"{dataset} has {info.num_classes} classes and {info.channels} channels"
        )
    split = FLAGS.split or ("test" if "test" in info.splits else "validation")
    if split not in info.splits:
        raise app.UsageError(f"--split={split} is not one of {info.splits}")
    noise_std = FLAGS.noise_std
    if noise_std is None:
        noise_std = config.get("noise_std", 0.0)
    data = reports.EvalData(
        dataset=dataset,
        split=split,
        data_dir=data_dir,
        classes_file=classes_file,
        noise_std=noise_std,
        batch_size=FLAGS.batch_size,
        seed=FLAGS.seed,
        max_examples=FLAGS.max_examples,
    )
    return data, list(info.class_names)


def corruption_names():
    """The corruptions to evaluate; a bad name or directory is a usage error."""
    try:
        if FLAGS.corruptions_dir:
            available = corruption_lib.available_corruptions(FLAGS.corruptions_dir)
            names = FLAGS.corruptions or sorted(available)
            return corruption_lib.validate_corruptions(names)
        return corruption_lib.validate_corruptions(FLAGS.corruptions)
    except (ValueError, FileNotFoundError) as error:
        flag = "--corruptions_dir" if FLAGS.corruptions_dir else "--corruptions"
        raise app.UsageError(f"{flag}: {error}") from None


def image_paths():
    """The files --images names: a glob's matches, or a directory's image files."""
    if tf.io.gfile.isdir(FLAGS.images):  # a directory: the image files in it
        paths = [os.path.join(FLAGS.images, n) for n in list_images(FLAGS.images)]
        if not paths:
            raise app.UsageError(
                f"--images={FLAGS.images} is a directory with no image file in it "
                f"(looked for {', '.join(IMAGE_EXTENSIONS)}); give a glob such as "
                f"'{os.path.join(FLAGS.images, '*', '*.jpg')}' for subdirectories"
            )
        return paths
    paths = sorted(tf.io.gfile.glob(FLAGS.images))
    if not paths:
        raise app.UsageError(f"--images={FLAGS.images} matches no file")
    return paths


def main(argv):
    del argv
    pylogging.getLogger("tensorflow").addFilter(_QuietRetracing())
    model, config, model_path = load_run(FLAGS.model_dir, FLAGS.model, FLAGS.checkpoint)
    data, class_names = evaluation_data(config, model)
    severities = [int(s) for s in FLAGS.severities]
    names = corruption_names() if (FLAGS.corruptions or FLAGS.corruptions_dir) else []
    if any(s not in corruption_lib.SEVERITIES for s in severities):
        raise app.UsageError(
            f"--severities={FLAGS.severities}; expected values in {corruption_lib.SEVERITIES}"
        )
    images_only = FLAGS.images is not None and not (
        FLAGS.attack != "none" or names or FLAGS.visualize
    )
    if not images_only and data is None:
        raise app.UsageError(
            "Give --dataset (the model was not loaded from a train.py run)"
        )
    # Each evaluation gets its own directory; an earlier report is never replaced
    # unless asked.
    output_dir = FLAGS.output_dir or os.path.join(
        FLAGS.model_dir or ".", "eval", time.strftime("%Y%m%d-%H%M%S")
    )
    if (
        tf.io.gfile.exists(os.path.join(output_dir, "evaluation.json"))
        and not FLAGS.overwrite
    ):
        raise app.UsageError(
            f"{output_dir} already holds a report; pass --overwrite or another --output_dir"
        )
    paths = image_paths() if FLAGS.images is not None else None  # checked before work
    baseline = None
    if names and FLAGS.baseline_model_dir:  # loaded (and checked) before work
        baseline, _, _ = load_run(FLAGS.baseline_model_dir, None, FLAGS.checkpoint)
    tf.io.gfile.makedirs(output_dir)

    report = {
        "model": model_path,
        "model_config": {
            k: v for k, v in model.get_config().items() if not isinstance(v, dict)
        },
        "flags": {
            f.name: f.value for f in FLAGS.get_flags_for_module(sys.modules[__name__])
        },
        "data": {} if data is None else dataclasses.asdict(data),
    }
    if not images_only:
        logging.info("Clean evaluation on %s/%s", data.dataset, data.split)
        report["clean"] = reports.clean_section(
            model,
            data,
            mflops=[m / 1e6 for m in flops.mgnet_macs(model)],
            thresholds=[float(t) for t in FLAGS.exit_thresholds],
            latency_repeats=FLAGS.latency_repeats,
            class_names=class_names,
        )
    if FLAGS.attack != "none":
        report["attack"] = reports.attack_section(
            model,
            data,
            FLAGS.attack,
            eps=FLAGS.eps,
            step_size=FLAGS.step_size,
            steps=[int(s) for s in FLAGS.steps],
            space=FLAGS.attack_space,
            examples=FLAGS.attack_examples,
        )
    if names:
        report["corruptions"] = reports.corruption_section(
            model,
            data,
            names,
            severities,
            examples=FLAGS.corruption_examples,
            corruptions_dir=FLAGS.corruptions_dir,
            class_names=class_names,
            baseline=baseline,
            baseline_name=FLAGS.baseline_model_dir,
        )
    if FLAGS.visualize:
        # "pictures" lists the PNGs; "picture_predictions" the label and the
        # prediction after each glimpse of each, to pick right and wrong cases.
        report["pictures"], report["picture_predictions"] = reports.pictures_section(
            model, data, FLAGS.visualize, os.path.join(output_dir, "pictures")
        )
    if FLAGS.images is not None:
        try:
            report["images"] = reports.images_section(
                model,
                paths,
                os.path.join(output_dir, "images"),
                class_names=class_names,
                top_k=FLAGS.top_k,
            )
        except ValueError as error:
            raise app.UsageError(f"--images: {error}") from None
    report["plots"] = reports.write_plots(report, output_dir)
    files.write_json(report, os.path.join(output_dir, "evaluation.json"))
    print(reports.format_tables(report))
    print(f"\nReport: {os.path.join(output_dir, 'evaluation.json')}")


def run(argv):
    """`main`, with the errors a user can cause ending in one message and a non-zero
    exit status instead of a traceback or the whole flag list."""
    try:
        main(argv)
    except KeyboardInterrupt:
        print("evaluate.py: Interrupted; no report was written.", file=sys.stderr)
        sys.exit(130)
    except app.UsageError as error:
        print(
            f"evaluate.py: {error}\nSee python evaluate.py --help for the flags.",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    app.run(run)
