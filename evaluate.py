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

import logging as pylogging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mgnet_tf  # noqa: E402  (first: it starts TensorFlow without no-GPU noise)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import pipelines  # noqa: E402
from mgnet_tf import MGNet, attacks, evaluation, files, flops, localization  # noqa: E402
from mgnet_tf.layers import sample_glimpses  # noqa: E402
from mgnet_tf.visualize import glimpse_picture  # noqa: E402
from pipelines import corruptions as corruption_lib  # noqa: E402
from pipelines.image_folder import IMAGE_EXTENSIONS, list_images  # noqa: E402
from pipelines.transform import EvalTransform  # noqa: E402

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


def data_settings(config, model):
    """Data flags resolved against the run's config; validated against the model."""
    dataset = FLAGS.dataset or config.get("dataset")
    settings = {
        "dataset": dataset,
        "data_dir": FLAGS.data_dir or config.get("data_dir"),
        "classes_file": FLAGS.classes_file or config.get("classes_file"),
        "noise_std": (
            FLAGS.noise_std
            if FLAGS.noise_std is not None
            else config.get("noise_std", 0.0)
        ),
    }
    if dataset is None:
        return settings
    if dataset not in pipelines.DATASETS:
        raise app.UsageError(
            f"--dataset={dataset} is not known; expected one of {pipelines.DATASETS}"
        )
    info = pipelines.dataset_info(
        dataset, settings["data_dir"], settings["classes_file"]
    )
    if (info.num_classes, info.channels) != (model.num_classes, model.channels):
        raise app.UsageError(
            f"The model has {model.num_classes} classes and {model.channels} channels, but "
            f"{dataset} has {info.num_classes} classes and {info.channels} channels"
        )
    settings["split"] = FLAGS.split or (
        "test" if "test" in info.splits else "validation"
    )
    if settings["split"] not in info.splits:
        raise app.UsageError(f"--split={settings['split']} is not one of {info.splits}")
    settings["class_names"] = list(info.class_names)
    return settings


def _limit(dataset, count):
    return (
        dataset
        if count is None
        else dataset.unbatch().take(count).batch(FLAGS.batch_size)
    )


def _capped(count):
    """`count`, or --max_examples where that is smaller."""
    return count if FLAGS.max_examples is None else min(count, FLAGS.max_examples)


def evaluation_data(settings, model, count=None):
    dataset = pipelines.build_dataset(
        settings["dataset"],
        settings["split"],
        settings["data_dir"],
        FLAGS.batch_size,
        image_size=model.image_size,
        seed=FLAGS.seed,
        noise_std=settings["noise_std"],
        classes_file=settings["classes_file"],
    )
    return _limit(dataset, count or FLAGS.max_examples)


def clean_section(model, settings, mflops):
    logging.info("Clean evaluation on %s/%s", settings["dataset"], settings["split"])
    outputs = evaluation.predict(model, evaluation_data(settings, model))
    accuracy = evaluation.accuracy_per_glimpse(
        outputs["probabilities"], outputs["labels"]
    )
    thresholds = [float(t) for t in FLAGS.exit_thresholds]
    section = {
        "num_examples": int(len(outputs["labels"])),
        "accuracy": accuracy,
        "mflops": mflops,
        "dynamic_exit": evaluation.dynamic_exit_sweep(
            outputs["probabilities"], outputs["labels"], thresholds, mflops
        ),
    }
    boxes = pipelines.object_boxes(
        settings["dataset"],
        settings["split"],
        section["num_examples"],
        FLAGS.seed,
        image_size=model.image_size,
    )
    # Where the glimpses look (s per glimpse; with known boxes, how they frame them).
    section["localization"] = localization.localization_report(
        outputs["glimpse_params"], boxes, model.image_size
    )
    if FLAGS.latency_repeats:
        section["latency_ms_batch1"] = evaluation.latency_ms(
            model, FLAGS.latency_repeats
        )
    return section


