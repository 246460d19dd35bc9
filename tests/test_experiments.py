"""The translated Fashion-MNIST study script runs end to end (slow: about 4 minutes)."""

import importlib
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_study_script_quick_run(tmp_path, idx_dir):
    output = tmp_path / "study"
    command = [
        sys.executable,
        "experiments/translated_fashion_mnist.py",
        "--quick",
        f"--data_dir={idx_dir}",
        f"--output_dir={output}",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    # --quick writes everything under <output_dir>-quick, nothing into the repository.
    quick = tmp_path / "study-quick"
    results = (quick / "results.md").read_text()
    for heading in (
        "Table 4 format: translated Fashion-MNIST (clean)",
        "Gaussian-noise translated Fashion-MNIST",
        "Dynamic early exit",
        "Adversarial attacks",
        "mean of 15 x 5",
        "Glimpse pictures",
    ):
        assert heading in results
    assert "python experiments/translated_fashion_mnist.py --quick" in results
    shipped = sorted(os.listdir(quick / "checkpoints"))
    assert shipped == [
        f"translated_fashion_mnist_{name}.keras"
        for name in ("ff", "ff_noise", "mgnet", "mgnet_noise")
    ]
    assert (quick / "images" / "early_exit.png").exists()
    # The printed tables are the ones written to the file.
    assert results.split("<!-- results:begin -->")[1].split("<!-- results:end -->")[0].strip() in result.stdout

    # A second run keeps every finished stage.
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    # 6 trainings (the four shipped runs and the clean pair's second seed), 16 reports.
    assert "22 stages done by an earlier invocation were kept" in again.stdout
    # Each finished run is kept, small, in the store (to commit), and restored from it.
    store = quick / "store"
    assert sorted(os.listdir(store)) == sorted(
        ["ff", "ff_noise", "mgnet", "mgnet_noise", "ff_seed1", "mgnet_seed1"]
    )
    for name in ("config.json", "metrics.csv", "final.keras"):
        assert (store / "mgnet_seed1" / name).exists()
    assert (store / "ff" / "eval" / "pgd_8.json").exists()
    assert "Where the glimpses look" in results and "mgnet_seed1 (seed 1)" in results
    import shutil  # noqa: PLC0415

    shutil.rmtree(quick / "ff")  # as on a new machine: only the store has it
    third = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "train ff: restored from" in third.stdout
    # A run that finished but was not stored (stopped in between) is stored when found.
    for name in ("config.json", "metrics.csv", "final.keras"):
        (store / "mgnet_seed1" / name).unlink()
    fourth = subprocess.run([*command, "--train_only=mgnet_seed1"], cwd=REPO, capture_output=True, text=True)
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert "stored mgnet_seed1 in" in fourth.stdout
    for name in ("config.json", "metrics.csv", "final.keras"):
        assert (store / "mgnet_seed1" / name).exists()


def test_study_keeps_an_unfinished_run_and_resumes_it_elsewhere(tmp_path, idx_dir):
    """--store_unfinished keeps a run's last finished epoch in the store; on a machine
    that has only the store, the study resumes the run from there."""
    study = [
        sys.executable, "experiments/translated_fashion_mnist.py", "--quick",
        f"--data_dir={idx_dir}", f"--output_dir={tmp_path / 'study'}",
    ]
    train = [*study, "--epochs=2", "--train_only=mgnet"]
    env = {**os.environ, "MGNET_KILL_AT": "csv_row@2"}  # killed in epoch 2
    killed = subprocess.run(train, cwd=REPO, capture_output=True, text=True, env=env)
    assert killed.returncode != 0
    quick = tmp_path / "study-quick"
    assert not (quick / "store" / "mgnet").exists()  # nothing finished yet
    kept = subprocess.run(
        [*study, "--store_unfinished"], cwd=REPO, capture_output=True, text=True
    )
    assert kept.returncode == 0, kept.stderr[-3000:]
    unfinished = quick / "store" / "mgnet" / "unfinished"
    assert "stored mgnet after epoch 1" in kept.stdout
    assert json.loads((unfinished / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    assert (unfinished / "backup" / "latest.weights.h5").read_bytes() == (
        quick / "mgnet" / "backup" / "latest.weights.h5"
    ).read_bytes()
    import shutil  # noqa: PLC0415

    shutil.rmtree(quick / "mgnet")  # a new machine: only the store has the run
    resumed = subprocess.run(train, cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "train mgnet: resumes after epoch 1" in resumed.stdout
    with open(quick / "mgnet" / "metrics.csv") as file:
        assert [row.split(",")[0] for row in file.read().splitlines()[1:]] == ["1", "2"]
    # Finished: the model is stored and the resume state is gone from the store.
    assert (quick / "store" / "mgnet" / "final.keras").exists()
    assert not unfinished.exists()


def _in_study(code, study_flags=()):
    """The stdout lines of `code` run after `import translated_fashion_mnist as study`
    in a fresh interpreter (the study's absl flags share names with train.py's), the
    study's flags parsed from `study_flags`."""
    script = (
        "import sys, json; sys.path[:0] = ['.', 'experiments']; sys.argv = ['study']\n"
        "import translated_fashion_mnist as study\n"
        f"study.FLAGS(['study', *{list(study_flags)!r}])\n"
        + code
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()


def _stale_settings(pairs, study_flags=()):
    """{config path: the study's `stale_settings(path, model, name=run)`} for (path,
    model) or (path, model, run) tuples (`_in_study`)."""
    triples = [(*pair, None) if len(pair) == 2 else tuple(pair) for pair in pairs]
    code = f"print(json.dumps({{p: study.stale_settings(p, m, name=n) for p, m, n in {triples!r}}}))\n"
    return json.loads(_in_study(code, study_flags)[-1])


def test_study_names_a_stored_run_of_another_recipe(tmp_path):
    """A run trained with an older preset is not restored as if it were today's: the
    study names the settings that differ (an FF-Net is not held to the localization's,
    which it does not have; an option the run predates counts as its default)."""
    sys.path.insert(0, REPO)
    import presets  # noqa: PLC0415

    today = presets.preset("translated_fashion_mnist")
    runs = {
        "same": dict(today),
        "older": {k: v for k, v in today.items() if k != "shift_consistency"},
        "placed": {**today, "placement": "elsewhere"},
        "shorter": {**today, "epochs": 3},
        "ff": {**today, "num_glimpses": 1, "downsample": 1.0, "placement": "elsewhere"},
        "ff_glimpses": {**today, "num_glimpses": 5, "downsample": 1.0},
    }
    for name, config in runs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
    out = _stale_settings(
        [(str(tmp_path / f"{name}.json"), "ff" if name.startswith("ff") else "mgnet") for name in runs]
    )
    out = {os.path.basename(path)[: -len(".json")]: stale for path, stale in out.items()}
    assert out["same"] == [] and out["older"] == [] and out["ff"] == []
    assert out["placed"] == [f"placement='elsewhere' (preset: {today['placement']!r})"]
    assert out["shorter"] == [f"epochs=3 (preset: {today['epochs']})"]
    assert out["ff_glimpses"] == ["num_glimpses=5 (preset: 1)"]


def test_a_run_with_its_own_flags_is_held_to_them(tmp_path):
    """FF-Net seed 1 trains clipped (RUN_FLAGS): its store must hold a clipped run, and
    the other FF-Net runs an unclipped one; an option the run predates counts as off."""
    sys.path.insert(0, REPO)
    import presets  # noqa: PLC0415

    today = presets.preset("translated_fashion_mnist")
    assert today["global_clipnorm"] == 0.0  # the preset itself does not clip
    ff = {**today, "num_glimpses": 1, "downsample": 1.0}
    clipped = {**ff, "global_clipnorm": 1.0}
    older = {k: v for k, v in ff.items() if k != "global_clipnorm"}
    for name, config in {"ff": ff, "clipped": clipped, "older": older}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
    path = lambda name: str(tmp_path / f"{name}.json")  # noqa: E731
    cases = [
        (path("ff"), "ff", "ff"),
        (path("clipped"), "ff", "ff_seed1"),
        (path("older"), "ff", "ff_seed1"),
    ]
    out = _stale_settings(cases)
    assert out[path("ff")] == []
    assert out[path("clipped")] == []
    assert out[path("older")] == ["global_clipnorm=0.0 (preset: 1.0)"]
    # ... and the seed-0 run may not be the clipped one.
    assert _stale_settings([(path("clipped"), "ff", "ff")]) == {
        path("clipped"): ["global_clipnorm=1.0 (preset: 0.0)"]
    }


OFFICIAL_SCHEDULE = [
    "--recipe_name=official_schedule",
    "--recipe_flags=--warmup_fraction=0.2",
    "--recipe_flags=--cycle_momentum",
    "--recipe_flags=--weight_decay_mode=coupled",
    "--recipe_flags=--weight_decay=1e-4",
]
# The preset of before 2026-12-04: one localization head, no lookahead loss. The
# official-schedule candidate and the MGNet runs moved to the no_lookahead store were
# trained with it.
NO_LOOKAHEAD = [
    "--recipe_flags=--nofirst_localization",
    "--recipe_flags=--lookahead=0",
    "--recipe_flags=--lookahead_start=0",
]


def test_a_candidate_recipe_holds_every_run_to_its_flags(tmp_path):
    """--recipe_flags trains every run with a candidate recipe: a run of today's
    preset is stale against it, a run of the candidate is not, and the model's own
    flags still win over the candidate's."""
    sys.path.insert(0, REPO)
    import presets  # noqa: PLC0415

    today = presets.preset("translated_fashion_mnist")
    assert today["warmup_fraction"] != 0.2 and not today["cycle_momentum"]
    candidate = {**today, "warmup_fraction": 0.2, "cycle_momentum": True}
    for name, config in {"today": today, "candidate": candidate}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
    flags = ["--recipe_flags=--warmup_fraction=0.2", "--recipe_flags=--cycle_momentum=t",
             "--recipe_flags=--num_glimpses=3", "--recipe_name=trial"]
    path = lambda name: str(tmp_path / f"{name}.json")  # noqa: E731
    out = _stale_settings([(path("today"), "mgnet"), (path("candidate"), "mgnet")], flags)
    assert out[path("candidate")] == ["num_glimpses=5 (preset: 3)"]
    assert out[path("today")] == [
        "cycle_momentum=False (preset: True)",
        "num_glimpses=5 (preset: 3)",
        f"warmup_fraction={today['warmup_fraction']!r} (preset: 0.2)",
    ]
    # FF-Net's --num_glimpses=1 comes after the candidate's --num_glimpses=3.
    ff = {**candidate, "num_glimpses": 1, "downsample": 1.0}
    (tmp_path / "ff.json").write_text(json.dumps(ff))
    assert _stale_settings([(path("ff"), "ff")], flags) == {path("ff"): []}
    # The committed candidate's MGNet is of its recipe (strings and floats too) on the
    # preset of its day, and not of today's preset: 4 settings of the candidate and the
    # 3 of the first localization head since.
    stored = os.path.join(
        REPO, "experiments", "results", "translated_fashion_mnist_60ep_official_schedule", "mgnet", "config.json"
    )
    assert _stale_settings([(stored, "mgnet")], OFFICIAL_SCHEDULE + NO_LOOKAHEAD) == {stored: []}
    stale = _stale_settings([(stored, "mgnet")], OFFICIAL_SCHEDULE)[stored]
    assert sorted(s.split("=")[0] for s in stale) == ["first_localization", "lookahead", "lookahead_start"]
    assert len(_stale_settings([(stored, "mgnet")])[stored]) == 7


def _configure(cases):
    """For each list of study flags in `cases`, the study's output paths after
    `configure()`, or its error (one interpreter, flags parsed afresh per case)."""
    code = (
        "out = []\n"
        f"for flags in {[list(c) for c in cases]!r}:\n"
        "    study.FLAGS.unparse_flags(); study.FLAGS(['study', *flags])\n"
        "    try:\n"
        "        study.configure()\n"
        "    except Exception as error:\n"
        "        out.append(str(error)); continue\n"
        "    out.append({k: study.FLAGS[k].value for k in "
        "('output_dir', 'store_dir', 'results', 'images_dir', 'checkpoints_dir')})\n"
        "print(json.dumps(out))\n"
    )
    return json.loads(_in_study(code)[-1])


def test_a_candidate_recipe_needs_its_name_and_publishes_nothing(tmp_path):
    """A candidate's store, report, pictures and models are its own, never the
    preset's or the repository's; a bad candidate is refused by name."""
    docs, checkpoints = os.path.join(REPO, "docs"), os.path.join(REPO, "checkpoints")
    mine = str(tmp_path / "mine")
    named = ["--recipe_name=trial", "--recipe_flags=--warmup_fraction=0.2"]
    refusals = {
        "--recipe_flags needs --recipe_name": ["--recipe_flags=--warmup_fraction=0.2"],
        "--recipe_name='trial' needs the candidate's --recipe_flags": ["--recipe_name=trial"],
        "--recipe_name='../x': expected letters, digits": [*named, "--recipe_name=../x"],
        "--no_such is no setting of the preset": [*named, "--recipe_flags=--no_such=1"],
        "--cycle_momentun is not a boolean setting": [*named, "--recipe_flags=--cycle_momentun"],
        "expected a boolean": [*named, "--recipe_flags=--cycle_momentum=maybe"],
        "is not a flag": [*named, "--recipe_flags=warmup_fraction=0.2"],
        "cannot be compared": [*named, "--recipe_flags=--mean=0.2"],
        "give the epochs with the study's --epochs": [*named, "--recipe_flags=--epochs=30"],
    }
    candidates = [OFFICIAL_SCHEDULE, [*OFFICIAL_SCHEDULE, "--quick"], [*OFFICIAL_SCHEDULE, f"--output_dir={mine}"]]
    unfinished = ["--recipe_name=official_schedule", "--store_unfinished"]
    out = _configure([[], *candidates, unfinished, *refusals.values()])
    preset, candidate, quick, elsewhere, kept = out[:5]
    assert preset["results"] == os.path.join(docs, "results.md")
    assert preset["store_dir"] == os.path.join(REPO, "experiments", "results", "translated_fashion_mnist_60ep")
    store = os.path.join(REPO, "experiments", "results", "translated_fashion_mnist_60ep_official_schedule")
    assert candidate["output_dir"] != preset["output_dir"] and elsewhere["output_dir"] == mine
    for paths in (candidate, quick, elsewhere):
        for key in ("results", "images_dir", "checkpoints_dir"):
            assert paths[key].startswith(paths["output_dir"] + os.sep), (key, paths)
            assert not paths[key].startswith((docs, checkpoints)), (key, paths)
    assert candidate["store_dir"] == elsewhere["store_dir"] == store
    assert quick["store_dir"] == os.path.join(quick["output_dir"], "store")
    # --store_unfinished of a candidate needs only its name.
    assert kept["store_dir"] == store
    for message, error in zip(refusals, out[5:]):
        assert isinstance(error, str) and message in error, (message, error)


def test_class_table_puts_the_gap_where_mgnet_loses():
    """By hand: FF-Net's two seeds get 90 and 80% on every class, MGNet's loses 10
    points on coat after 3 glimpses (class 4) and none after 5: the whole gap is coat's."""
    code = textwrap.dedent(
        """
        import sys, json; sys.path[:0] = ['.', 'experiments']; sys.argv = ['study']
        import translated_fashion_mnist as study
        study.FLAGS(['study'])
        def run(per_glimpse):
            return {"clean": {"clean": {"per_class": {"count": [100] * 10, "accuracy": per_glimpse}}}}
        ff = lambda a: run([[a] for _ in range(10)])
        mg = run([[0.85, 0.85, 0.85 - 0.1 * (k == 4), 0.85, 0.85] for k in range(10)])
        results = {"ff": ff(0.9), "ff_seed1": ff(0.8), "mgnet": mg, "mgnet_seed1": mg}
        print(json.dumps(study.class_table(results).splitlines()))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = json.loads(result.stdout.strip().splitlines()[-1])
    rows = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ") for line in lines[2:]}
    assert len(rows) == 10
    assert rows["coat"] == ["coat", "100", "85.00", "75.00 (-10.00)", "85.00 (+0.00)", "100 %"]
    assert rows["bag"] == ["bag", "100", "85.00", "85.00 (+0.00)", "85.00 (+0.00)", "0 %"]


def test_pictures_of_an_earlier_run_do_not_stay_behind(tmp_path):
    """A rerun that picks other pictures removes the ones only the earlier run linked,
    and leaves another model's pictures (mgnet_noise beside mgnet) alone."""
    source = tmp_path / "source"
    source.mkdir()
    destination = tmp_path / "images"
    destination.mkdir()
    for old in ("mgnet_wrong_example_006_label_4.png", "mgnet_right_example_000_label_9.png",
                "mgnet_noise_wrong_example_000_label_9.png", "early_exit.png"):
        (destination / old).write_bytes(b"old")
    details = []
    for index, (label, prediction) in enumerate([(9, 9), (2, 2), (7, 5)]):
        path = source / f"example_{index:03d}_label_{label}.png"
        path.write_bytes(b"new")
        details.append({"path": str(path), "label": label, "predictions": [prediction]})
    code = textwrap.dedent(
        f"""
        import sys, json; sys.path[:0] = ['.', 'experiments']; sys.argv = ['study']
        import translated_fashion_mnist as study
        study.FLAGS(['study', '--results={tmp_path / "results.md"}'])
        results = {{"mgnet": {{"clean": {{"picture_predictions": {json.dumps(details)}}}}}}}
        print(json.dumps(study.choose_pictures(results, "mgnet", {str(destination)!r}).splitlines()))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in destination.iterdir()) == [
        "early_exit.png",
        "mgnet_noise_wrong_example_000_label_9.png",
        "mgnet_right_example_000_label_9.png",
        "mgnet_right_example_001_label_2.png",
        "mgnet_wrong_example_002_label_7.png",
    ]
    assert (destination / "mgnet_right_example_000_label_9.png").read_bytes() == b"new"
    table = "\n".join(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "mgnet_wrong_example_006" not in table and "mgnet_wrong_example_002_label_7.png" in table


@pytest.mark.parametrize(
    "recipe, study_flags, runs",
    [
        (None, [], {"ff", "ff_seed1", "ff_noise", "mgnet", "mgnet_seed1"}),
        # The MGNet runs of the preset before the first localization head, moved aside.
        ("no_lookahead", NO_LOOKAHEAD, {"mgnet", "mgnet_seed1", "mgnet_seed2", "mgnet_noise"}),
    ],
)
def test_the_committed_study_runs_are_of_their_recipe(recipe, study_flags, runs):
    """Every run kept in the study's store (finished or unfinished) was trained with
    today's preset, or the study would refuse to restore it; the runs moved aside when
    the preset changed are of the candidate recipe that names the preset before."""
    sys.path.insert(0, REPO)
    import presets  # noqa: PLC0415

    epochs = presets.preset("translated_fashion_mnist")["epochs"]
    suffix = f"_{recipe}" if recipe else ""
    store = os.path.join(REPO, "experiments", "results", f"translated_fashion_mnist_{epochs}ep{suffix}")
    assert os.path.isdir(store), f"no committed study at the preset's {epochs} epochs: {store}"
    configs = sorted(
        os.path.relpath(os.path.join(root, "config.json"), store)
        for root, _, files in os.walk(store)
        if "config.json" in files
    )
    assert runs <= {path.split(os.sep)[0] for path in configs}, store
    if recipe:
        study_flags = [f"--recipe_name={recipe}", *study_flags]
    # mgnet_seed1/config.json -> model mgnet, run mgnet_seed1
    out = _stale_settings(
        [
            (os.path.join(store, path), path.split(os.sep)[0].split("_seed")[0], path.split(os.sep)[0])
            for path in configs
        ],
        study_flags,
    )
    out = {os.path.relpath(path, store): stale for path, stale in out.items()}
    assert set(out) == set(configs)
    assert out == {path: [] for path in configs}


@pytest.mark.parametrize(
    "path",
    [
        "experiments/results/translated_fashion_mnist_30ep/mgnet/final.keras",
        "experiments/results/translated_fashion_mnist_30ep/ff/eval/clean.json",
        "experiments/results/translated_fashion_mnist_60ep/mgnet/final.keras",
        "experiments/results/translated_fashion_mnist_60ep_no_lookahead/mgnet_noise/final.keras",
        "experiments/results/translated_fashion_mnist_60ep_official_schedule/ff/unfinished/backup/latest.weights.h5",
        "experiments/results/localization_ablation/glimpse40_30ep/final.keras",
    ],
)
def test_git_keeps_what_the_stores_hold(path):
    """The stores exist to be committed: a model or report in one must not be git-ignored
    (an ignored final.keras was silently left out of a commit, and a later session on a
    new machine had to train it again)."""
    if not os.path.isdir(os.path.join(REPO, ".git")) and not os.path.isfile(
        os.path.join(REPO, ".git")
    ):
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", path], cwd=REPO
    ).returncode
    assert ignored == 1, f"{path} is git-ignored; .gitignore must keep the stores"


def _experiment(name):
    """The module of experiments/<name>.py (its flags are defined only when run)."""
    sys.path.insert(0, os.path.join(REPO, "experiments"))
    return importlib.import_module(name)


def _oracle():
    return _experiment("glimpse_oracle")


def test_oracle_error_has_the_stated_median():
    oracle = _oracle()
    rng = np.random.default_rng(0)
    lengths = np.hypot(*(rng.standard_normal((2, 200_000)) * oracle.sigma_for_median(7.0)))
    assert abs(np.median(lengths) - 7.0) < 0.05


def test_oracle_exact_glimpse_is_the_item_and_errors_move_it():
    """The pixel-aligned window on the box gives back the item's own pixels; a centre
    error shifts the window by that many pixels."""
    import tensorflow as tf  # noqa: PLC0415

    from mgnet_tf.layers import GlimpseSampler  # noqa: PLC0415

    oracle = _oracle()
    items = np.random.default_rng(1).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    labels = np.arange(16) % 10
    data = oracle.glimpse_inputs(items, labels, False, oracle.PIXEL_ALIGNED, 0.0, 0, 16)
    (canvas, params), got_labels = next(iter(data))
    glimpses = GlimpseSampler((28, 28))(canvas, params).numpy()[..., 0]
    np.testing.assert_allclose(glimpses, items / 255.0, atol=1e-4)
    np.testing.assert_array_equal(got_labels.numpy(), labels)
    off = oracle.glimpse_inputs(items, labels, False, oracle.PIXEL_ALIGNED, 7.0, 0, 16)
    (_, off_params), _ = next(iter(off))
    moved = np.hypot(*((off_params.numpy() - params.numpy())[:, 1:] * 111 / 2).T)
    assert 3.0 < np.median(moved) < 11.0  # 16 draws around a median of 7 px
    assert tf.reduce_all(off_params[:, 0] == params[:, 0])


def test_oracle_margin_shrinks_items_into_the_middle_of_their_box():
    """margin20 puts a 28 px item into a 20 px square centred in its 28 px box (the
    4 px border black), keeps a uniform item's value, and keeps the average of a
    pattern; a size outside 1-28 px is refused, naming it."""
    oracle = _oracle()
    white = np.full((2, 28, 28), 255, np.uint8)
    boxed = oracle.with_margin(white, 20)
    assert boxed.shape == (2, 28, 28) and boxed.dtype == np.uint8
    np.testing.assert_array_equal(boxed[:, 4:24, 4:24], 255)
    inside = np.zeros((28, 28), bool)
    inside[4:24, 4:24] = True
    assert not boxed[:, ~inside].any()
    # Area averaging: a checkerboard of 0/254 shrinks to about its mean, 127.
    checker = ((np.indices((28, 28)).sum(0) % 2) * 254).astype(np.uint8)[None]
    assert abs(oracle.with_margin(checker, 14)[0, 7:21, 7:21].astype(float).mean() - 127) < 2
    assert oracle.with_margin(white, 28) is white
    with pytest.raises(ValueError, match="item side 29 px"):
        oracle.with_margin(white, 29)
    assert oracle.condition("margin20_err3.5")[1:] == (0.25, 28, 3.5, 20)
    assert oracle.condition("err3.5")[4] == 28


def test_oracle_placed_mgnet_looks_where_the_oracle_says():
    """Glimpse 1 is the whole canvas; glimpses 2..T are cut at the oracle's params, so
    the glimpse classifier of glimpse 2 is the backbone's answer on that window."""
    import presets  # noqa: PLC0415

    oracle = _oracle()
    model = oracle.oracle_placed_mgnet(presets.preset("translated_fashion_mnist"), seed=0)
    rng = np.random.default_rng(2)
    canvas = rng.uniform(0, 1, (3, 112, 112, 1)).astype("float32")
    params = np.array([[0.25, -0.4, 0.3], [0.3, 0.5, -0.6], [0.25, 0.0, 0.0]], "float32")
    out = model((canvas, params), training=False)
    assert out["logits"].shape == (3, model.num_glimpses, 10)
    got = np.asarray(out["glimpse_params"])
    np.testing.assert_allclose(got[:, 0], [[1.0, 0.0, 0.0]] * 3)
    for step in range(1, model.num_glimpses):
        np.testing.assert_allclose(got[:, step], params)
    window = model.sampler(model.normalize(canvas), params)
    expected = model.glimpse_classifier(model.backbone(window, training=False))
    np.testing.assert_allclose(np.asarray(out["glimpse_logits"])[:, 1], np.asarray(expected), atol=1e-5)
    whole = model.sampler(model.normalize(canvas), np.tile([[1.0, 0.0, 0.0]], (3, 1)).astype("float32"))
    assert not np.allclose(np.asarray(window), np.asarray(whole), atol=1e-3)


def test_experiment_modules_import_beside_train_py():
    """CI imports the experiment scripts in the same process as train.py, whose absl
    flags share names (--epochs, --seed): the scripts define theirs only when run."""
    code = (
        "import sys; sys.path[:0] = ['.', 'experiments']\n"
        "import train, glimpse_oracle, placement_probe, paired_gap\n"
        "print('imported')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported" in result.stdout


def _probe():
    return _experiment("placement_probe")


def test_probe_box_params_centre_the_window_on_the_box():
    from mgnet_tf import localization  # noqa: PLC0415

    probe = _probe()
    rng = np.random.default_rng(3)
    top_left = rng.uniform(0, 84, (50, 2))
    boxes = np.concatenate([top_left, top_left + 28], axis=1)  # (top, left, bottom, right)
    centres = probe.box_params(boxes)
    for scale in (0.25, 0.4):
        params = np.concatenate([np.full((50, 1), scale), centres], axis=1)
        windows = localization.glimpse_boxes(params, 112)
        np.testing.assert_allclose(localization.center_distance(windows, boxes), 0.0, atol=1e-9)
    # A box at the canvas's middle pixel centre (55.5 + 0.5 in glimpse_boxes' pixel
    # convention, the centre of 112 px) is x = y = 0.
    np.testing.assert_allclose(probe.box_params([[42.0, 42.0, 70.0, 70.0]]), [[0.0, 0.0]], atol=1e-12)


def test_probe_runner_replays_the_model_and_replaces_only_later_glimpses():
    import tensorflow as tf  # noqa: PLC0415

    from mgnet_tf import MGNet  # noqa: PLC0415

    probe = _probe()
    model = MGNet(
        backbone="vanilla_cnn", num_classes=4, image_size=32, num_glimpses=3, downsample=2, channels=1
    )
    images = tf.random.uniform((5, 32, 32, 1), seed=1)
    expected = model(images, training=False)
    run = probe.make_runner(model)
    oracle = tf.constant(np.tile([[0.3, 0.2, -0.4]], (5, 1)), tf.float32)
    logits, glimpse_logits, used = run(images, oracle, "learned")
    np.testing.assert_allclose(logits.numpy(), expected["logits"].numpy(), atol=1e-5)
    np.testing.assert_allclose(used.numpy(), expected["glimpse_params"].numpy(), atol=1e-6)
    np.testing.assert_allclose(glimpse_logits.numpy(), expected["glimpse_logits"].numpy(), atol=1e-5)
    _, _, used = run(images, oracle, "oracle")
    np.testing.assert_allclose(used.numpy()[:, 0], [[1.0, 0.0, 0.0]] * 5)
    np.testing.assert_allclose(used.numpy()[:, 1:], np.tile(oracle.numpy()[:, None], (1, 2, 1)))
    logits_centre, _, used = run(images, oracle, "centre")
    # Its own size at glimpse 2 (the first glimpse is the same), the oracle's centre.
    np.testing.assert_allclose(used.numpy()[:, 1, 0], expected["glimpse_params"].numpy()[:, 1, 0], atol=1e-6)
    np.testing.assert_allclose(used.numpy()[:, 1:, 1:], np.tile(oracle.numpy()[:, None, 1:], (1, 2, 1)))
    assert not np.allclose(logits_centre.numpy()[:, 1:], expected["logits"].numpy()[:, 1:], atol=1e-4)
    # "second": the oracle's glimpse 2, then what the localization network makes of it.
    _, _, used = run(images, oracle, "second")
    np.testing.assert_allclose(used.numpy()[:, 1], oracle.numpy(), atol=1e-7)
    x = model.normalize(images)
    first = model.glimpse_step(x, None, model.first_glimpse_params(5), training=False)
    second = model.glimpse_step(x, first["tokens"], oracle, training=False)
    np.testing.assert_allclose(
        used.numpy()[:, 2], model.localization(second["fused"], oracle).numpy(), atol=1e-6
    )
    assert not np.allclose(used.numpy()[:, 2], expected["glimpse_params"].numpy()[:, 2], atol=1e-4)
    # "second_centre": glimpse 2 at its own size on the oracle's centre, then the model's.
    _, _, used = run(images, oracle, "second_centre")
    own_second = expected["glimpse_params"].numpy()[:, 1]
    np.testing.assert_allclose(used.numpy()[:, 1, 0], own_second[:, 0], atol=1e-6)
    np.testing.assert_allclose(used.numpy()[:, 1, 1:], oracle.numpy()[:, 1:], atol=1e-7)
    placed = tf.constant(used.numpy()[:, 1])
    second = model.glimpse_step(x, first["tokens"], placed, training=False)
    np.testing.assert_allclose(
        used.numpy()[:, 2], model.next_glimpse_params(second, placed).numpy(), atol=1e-6
    )


def test_probe_offset_readout_recovers_a_linear_code_and_not_noise():
    probe = _probe()
    rng = np.random.default_rng(0)
    offsets = rng.uniform(-10, 10, (400, 2))
    mixing = rng.standard_normal((2, 16))
    coded = offsets @ mixing + 0.01 * rng.standard_normal((400, 16)) + 3.0
    readout = probe.offset_readout(coded, offsets, 300)
    np.testing.assert_allclose(readout, offsets[300:], atol=0.05)
    # Features that know nothing of the offset: no better than its spread (5.8 px).
    noise = rng.standard_normal((400, 16))
    residual = offsets[300:] - probe.offset_readout(noise, offsets, 300)
    assert np.sqrt(np.mean(residual**2)) > 5.0


def test_probe_command_stores_its_figures(tmp_path, idx_dir):
    """The script on an untrained 112 px MGNet: every condition stored, the table written
    between its markers, the rest of the results file kept."""
    import keras  # noqa: PLC0415

    from mgnet_tf import MGNet  # noqa: PLC0415

    model = MGNet(
        backbone="vanilla_cnn", num_classes=10, image_size=112, num_glimpses=3, downsample=4, channels=1
    )
    model(np.zeros((1, 112, 112, 1), np.float32))
    path = tmp_path / "net" / "final.keras"
    path.parent.mkdir()
    model.save(path)
    results = tmp_path / "results.md"
    results.write_text("# Results\n\nkept\n<!-- probe:begin -->\nold\n<!-- probe:end -->\n")
    command = [
        sys.executable, "experiments/placement_probe.py", f"--model={path}", f"--data_dir={idx_dir}",
        "--batch_size=5", f"--results={results}", f"--store_dir={tmp_path / 'store'}",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    stored = json.loads((tmp_path / "store" / "net.json").read_text())
    assert stored["test_examples"] == 12
    assert set(stored["conditions"]) == set(_probe().CONDITIONS)
    for entry in stored["conditions"].values():
        assert len(entry["top1_per_glimpse"]) == 3
    np.testing.assert_allclose(
        stored["conditions"]["box_s0.25"]["median_center_error_px"][1:], 0.0, atol=1e-6
    )
    refined = stored["refinement"]
    assert refined["fitted_images"] == 9 and refined["held_out_images"] == 3
    assert 0 < refined["median_error_glimpse2_px"] <= 10 * 2**0.5
    assert refined["median_error_glimpse3_px"] >= 0 and 0.2 <= refined["mean_scale_glimpse3"] <= 0.5
    text = results.read_text()
    assert "kept" in text and "old" not in text and "the model's own glimpses" in text
    assert "linear readout" in text
    bad = subprocess.run(
        [sys.executable, "experiments/placement_probe.py", f"--model={tmp_path / 'none.keras'}"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert bad.returncode != 0 and "none.keras" in bad.stderr


def test_mcnemar_exact_is_the_two_sided_binomial_tail():
    mcnemar = _experiment("paired_gap").mcnemar_exact
    assert mcnemar(0, 5) == pytest.approx(2 / 32)  # 5 discordant images, all FF-Net's
    assert mcnemar(9, 1) == pytest.approx(2 * (1 + 10) / 1024)
    assert mcnemar(3, 3) == 1.0 and mcnemar(0, 0) == 1.0
    # A test split's worth of discordant images (past a float's 2**1023): the normal
    # approximation with continuity correction, z = (|b - c| - 1) / sqrt(b + c).
    z = (600 - 500 - 1) / np.sqrt(1100)
    assert mcnemar(600, 500) == pytest.approx(math.erfc(z / np.sqrt(2)), rel=0.1)


def test_paired_gap_counts_the_discordant_images_and_brackets_the_gap():
    paired_gap = _experiment("paired_gap").paired_gap
    # 100 images: both right on 70, only FF-Net on 10, only MGNet on 5, neither on 15.
    ff = np.array([1] * 70 + [1] * 10 + [0] * 5 + [0] * 15, bool)
    mgnet = np.array([1] * 70 + [0] * 10 + [1] * 5 + [0] * 15, bool)
    result = paired_gap(ff, mgnet, resamples=20000, seed=0)
    assert result["ff_top1"] == pytest.approx(80.0) and result["mgnet_top1"] == pytest.approx(75.0)
    assert result["gap_points"] == pytest.approx(5.0)
    assert (result["ff_only_right"], result["mgnet_only_right"]) == (10, 5)
    # The normal approximation of the paired difference: sd of the per-image +1/-1/0
    # over sqrt(100), 3.84 points, so the 95% interval is about 5 +- 7.5.
    half = 1.96 * 100 * np.sqrt((0.15 - 0.05**2) / 100)
    low, high = result["interval_points"]
    assert low < 5.0 < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    with pytest.raises(ValueError, match=r"\(3,\) and \(4,\)"):
        paired_gap(ff[:3], mgnet[:4], resamples=10, seed=0)


def test_paired_gap_command_stores_each_glimpse_count(tmp_path, idx_dir):
    from mgnet_tf import MGNet  # noqa: PLC0415

    paths = {}
    for name, glimpses, downsample in (("ff", 1, 1), ("mgnet", 3, 4)):
        model = MGNet(
            backbone="vanilla_cnn", num_classes=10, image_size=112, num_glimpses=glimpses,
            downsample=downsample, channels=1,
        )
        model(np.zeros((1, 112, 112, 1), np.float32))
        paths[name] = tmp_path / f"{name}.keras"
        model.save(paths[name])
    command = [
        sys.executable, "experiments/paired_gap.py", f"--ff={paths['ff']}", f"--mgnet={paths['mgnet']}",
        f"--data_dir={idx_dir}", "--batch_size=5", "--resamples=100", "--name=tiny",
        f"--store_dir={tmp_path / 'store'}",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    stored = json.loads((tmp_path / "store" / "tiny.json").read_text())
    rows = stored["after_glimpses"]
    assert stored["test_examples"] == 12 and len(rows) == 3
    for row in rows:
        assert row["images"] == 12
        assert row["ff_top1"] == rows[0]["ff_top1"]
        assert row["gap_points"] == pytest.approx(row["ff_top1"] - row["mgnet_top1"])
        assert row["gap_points"] == pytest.approx(
            100 * (row["ff_only_right"] - row["mgnet_only_right"]) / 12
        )
    assert "| 3 |" in result.stdout
    swapped = subprocess.run(
        command[:2] + [f"--ff={paths['mgnet']}", f"--mgnet={paths['ff']}"] + command[4:],
        cwd=REPO, capture_output=True, text=True,
    )
    assert swapped.returncode != 0 and "must have 1 glimpse" in swapped.stderr
    missing = subprocess.run(
        command[:2] + [f"--ff={tmp_path / 'none.keras'}"] + command[3:],
        cwd=REPO, capture_output=True, text=True,
    )
    assert missing.returncode != 0 and "none.keras" in missing.stderr
