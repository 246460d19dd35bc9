"""How well the glimpse backbone can recognize an item from one glimpse, framed by an
oracle: what MGNet's 28 px glimpses cost on translated Fashion-MNIST, apart from where
the localization network puts them.

    python experiments/glimpse_oracle.py                      # every CNN condition, ~1.5-2.5 h on 2 CPU cores
    python experiments/glimpse_oracle.py --conditions=exact,err7 --epochs=3
    python experiments/glimpse_oracle.py --conditions=mgnet_s0.25 --epochs=10   # the whole MGNet, ~35 min

Each condition trains the preset's vanilla CNN with a linear classifier (FF-Net's head)
on single glimpses cut from the 112 px canvases by `mgnet_tf.layers.GlimpseSampler`
(bilinear, align_corners=True, as MGNet samples them) at a window placed on the item's
true box by an oracle: scale s (the window is s * 112 px wide), glimpse side in pixels,
and a random centre error (Gaussian per axis, scaled so that its median length is the
condition's error in pixels; drawn anew every epoch in training, fixed per test image);
the margin20_* conditions first shrink each item to 20 px inside its 28 px box, the
margin MNIST's digits have, which Fashion-MNIST's items (edge to edge) lack.
The items' positions are drawn as translated_dataset draws them. Same optimizer, schedule,
batch and normalization as the data set's preset; the test split is only evaluated.

The table (test top-1 per condition) goes between the oracle markers of docs/results.md;
every finished condition is kept in --store_dir (small, to commit) and not trained again.
"""

import json
import math
import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402
import presets  # noqa: E402

DATASET = "translated_fashion_mnist"
CANVAS = 112
ITEM = 28
# A window of s = 27/111 samples the canvas on its own pixel grid (align_corners=True:
# 28 samples 1 px apart), so that glimpse is the item itself, with no interpolation.
PIXEL_ALIGNED = (ITEM - 1) / (CANVAS - 1)
# name: (what it is, s, glimpse side px, median centre error px[, item side px]).
# Fashion-MNIST's items fill their 28 px frame (the long side touches both edges in 98%
# of the test items); MNIST's digits are scaled to 20 px inside it. The margin20_*
# conditions shrink each item to 20 px in its 28 px box, as MNIST's digits sit, to tell
# what a misplaced window costs on the paper's data from what it costs on ours.
CONDITIONS = {
    "exact": ("the item itself: pixel-aligned 28 px window on its box", PIXEL_ALIGNED, 28, 0.0),
    "s0.25": ("s = 0.25 (MGNet's learned size), centred on the box", 0.25, 28, 0.0),
    "err3.5": ("s = 0.25, median centre error 3.5 px", 0.25, 28, 3.5),
    "err7": ("s = 0.25, median centre error 7 px (MGNet's glimpses 3-5)", 0.25, 28, 7.0),
    "s0.32": ("s = 0.32 (a 36 px window round the 28 px item), centred", 0.32, 28, 0.0),
    "s0.32_err3.5": ("s = 0.32, median error 3.5 px", 0.32, 28, 3.5),
    "s0.32_err7": ("s = 0.32 (a looser window), median error 7 px", 0.32, 28, 7.0),
    "px40_err7": ("s = 0.25, median error 7 px, 40 px glimpse (M = 2.8)", 0.25, 40, 7.0),
    "px40": ("s = 0.25, centred, 40 px glimpse (M = 2.8)", 0.25, 40, 0.0),
    # The item at (about) its own resolution with a 4 px black margin round it, which a
    # 28 px glimpse (M = 4) cannot have on items that fill their 28 px frame.
    "s0.32_px36": ("s = 0.32 (a 36 px window round the 28 px item) at 36 px (M = 3.1), centred", 0.32, 36, 0.0),
    "margin20_exact": ("items shrunk to 20 px in their box (as MNIST's digits), pixel-aligned window", PIXEL_ALIGNED, 28, 0.0, 20),
    "margin20_err3.5": ("items shrunk to 20 px in their box, s = 0.25, median error 3.5 px", 0.25, 28, 3.5, 20),
    "margin20_err7": ("items shrunk to 20 px in their box, s = 0.25, median error 7 px", 0.25, 28, 7.0, 20),
}
# The whole MGNet (the preset's, T = 5, joint loss and fusion) with glimpses 2..T put
# where the oracle says instead of where its localization network puts them: what the
# joint training costs the backbone, apart from the placement.
MGNET_CONDITIONS = {
    "mgnet_s0.25": ("MGNet (preset, T = 5), glimpses 2-5 placed by the oracle: s = 0.25, centred", 0.25, 28, 0.0),
}
ALL_CONDITIONS = {**CONDITIONS, **MGNET_CONDITIONS}
BEGIN, END = "<!-- oracle:begin -->", "<!-- oracle:end -->"

