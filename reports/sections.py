"""The report's sections: each runs one kind of evaluation of a model on `EvalData`
and returns a JSON-ready dict. Everything a section depends on is an argument."""

import os

import keras
import numpy as np
import tensorflow as tf

from mgnet_tf import attacks, evaluation, localization
from mgnet_tf.layers import sample_glimpses
from mgnet_tf.visualize import glimpse_picture
from pipelines import corruptions as corruption_lib
from pipelines.transform import EvalTransform


def clean_section(model, data, mflops, thresholds=(), latency_repeats=0, class_names=None):
    """Accuracy and MFLOPs after each glimpse, per class too, the dynamic exit and
    where the glimpses look.

    Args:
        model: an `MGNet`.
        data: `EvalData`.
        mflops: MFLOPs of the first t glimpses, t = 1..T (`flops.mgnet_macs` / 1e6).
        thresholds: confidence thresholds of the dynamic-exit sweep.
        latency_repeats: timed batch-1 runs per glimpse count (0: not timed).
        class_names: the classes' names, in label order, for the per-class table.
    """
    outputs = evaluation.predict(model, data.batches(model.image_size))
    section = {
        "num_examples": int(len(outputs["labels"])),
        "accuracy": evaluation.accuracy_per_glimpse(
            outputs["probabilities"], outputs["labels"]
        ),
        "per_class": evaluation.accuracy_per_class(
            outputs["probabilities"], outputs["labels"]
        ),
        "mflops": list(mflops),
        "dynamic_exit": evaluation.dynamic_exit_sweep(
            outputs["probabilities"], outputs["labels"], list(thresholds), mflops
        ),
    }
    if class_names is not None:
        section["per_class"]["names"] = list(class_names)
    boxes = data.object_boxes(section["num_examples"], model.image_size)
    # Where the glimpses look (s per glimpse; with known boxes, how they frame them).
    section["localization"] = localization.localization_report(
        outputs["glimpse_params"], boxes, model.image_size
    )
    if latency_repeats:
        section["latency_ms_batch1"] = evaluation.latency_ms(model, latency_repeats)
    return section


def attack_section(model, data, attack, eps, step_size=None, steps=(1,), space="pixel", examples=None):
    """Top-1 after the last glimpse under an L-inf FGSM or PGD attack (Figure 4).

    Args:
        attack: "fgsm" (one step of size `eps`) or "pgd" (`steps` steps of `step_size`).
        eps: the L-inf radius, in [0, 1] pixel units.
        steps: for PGD, the step counts of the curve.
        space: `attacks.attack_curve`'s space ("pixel" or "normalized").
        examples: attack the first N images (capped by `data.max_examples`).
    """
    if attack not in ("fgsm", "pgd"):
        raise ValueError(f"attack={attack!r}; expected 'fgsm' or 'pgd'")
    steps = sorted({int(s) for s in steps}) if attack == "pgd" else [1]
    step_size = step_size if attack == "pgd" else eps
    correct = {k: [] for k in steps}
    clean = []
    bar = keras.utils.Progbar(None, unit_name="batch")
    for batch, (images, labels) in enumerate(data.batches(model.image_size, examples)):
        logits = model(images, training=False)["logits"][:, -1]
        clean.append(np.argmax(logits, axis=-1) == labels.numpy())
        curve = attacks.attack_curve(
            model, images, labels, steps, eps=eps, step_size=step_size, space=space
        )
        for k in steps:
            correct[k].append(np.asarray(curve[k]))
        bar.update(batch + 1)
    return {
        "attack": attack,
        "space": space,
        "eps": eps,
        "step_size": step_size,
        "num_examples": int(sum(len(c) for c in clean)),
        "clean_accuracy": float(np.mean(np.concatenate(clean))),
        "steps": steps,
        "accuracy": [float(np.mean(np.concatenate(correct[k]))) for k in steps],
    }


def corruption_accuracy(model, data, corruption, severity, examples=None, corruptions_dir=None, class_names=None):
    """Top-1 after each glimpse on one corruption at one severity: read from an
    ImageNet-C style `corruptions_dir` (classes in `class_names` order) or generated
    from `data` with imagecorruptions."""
    count = data.capped(examples)
    if corruptions_dir:
        batches = corruption_lib.imagenet_c_dataset(
            corruptions_dir,
            corruption,
            severity,
            class_names,
            data.batch_size,
            model.image_size,
            channels=model.channels,
        )
        batches = data.limit(batches, count)
    else:
        batches = corruption_lib.corrupted_dataset(
            data.batches(model.image_size, count), corruption, severity, data.seed
        )
    outputs = evaluation.predict(model, batches, progress=False)
    return evaluation.accuracy_per_glimpse(outputs["probabilities"], outputs["labels"])