def attack_section(model, settings):
    steps = sorted({int(s) for s in FLAGS.steps}) if FLAGS.attack == "pgd" else [1]
    step_size = FLAGS.step_size if FLAGS.attack == "pgd" else FLAGS.eps
    correct = {k: [] for k in steps}
    clean = []
    data = evaluation_data(settings, model, _capped(FLAGS.attack_examples))
    bar = keras.utils.Progbar(None, unit_name="batch")
    for batch, (images, labels) in enumerate(data):
        logits = model(images, training=False)["logits"][:, -1]
        clean.append(np.argmax(logits, axis=-1) == labels.numpy())
        curve = attacks.attack_curve(
            model,
            images,
            labels,
            steps,
            eps=FLAGS.eps,
            step_size=step_size,
            space=FLAGS.attack_space,
        )
        for k in steps:
            correct[k].append(np.asarray(curve[k]))
        bar.update(batch + 1)
    return {
        "attack": FLAGS.attack,
        "space": FLAGS.attack_space,
        "eps": FLAGS.eps,
        "step_size": step_size,
        "num_examples": int(sum(len(c) for c in clean)),
        "clean_accuracy": float(np.mean(np.concatenate(clean))),
        "steps": steps,
        "accuracy": [float(np.mean(np.concatenate(correct[k]))) for k in steps],
    }


def _corruption_accuracy(model, settings, corruption, severity):
    count = _capped(FLAGS.corruption_examples)
    if FLAGS.corruptions_dir:
        data = corruption_lib.imagenet_c_dataset(
            FLAGS.corruptions_dir,
            corruption,
            severity,
            settings["class_names"],
            FLAGS.batch_size,
            model.image_size,
            channels=model.channels,
        )
        data = _limit(data, count)
    else:
        data = corruption_lib.corrupted_dataset(
            evaluation_data(settings, model, count), corruption, severity, FLAGS.seed
        )
    outputs = evaluation.predict(model, data, progress=False)
    return evaluation.accuracy_per_glimpse(outputs["probabilities"], outputs["labels"])


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


def corruption_section(model, settings, names, severities):
    """Accuracy after each glimpse, per corruption averaged over severities (Table 2)."""
    per_severity = {}
    bar = keras.utils.Progbar(len(names) * len(severities), unit_name="set")
    for corruption in names:
        per_severity[corruption] = []
        for severity in severities:
            per_severity[corruption].append(
                _corruption_accuracy(model, settings, corruption, severity)
            )
            bar.add(1)
    averaged = {c: np.mean(v, axis=0).tolist() for c, v in per_severity.items()}
    section = {
        "source": FLAGS.corruptions_dir or "generated with imagecorruptions",
        "severities": severities,
        "accuracy_per_severity": per_severity,
        "accuracy": averaged,
        "mean_accuracy": np.mean(list(averaged.values()), axis=0).tolist(),
    }
    if FLAGS.baseline_model_dir:
        baseline, _, _ = load_run(FLAGS.baseline_model_dir, None, FLAGS.checkpoint)
        final = {c: [acc[-1] for acc in v] for c, v in per_severity.items()}
        baseline_final = {
            c: [_corruption_accuracy(baseline, settings, c, s)[-1] for s in severities]
            for c in names
        }
        errors, mean_error = evaluation.relative_corruption_error(final, baseline_final)
        section["baseline_model_dir"] = FLAGS.baseline_model_dir
        section["relative_corruption_error"] = errors
        section["mean_relative_corruption_error"] = mean_error
    return section


def _glimpses_of(model, images, params):
    size = (model.glimpse_size, model.glimpse_size)
    return tf.stack(
        [sample_glimpses(images, params[:, t], size) for t in range(params.shape[1])],
        axis=1,
    )


def write_pictures(model, images, outputs, labels, directory, names):
    """PNGs of each image with its glimpse boxes and the glimpses beneath."""
    tf.io.gfile.makedirs(directory)
    params = tf.convert_to_tensor(outputs["glimpse_params"])
    glimpses = _glimpses_of(model, tf.convert_to_tensor(images, tf.float32), params)
    predictions = np.argmax(outputs["probabilities"], axis=-1)
    paths = []
    for i, name in enumerate(names):
        correct = None if labels is None else predictions[i] == labels[i]
        picture = glimpse_picture(
            images[i], params[i].numpy(), glimpses[i].numpy(), correct
        )
        path = os.path.join(directory, f"{name}.png")
        tf.io.write_file(path, tf.io.encode_png(picture))
        paths.append(path)
    return paths