FLAGS = flags.FLAGS


def define_flags():
    """The command line's flags, defined only when run as a script: the module's
    functions are imported by the tests next to train.py, whose flags share names."""
    flags.DEFINE_list(
        "conditions", list(CONDITIONS), f"Conditions to run, of {list(ALL_CONDITIONS)}."
    )
    flags.DEFINE_integer("epochs", 15, "Training epochs of every condition.")
    flags.DEFINE_integer("seed", 0, "Seed of weights, positions and errors.")
    flags.DEFINE_string("data_dir", None, "Fashion-MNIST IDX files (default: see docs).")
    flags.DEFINE_integer("max_train", None, "Smoke runs: train on the first N items only.")
    flags.DEFINE_string("results", os.path.join(common.REPO, "docs", "results.md"), "Markdown file to fill in.")
    flags.DEFINE_string(
        "store_dir",
        os.path.join(common.REPO, "experiments", "results", "glimpse_oracle"),
        "Each finished condition's figures (to commit); a condition found here is kept.",
    )


def condition(name):
    """(description, s, glimpse side px, median centre error px, item side px)."""
    description, scale, glimpse_px, error_px, *item = ALL_CONDITIONS[name]
    return description, scale, glimpse_px, error_px, item[0] if item else ITEM


def with_margin(images, item_px):
    """Each 28 px item resized (area-averaged) to `item_px` and centred in a black
    28 px box, as MNIST puts its digits in a 20 px box inside 28 px."""
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    if item_px == ITEM:
        return images
    if not 0 < item_px < ITEM:
        raise ValueError(f"item side {item_px} px: expected 1 to {ITEM} px")
    small = tf.image.resize(tf.cast(images, tf.float32)[..., None], (item_px, item_px), method="area")
    top = (ITEM - item_px) // 2
    boxed = tf.image.pad_to_bounding_box(small, top, top, ITEM, ITEM)[..., 0]
    return np.clip(np.round(boxed.numpy()), 0, 255).astype(np.uint8)


def sigma_for_median(median_px):
    """Per-axis standard deviation of a 2-D Gaussian whose length has this median
    (the Rayleigh median is sigma * sqrt(2 ln 2))."""
    return median_px / math.sqrt(2.0 * math.log(2.0))