def corruption_section(
    model,
    data,
    names,
    severities,
    examples=None,
    corruptions_dir=None,
    class_names=None,
    baseline=None,
    baseline_name=None,
):
    """Accuracy after each glimpse, per corruption averaged over severities (Table 2);
    with a `baseline` model (e.g. the FF-Net), the relative corruption errors.

    Args:
        names: corruption names (validated: `pipelines.corruptions.validate_corruptions`).
        severities: severities 1-5.
        examples: images per corruption and severity (capped by `data.max_examples`).
        corruptions_dir, class_names: read the corrupted images from an ImageNet-C
            style tree instead of generating them.
        baseline: a second `MGNet` evaluated on the same images; `baseline_name`
            names it in the section.
    """

    def accuracy(of_model, corruption, severity):
        return corruption_accuracy(
            of_model, data, corruption, severity, examples, corruptions_dir, class_names
        )

    per_severity = {}
    bar = keras.utils.Progbar(len(names) * len(severities), unit_name="set")
    for corruption in names:
        per_severity[corruption] = []
        for severity in severities:
            per_severity[corruption].append(accuracy(model, corruption, severity))
            bar.add(1)
    averaged = {c: np.mean(v, axis=0).tolist() for c, v in per_severity.items()}
    section = {
        "source": corruptions_dir or "generated with imagecorruptions",
        "severities": list(severities),
        "accuracy_per_severity": per_severity,
        "accuracy": averaged,
        "mean_accuracy": np.mean(list(averaged.values()), axis=0).tolist(),
    }
    if baseline is not None:
        final = {c: [acc[-1] for acc in v] for c, v in per_severity.items()}
        baseline_final = {
            c: [accuracy(baseline, c, s)[-1] for s in severities] for c in names
        }
        errors, mean_error = evaluation.relative_corruption_error(final, baseline_final)
        section["baseline_model_dir"] = baseline_name
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
    """PNGs of each image with its glimpse boxes and the glimpses beneath; a green or
    red frame where `labels` says whether the last prediction is right."""
    tf.io.gfile.makedirs(directory)
    params = tf.convert_to_tensor(outputs["glimpse_params"])
    glimpses = _glimpses_of(model, tf.convert_to_tensor(images, tf.float32), params)
    predictions = np.argmax(outputs["probabilities"], axis=-1)
    paths = []
    for i, name in enumerate(names):
        correct = None if labels is None else predictions[i] == labels[i]
        picture = glimpse_picture(images[i], params[i].numpy(), glimpses[i].numpy(), correct)
        path = os.path.join(directory, f"{name}.png")
        tf.io.write_file(path, tf.io.encode_png(picture))
        paths.append(path)
    return paths


def pictures_section(model, data, count, directory):
    """Glimpse pictures of the first `count` images (Figures 6-7) in `directory`.

    Returns:
        (paths of the PNGs, per picture its label and the prediction after each glimpse)
    """
    images, labels = [
        np.concatenate(x)
        for x in zip(*[(i.numpy(), l.numpy()) for i, l in data.batches(model.image_size, count)])
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


def images_section(model, paths, directory, class_names=None, top_k=5):
    """The `top_k` classes after each glimpse for each image file in `paths`, read
    with the model's own transform (what its SavedModel does with the same file), and
    a glimpse picture of each in `directory`. Unreadable files are logged and skipped.

    Raises:
        ValueError: when none of `paths` can be read as an image.
    """
    images, kept = EvalTransform.of_model(model).read_files(paths)
    if not kept:
        raise ValueError(
            f"none of the {len(paths)} files could be read as an image (first: {paths[0]})"
        )
    outputs = evaluation.predict(
        model, tf.data.Dataset.from_tensors((images, np.zeros(len(images)))), progress=False
    )
    names = [os.path.splitext(os.path.basename(p))[0] for p in kept]
    pictures = write_pictures(model, images, outputs, None, directory, names)
    results = []
    for path, probabilities, picture in zip(kept, outputs["probabilities"], pictures):
        top = []
        for step_probabilities in probabilities:
            order = np.argsort(-step_probabilities)[:top_k]
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