def pictures_section(model, settings, directory):
    data = evaluation_data(settings, model, FLAGS.visualize)
    images, labels = [
        np.concatenate(x) for x in zip(*[(i.numpy(), l.numpy()) for i, l in data])
    ]
    outputs = evaluation.predict(
        model, tf.data.Dataset.from_tensors((images, labels)), progress=False
    )
    names = [f"example_{i:03d}_label_{labels[i]}" for i in range(len(images))]
    paths = write_pictures(model, images, outputs, labels, directory, names)
    predictions = np.argmax(outputs["probabilities"], axis=-1)
    details = [
        {"path": path, "label": int(label), "predictions": p.tolist()}
        for path, label, p in zip(paths, labels, predictions)
    ]
    return paths, details


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


def images_section(model, class_names, paths, directory):
    """Top classes after each glimpse for each of `paths` (from `image_paths`)."""
    results = []
    # The model's own transform: what its SavedModel does with the same file.
    images, kept = EvalTransform.of_model(model).read_files(paths)
    if not kept:
        raise app.UsageError(
            f"--images: none of the {len(paths)} files could be read as an image "
            f"(first: {paths[0]})"
        )
    outputs = evaluation.predict(
        model,
        tf.data.Dataset.from_tensors((images, np.zeros(len(images)))),
        progress=False,
    )
    names = [os.path.splitext(os.path.basename(p))[0] for p in kept]
    pictures = write_pictures(model, images, outputs, None, directory, names)
    for path, probabilities, picture in zip(kept, outputs["probabilities"], pictures):
        top = []
        for step_probabilities in probabilities:
            order = np.argsort(-step_probabilities)[: FLAGS.top_k]
            top.append(
                [
                    {
                        "class": class_names[c] if class_names else int(c),
                        "probability": float(step_probabilities[c]),
                    }
                    for c in order
                ]
            )
        results.append({"path": path, "top_per_glimpse": top, "picture": picture})
    return results


def write_plots(report, directory):
    """Accuracy-versus-MFLOPs (early and dynamic exit) and accuracy-versus-steps PNGs."""
    import matplotlib  # noqa: PLC0415 (only needed when plotting)

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    paths = []
    if "clean" in report:
        clean = report["clean"]
        figure, axes = pyplot.subplots(figsize=(5, 3.5))
        axes.plot(
            clean["mflops"],
            [100 * a for a in clean["accuracy"]],
            "o-",
            label="exit after t glimpses",
        )
        dynamic = clean["dynamic_exit"]
        axes.plot(
            [d["mean_mflops"] for d in dynamic],
            [100 * d["accuracy"] for d in dynamic],
            "s--",
            label="dynamic exit",
        )
        axes.set(
            xlabel="MFLOPs per image", ylabel="top-1 accuracy (%)", title="Early exit"
        )
        axes.legend()
        paths.append(os.path.join(directory, "early_exit.png"))
        figure.tight_layout()
        figure.savefig(paths[-1], dpi=120)
        pyplot.close(figure)
    if "attack" in report:
        attack = report["attack"]
        figure, axes = pyplot.subplots(figsize=(5, 3.5))
        axes.plot(
            [0] + attack["steps"],
            [100 * a for a in [attack["clean_accuracy"]] + attack["accuracy"]],
            "o-",
        )
        axes.set(
            xlabel="attack steps",
            ylabel="top-1 accuracy (%)",
            title=f"{attack['attack'].upper()} eps={attack['eps'] * 255:.0f}/255 ({attack['space']})",
        )
        paths.append(os.path.join(directory, "attack.png"))
        figure.tight_layout()
        figure.savefig(paths[-1], dpi=120)
        pyplot.close(figure)
    return paths