def glimpse_inputs(images, labels, training, scale, error_px, seed, batch_size):
    """(canvas, glimpse params), label batches: each item at a random position of a
    black 112 px canvas and the oracle's window (s, x, y) on it, off by the error."""
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    sigma = sigma_for_median(error_px) * 2.0 / (CANVAS - 1)  # in normalized units
    rng = np.random.default_rng(seed + (0 if training else 1))
    count = len(images)

    def place(image, label, offset, error):
        canvas = tf.image.pad_to_bounding_box(
            tf.cast(image, tf.float32)[..., None] / 255.0, offset[0], offset[1], CANVAS, CANVAS
        )
        # align_corners=True: pixel i is at -1 + 2 i / (S - 1); the box centre is at
        # offset + 13.5.
        centre = -1.0 + 2.0 * (tf.cast(offset, tf.float32) + (ITEM - 1) / 2) / (CANVAS - 1)
        y, x = centre[0] + error[0], centre[1] + error[1]
        return (canvas, tf.stack([tf.constant(scale, tf.float32), x, y])), label

    if training:
        dataset = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(count, seed=seed)

        def draw(image, label):
            offset = tf.random.uniform([2], 0, CANVAS - ITEM + 1, tf.int32)
            return place(image, label, offset, tf.random.normal([2], stddev=sigma))

        dataset = dataset.map(draw, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        offsets = rng.integers(0, CANVAS - ITEM + 1, size=(count, 2)).astype(np.int32)
        errors = (rng.standard_normal((count, 2)) * sigma).astype(np.float32)
        dataset = tf.data.Dataset.from_tensor_slices((images, labels, offsets, errors)).map(
            place, num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def oracle_model(glimpse_px, mean, std, seed):
    import keras  # noqa: PLC0415

    from mgnet_tf.backbones.vanilla_cnn import vanilla_cnn  # noqa: PLC0415
    from mgnet_tf.layers import GlimpseSampler  # noqa: PLC0415

    keras.utils.set_random_seed(seed)
    canvas = keras.Input((CANVAS, CANVAS, 1), name="canvas")
    params = keras.Input((3,), name="glimpse_params")
    glimpse = GlimpseSampler((glimpse_px, glimpse_px))(canvas, params)
    x = keras.layers.Normalization(mean=mean, variance=[v * v for v in std])(glimpse)
    features = vanilla_cnn((glimpse_px, glimpse_px, 1), initializer="torch")(x)
    logits = keras.layers.Dense(10, name="classifier")(features)
    return keras.Model([canvas, params], logits)


def oracle_placed_mgnet(recipe, seed):
    """The preset's MGNet whose call takes (canvas, oracle params (B, 3)) and puts
    glimpses 2..T at the oracle's params; glimpse 1 is the whole canvas, as in MGNet.
    Its loss, metrics, fusion and classifiers are MGNet's own; the localization
    network is not used."""
    import keras  # noqa: PLC0415
    from keras import ops  # noqa: PLC0415

    from mgnet_tf.mgnet import MGNet  # noqa: PLC0415

    class OraclePlacedMGNet(MGNet):
        def call(self, inputs, training=None, num_glimpses=None):
            images, oracle = inputs
            steps = self.num_glimpses if num_glimpses is None else num_glimpses
            images = self.normalize(images)
            params = self.first_glimpse_params(ops.shape(images)[0])
            tokens, logits, glimpse_logits, glimpse_params = None, [], [], []
            for _ in range(steps):
                out = self.glimpse_step(images, tokens, params, training=training)
                tokens = out["tokens"]
                logits.append(out["logits"])
                glimpse_logits.append(out["glimpse_logits"])
                glimpse_params.append(ops.cast(params, "float32"))
                params = ops.cast(oracle, "float32")
            return {
                "logits": ops.stack(logits, axis=1),
                "glimpse_logits": ops.stack(glimpse_logits, axis=1),
                "glimpse_params": ops.stack(glimpse_params, axis=1),
            }

    keras.utils.set_random_seed(seed)
    # No localization head is used, so none is built that the preset would add (the
    # first head of --first_localization, 2026-12-04, came after these runs): the
    # same seed gives the same initial weights as the stored runs had.
    return OraclePlacedMGNet.from_settings(
        recipe,
        num_classes=10,
        channels=1,
        image_size=CANVAS,
        first_localization=False,
        lookahead=0.0,
    )


def _inputs(name, arrays, batch):
    """The condition's training and test batches: items boxed to its size, placed at
    random, with the oracle's window (and the test split's positions, fixed)."""
    import tensorflow as tf  # noqa: PLC0415

    _, scale, _, error_px, item_px = condition(name)
    tf.random.set_seed(FLAGS.seed)
    train_images, train_labels, test_images, test_labels = arrays
    train_images, test_images = with_margin(train_images, item_px), with_margin(test_images, item_px)
    train = glimpse_inputs(train_images, train_labels, True, scale, error_px, FLAGS.seed, batch)
    test = glimpse_inputs(test_images, test_labels, False, scale, error_px, FLAGS.seed, batch)
    return train, test, (test_images, test_labels)


def _described(name):
    """The condition's settings, as its result records them."""
    description, scale, glimpse_px, error_px, item_px = condition(name)
    return {
        "description": description,
        "scale": scale,
        "item_px": item_px,
        "glimpse_px": glimpse_px,
        "median_error_px": error_px,
        "epochs": FLAGS.epochs,
    }


def _optimizer(recipe, train_count):
    """The preset's SGD and schedule over --epochs."""
    from mgnet_tf import optimizers, schedules  # noqa: PLC0415

    steps = FLAGS.epochs * math.ceil(train_count / recipe["batch_size"])
    return optimizers.sgd(
        schedules.learning_rate_schedule(
            recipe["schedule"], recipe["learning_rate"], steps, recipe["warmup_fraction"]
        ),
        recipe["momentum"],
        recipe["weight_decay"],
        recipe["weight_decay_mode"],
        recipe["global_clipnorm"],
    )


def run_mgnet_condition(name, arrays, recipe):
    import numpy as np  # noqa: PLC0415

    glimpse_px = condition(name)[2]
    train, test, _ = _inputs(name, arrays, recipe["batch_size"])
    model = oracle_placed_mgnet(recipe, FLAGS.seed)
    if model.glimpse_size != glimpse_px:
        raise ValueError(f"{name}: the preset's glimpse is {model.glimpse_size} px, not {glimpse_px}")
    model.compile(optimizer=_optimizer(recipe, len(arrays[0])))
    start = time.time()
    history = model.fit(train, epochs=FLAGS.epochs, verbose=2)
    last = f"acc_{model.num_glimpses}"
    correct_fused, correct_glimpse = [], []
    for inputs, labels in test:
        out = model(inputs, training=False)
        labels = labels.numpy()[:, None]
        correct_fused.append(np.argmax(out["logits"].numpy(), -1) == labels)
        correct_glimpse.append(np.argmax(out["glimpse_logits"].numpy(), -1) == labels)
    fused = np.concatenate(correct_fused).mean(0)
    return {
        **_described(name),
        "train_accuracy_last_epoch": float(history.history[last][-1]),
        # After 3 glimpses, the paper's Table 4 point; every count below.
        "test_accuracy": float(fused[2]),
        "test_accuracy_per_glimpse": [float(a) for a in fused],
        # The glimpse classifier on glimpse 2 (the oracle's): the backbone alone.
        "glimpse_classifier_test_accuracy": float(np.concatenate(correct_glimpse).mean(0)[1]),
        "test_examples": len(arrays[2]),
        "seconds": time.time() - start,
        "commit": common.commit(),
        "machine": common.machine(),
    }


def run_condition(name, arrays, recipe):
    import keras  # noqa: PLC0415

    _, scale, glimpse_px, error_px, _ = condition(name)
    batch = recipe["batch_size"]
    train, test, (test_images, test_labels) = _inputs(name, arrays, batch)
    model = oracle_model(glimpse_px, recipe["mean"], recipe["std"], FLAGS.seed)
    model.compile(
        optimizer=_optimizer(recipe, len(arrays[0])),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.time()
    history = model.fit(train, epochs=FLAGS.epochs, verbose=2)
    _, test_accuracy = model.evaluate(test, verbose=0)
    centred = None
    if error_px:
        # The same test glimpses without the error: what training on misplaced glimpses
        # did to recognizing well-placed ones (MGNet's backbone is trained that way).
        exact = glimpse_inputs(test_images, test_labels, False, scale, 0.0, FLAGS.seed, batch)
        centred = float(model.evaluate(exact, verbose=0)[1])
    return {
        **_described(name),
        "train_accuracy_last_epoch": float(history.history["accuracy"][-1]),
        "test_accuracy": float(test_accuracy),
        "test_accuracy_centred": centred,
        "test_examples": len(test_images),
        "seconds": time.time() - start,
        "commit": common.commit(),
        "machine": common.machine(),
    }


def table(results):
    lines = [
        "| condition | item px | window | glimpse px | median centre error px | train top-1 % (last epoch) "
        "| test top-1 % | test top-1 %, the same glimpses centred |",
        "|---|---|---|---|---|---|---|---|",
    ]
    mgnet = {name: r for name, r in results.items() if "test_accuracy_per_glimpse" in r}
    for name, r in results.items():
        if name in mgnet:
            continue
        centred = r.get("test_accuracy_centred")
        lines.append(
            f"| {name} | {r.get('item_px', ITEM)} | s = {r['scale']:.3f} | {r['glimpse_px']} "
            f"| {r['median_error_px']:g} | {100 * r['train_accuracy_last_epoch']:.2f} "
            f"| {100 * r['test_accuracy']:.2f} | {'-' if centred is None else f'{100 * centred:.2f}'} |"
        )
    if mgnet:
        lines += [
            "",
            "| condition (whole MGNet) | window | median centre error px | train top-1 % after the last glimpse "
            "(last epoch) | test top-1 % after 1 / 2 / 3 / 4 / 5 glimpses | glimpse classifier on glimpse 2, test % |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in mgnet.items():
            per_glimpse = " / ".join(f"{100 * a:.2f}" for a in r["test_accuracy_per_glimpse"])
            lines.append(
                f"| {name} | s = {r['scale']:.3f} | {r['median_error_px']:g} "
                f"| {100 * r['train_accuracy_last_epoch']:.2f} | {per_glimpse} "
                f"| {100 * r['glimpse_classifier_test_accuracy']:.2f} |"
            )
    return "\n".join(lines)


def main(argv):
    del argv
    unknown = [c for c in FLAGS.conditions if c not in ALL_CONDITIONS]
    if unknown:
        raise app.UsageError(f"--conditions: {unknown} are not in {list(ALL_CONDITIONS)}")
    from pipelines import translated_mnist  # noqa: PLC0415

    recipe = presets.preset(DATASET)
    data = translated_mnist.load_idx(FLAGS.data_dir, variant="fashion_mnist")
    train_images, train_labels = translated_mnist.select_split(data, "train")
    if FLAGS.max_train:
        train_images, train_labels = train_images[: FLAGS.max_train], train_labels[: FLAGS.max_train]
    arrays = (train_images, train_labels, data["test_images"], data["test_labels"])
    smoke = bool(FLAGS.max_train)
    results = {}
    for name in FLAGS.conditions:
        stored = os.path.join(FLAGS.store_dir, f"{name}_{FLAGS.epochs}ep_seed{FLAGS.seed}.json")
        if os.path.exists(stored) and not smoke:
            common.log(f"{name}: kept from {stored}")
            with open(stored) as f:
                results[name] = json.load(f)
            continue
        common.log(f"{name}: {condition(name)[0]}")
        runner = run_mgnet_condition if name in MGNET_CONDITIONS else run_condition
        results[name] = runner(name, arrays, recipe)
        common.log(f"{name}: test top-1 {100 * results[name]['test_accuracy']:.2f}%")
        if not smoke:
            os.makedirs(FLAGS.store_dir, exist_ok=True)
            with open(stored, "w") as f:
                json.dump(results[name], f, indent=1)
    body = "\n".join(
        [
            f"- Command: `{common.command_line()}`",
            "- Trained at commit "
            + ", ".join(sorted({r.get("commit", "?") for r in results.values()}))
            + " on "
            + "; ".join(sorted({r.get("machine", "?") for r in results.values()}))
            + f"; {common.versions()}",
            f"- Every condition: {FLAGS.epochs} epochs, seed {FLAGS.seed}, the preset's "
            f"optimizer, schedule, batch and normalization; training split "
            f"({len(train_images)} items), all {len(arrays[2])} test items.",
            "",
            table(results),
        ]
    )
    print(body)
    if not smoke:
        common.write_between_markers(FLAGS.results, BEGIN, END, body)


if __name__ == "__main__":
    define_flags()
    app.run(main)