def print_tables(report):
    if "clean" in report:
        clean = report["clean"]
        print(f"\nClean accuracy on {clean['num_examples']} images")
        print(f"{'glimpses':>8} {'MFLOPs':>10} {'latency ms':>11} {'top-1 %':>8}")
        latency = clean.get(
            "latency_ms_batch1", [float("nan")] * len(clean["accuracy"])
        )
        for t, (m, ms, a) in enumerate(
            zip(clean["mflops"], latency, clean["accuracy"]), 1
        ):
            print(f"{t:>8} {m:>10.3f} {ms:>11.2f} {100 * a:>8.2f}")
        where = clean["localization"]
        print("\nWhere the glimpses look (s: glimpse side / image side)")
        boxes = "median_iou" in where
        print(
            f"{'glimpse':>8} {'mean s':>7} {'s p10-p90':>11}"
            + (f" {'centre err px':>13} {'median IoU':>10} {'IoU>=0.5':>8}" if boxes else "")
        )
        for t, (s, q) in enumerate(zip(where["mean_scale"], where["scale_quantiles"])):
            row = f"{t + 1:>8} {s:>7.3f} {q[0]:>5.2f}-{q[2]:<5.2f}"
            if boxes:
                row += (
                    f" {where['median_center_error_px'][t]:>13.1f}"
                    f" {where['median_iou'][t]:>10.2f}"
                    f" {100 * where['iou_at_least_0.5'][t]:>7.1f}%"
                )
            print(row)
        print("\nDynamic exit")
        print(f"{'threshold':>9} {'glimpses':>9} {'MFLOPs':>10} {'top-1 %':>8}")
        for d in clean["dynamic_exit"]:
            print(
                f"{d['threshold']:>9.2f} {d['mean_glimpses']:>9.2f} {d['mean_mflops']:>10.3f} {100 * d['accuracy']:>8.2f}"
            )
    if "attack" in report:
        attack = report["attack"]
        print(
            f"\n{attack['attack'].upper()} ({attack['space']} space, eps {attack['eps']:.4f}) on {attack['num_examples']} images"
        )
        print(
            f"{'steps':>5} {'top-1 %':>8}\n{0:>5} {100 * attack['clean_accuracy']:>8.2f}"
        )
        for k, a in zip(attack["steps"], attack["accuracy"]):
            print(f"{k:>5} {100 * a:>8.2f}")
    if "corruptions" in report:
        section = report["corruptions"]
        print("\nCorruptions: top-1 % after each glimpse, averaged over severities")
        for name, accuracy in section["accuracy"].items():
            row = " ".join(f"{100 * a:6.2f}" for a in accuracy)
            ce = section.get("relative_corruption_error", {}).get(name)
            print(f"{name:>18} {row}" + ("" if ce is None else f"   CE {ce:.3f}"))
        print(
            f"{'mean':>18} "
            + " ".join(f"{100 * a:6.2f}" for a in section["mean_accuracy"])
        )
    for entry in report.get("images", []):
        best = entry["top_per_glimpse"][-1][0]
        print(
            f"{entry['path']}: {best['class']} ({best['probability']:.3f})  picture {entry['picture']}"
        )


def main(argv):
    del argv
    pylogging.getLogger("tensorflow").addFilter(_QuietRetracing())
    model, config, model_path = load_run(FLAGS.model_dir, FLAGS.model, FLAGS.checkpoint)
    settings = data_settings(config, model)
    severities = [int(s) for s in FLAGS.severities]
    names = corruption_names() if (FLAGS.corruptions or FLAGS.corruptions_dir) else []
    if any(s not in corruption_lib.SEVERITIES for s in severities):
        raise app.UsageError(
            f"--severities={FLAGS.severities}; expected values in {corruption_lib.SEVERITIES}"
        )
    images_only = FLAGS.images is not None and not (
        FLAGS.attack != "none" or names or FLAGS.visualize
    )
    if not images_only and settings["dataset"] is None:
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
    tf.io.gfile.makedirs(output_dir)

    report = {
        "model": model_path,
        "model_config": {
            k: v for k, v in model.get_config().items() if not isinstance(v, dict)
        },
        "flags": {
            f.name: f.value for f in FLAGS.get_flags_for_module(sys.modules[__name__])
        },
        "data": {k: v for k, v in settings.items() if k != "class_names"},
    }
    if not images_only:
        mflops = [m / 1e6 for m in flops.mgnet_macs(model)]
        report["clean"] = clean_section(model, settings, mflops)
    if FLAGS.attack != "none":
        report["attack"] = attack_section(model, settings)
    if names:
        report["corruptions"] = corruption_section(model, settings, names, severities)
    if FLAGS.visualize:
        # "pictures" lists the PNGs; "picture_predictions" the label and the
        # prediction after each glimpse of each, to pick right and wrong cases.
        report["pictures"], report["picture_predictions"] = pictures_section(
            model, settings, os.path.join(output_dir, "pictures")
        )
    if FLAGS.images is not None:
        report["images"] = images_section(
            model, settings.get("class_names"), paths, os.path.join(output_dir, "images")
        )
    report["plots"] = write_plots(report, output_dir)
    files.write_json(report, os.path.join(output_dir, "evaluation.json"))
    print_tables(report)
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
