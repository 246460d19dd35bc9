"""train.py end to end on the tiny fixtures: two steps per data set kind, and resume."""

import csv
import json
import os

import numpy as np
import pytest
from absl import app, flags

import train
from mgnet_tf import MGNet
from training import checkpoints


@pytest.fixture
def run_train():
    """Runs train.main in-process with the given flags, resetting them afterwards."""

    def run(*args, entry=train.main):
        flags.FLAGS(["train.py", *args])
        try:
            entry([])
        finally:
            flags.FLAGS.unparse_flags()

    yield run
    flags.FLAGS.unparse_flags()


def _quick(model_dir, *extra):
    return (
        f"--model_dir={model_dir}",
        "--epochs=1",
        "--steps_per_epoch=2",
        "--validation_steps=1",
        "--batch_size=4",
        *extra,
    )


def _config(model_dir):
    return json.loads((model_dir / "config.json").read_text())


def _epochs(model_dir):
    with open(model_dir / "metrics.csv") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def _check_outputs(model_dir):
    for name in (
        "config.json",
        "final.keras",
        "metrics.csv",
        "best.keras",
        "saved_model",
    ):
        assert (model_dir / name).exists(), name
    assert not (model_dir / "backup").exists()  # removed once training finished
    logs = os.listdir(model_dir / "logs")
    assert {"train", "validation", "glimpses"} <= set(logs)
    assert os.listdir(model_dir / "logs" / "glimpses")


def test_translated_fashion_mnist(run_train, tmp_path, idx_dir):
    model_dir = tmp_path / "run"
    run_train(
        "--dataset=translated_fashion_mnist",
        f"--data_dir={idx_dir}",
        *_quick(model_dir),
        "--glimpses=2",  # the flag's old name still works
    )
    _check_outputs(model_dir)
    config = _config(model_dir)
    # The preset (Appendix B), with the flag given overriding it.
    assert config["backbone"] == "vanilla_cnn" and config["image_size"] == 112
    assert config["downsample"] == 4 and config["num_glimpses"] == 2
    # config.json -> MGNet -> get_config is one hop and round-trips; it is the
    # model the run saved.
    model_config = config["model"]
    assert model_config["num_glimpses"] == 2 and model_config["image_size"] == 112
    assert model_config["crop_fraction"] is None and model_config["channels"] == 1
    rebuilt = MGNet.from_config(model_config)
    assert json.loads(json.dumps(rebuilt.get_config())) == model_config
    saved = checkpoints.load_model(str(model_dir / "final.keras"))
    assert json.loads(json.dumps(saved.get_config())) == model_config
    # The training settings that are arguments build the same model in one hop.
    rebuilt = MGNet.from_settings(config, num_classes=10, channels=1, name=model_config["name"])
    assert json.loads(json.dumps(rebuilt.get_config())) == model_config
    header = (model_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"acc_1", "acc_2", "val_acc_2", "learning_rate", "loss"} <= set(header)
    # Where the glimpses look, every epoch (the items' boxes are known here).
    assert {"val_scale_2", "val_iou_2", "val_center_error_2"} <= set(header)
    assert {"epoch_loss", "epoch_learning_rate", "epoch_acc_1", "epoch_acc_2"} <= _tags(
        model_dir / "logs" / "train"
    )
    assert {"epoch_acc_2"} <= _tags(model_dir / "logs" / "validation")
    assert _tags(model_dir / "logs" / "glimpses") == {"glimpses"}


def test_official_recipe_flags_reach_the_model_and_the_optimizer(
    run_train, tmp_path, idx_dir
):
    import keras  # noqa: PLC0415

    from mgnet_tf.optimizers import CoupledSGD  # noqa: PLC0415

    model_dir = tmp_path / "run"
    run_train(
        "--dataset=translated_fashion_mnist",
        f"--data_dir={idx_dir}",
        *_quick(model_dir),
        "--glimpses=2",
        "--glimpse_loss_from=2",
        "--initializer=torch",
        "--attention_bias",
        "--weight_decay=1e-4",
        "--weight_decay_mode=coupled",
        "--mean=0.1307",
        "--std=0.3081",
        "--size_penalty_mode=confident_last",
        "--global_loss_weights=0,1",
    )
    config = _config(model_dir)
    assert config["global_loss_weights"] == [0.0, 1.0]
    assert config["weight_decay_mode"] == "coupled" and config["mean"] == [0.1307]
    model = keras.saving.load_model(str(model_dir / "final.keras"))
    assert (model.glimpse_loss_from, model.initializer, model.attention_bias) == (
        2,
        "torch",
        True,
    )
    assert model.size_penalty_mode == "confident_last" and model.std == (0.3081,)
    assert model.global_loss_weights == (0.0, 1.0)
    assert isinstance(model.optimizer, CoupledSGD)
    assert model.optimizer.coupled_weight_decay == pytest.approx(1e-4)


def _tags(log_dir):
    """Summary tags written to a TensorBoard run directory."""
    from tensorboard.backend.event_processing import event_accumulator

    (events,) = log_dir.glob("events.out.tfevents.*")
    accumulator = event_accumulator.EventAccumulator(str(events), {"tensors": 0})
    accumulator.Reload()
    return set(accumulator.Tags()["tensors"])


def test_tiny_imagenet_resnet18_preset(run_train, tmp_path, tiny_imagenet_root):
    model_dir = tmp_path / "run"
    run_train(
        "--dataset=tiny_imagenet",
        "--backbone=resnet18",
        f"--data_dir={tiny_imagenet_root}",
        *_quick(model_dir),
    )
    _check_outputs(model_dir)
    config = _config(model_dir)
    assert (config["image_size"], config["num_glimpses"], config["downsample"]) == (
        64,
        3,
        2,
    )
    assert config["small_input"] is True and config["augment"] == "autoaugment"
    assert config["alpha"] == 0.6 and config["grad_scale"] == 0.02


@pytest.mark.parametrize(
    "dataset, root_fixture",
    [
        ("imagenet", "imagenet_root"),
        ("folder", "imagenet_root"),
        ("imagenet100", "imagenet101_root"),
    ],
)
def test_imagenet_like(run_train, tmp_path, request, dataset, root_fixture):
    model_dir = tmp_path / "run"
    run_train(
        f"--dataset={dataset}",
        f"--data_dir={request.getfixturevalue(root_fixture)}",
        "--backbone=vanilla_cnn",
        "--image_size=48",
        "--augment=randaugment",
        *_quick(model_dir),
    )
    _check_outputs(model_dir)
    assert _config(model_dir)["grad_scale"] == 0.01  # not ResNet-18: the paper's 0.01


def test_ff_net_baseline(run_train, tmp_path, idx_dir):
    model_dir = tmp_path / "run"
    run_train(
        "--dataset=translated_mnist",
        f"--data_dir={idx_dir}",
        *_quick(model_dir),
        "--glimpses=1",
        "--downsample=1",
    )
    assert _config(model_dir)["num_glimpses"] == 1
    assert (model_dir / "final.keras").exists()


def test_interrupted_run_resumes_where_it_stopped(
    run_train, tmp_path, idx_dir, monkeypatch, capfd
):
    model_dir = tmp_path / "run"
    args = (
        "--dataset=translated_fashion_mnist",
        f"--data_dir={idx_dir}",
        f"--model_dir={model_dir}",
        "--epochs=2",
        "--steps_per_epoch=2",
        "--validation_steps=1",
        "--batch_size=4",
        "--glimpses=2",
    )

    def interrupt(skipped):  # the last end-of-epoch callback
        raise KeyboardInterrupt  # what Ctrl-C or a preemption would do

    monkeypatch.setattr(train, "_report_skipped", interrupt)
    capfd.readouterr()
    # Ctrl-C: one line that says how to resume, a non-zero exit, no traceback.
    with pytest.raises(SystemExit) as stopped:
        run_train(*args, entry=train.run)
    assert stopped.value.code == 130
    err = capfd.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("train.py:")]
    assert "Interrupted" in line and "Epochs 1-1 are saved" in line
    assert "Rerun the same command to resume" in line
    assert (model_dir / "backup" / "training_metadata.json").exists()
    assert not (model_dir / "final.keras").exists()
    assert _epochs(model_dir) == [1]  # counted from 1, as on the console

    monkeypatch.undo()
    run_train(*args)
    assert _epochs(model_dir) == [1, 2]  # epoch 2 ran, epoch 1 was not repeated
    assert (model_dir / "final.keras").exists()
    assert not (model_dir / "backup").exists()


def test_finished_run_is_not_overwritten_without_asking(run_train, tmp_path, idx_dir):
    model_dir = tmp_path / "run"
    args = (
        "--dataset=translated_mnist",
        f"--data_dir={idx_dir}",
        *_quick(model_dir),
        "--glimpses=1",
    )
    run_train(*args)
    saved = (model_dir / "final.keras").stat().st_mtime_ns
    with pytest.raises(app.UsageError, match="--overwrite"):
        run_train(*args)
    assert (model_dir / "final.keras").stat().st_mtime_ns == saved
    (model_dir / "notes.txt").write_text("the user's")
    run_train(*args, "--overwrite")
    assert (model_dir / "final.keras").stat().st_mtime_ns != saved
    # The old run was moved aside whole, not deleted nor mixed with the new one.
    (old,) = tmp_path.glob("run.old-*")
    assert (old / "final.keras").stat().st_mtime_ns == saved
    assert (old / "notes.txt").read_text() == "the user's"
    assert len(list((old / "logs" / "train").glob("events.out.tfevents.*"))) == 1
    assert len(list((model_dir / "logs" / "train").glob("events.out.tfevents.*"))) == 1
    assert not (model_dir / "notes.txt").exists()
    assert _epochs(model_dir) == [1]


def test_init_from_starts_a_new_run_from_a_saved_models_weights(
    run_train, tmp_path, idx_dir
):
    first, second = tmp_path / "first", tmp_path / "second"
    data = ("--dataset=translated_mnist", f"--data_dir={idx_dir}", "--glimpses=2")
    run_train(*data, *_quick(first))
    trained = checkpoints.load_model(str(first / "final.keras"))
    # Another seed (other random weights) and a zero learning rate: whatever the
    # second run ends with, its trainable weights came from the first run's file.
    run_train(
        *data,
        *_quick(second),
        "--seed=3",
        "--learning_rate=0",
        f"--init_from={first / 'final.keras'}",
    )
    assert _config(second)["init_from"] == str(first / "final.keras")
    started = checkpoints.load_model(str(second / "final.keras"))
    fresh = train.build_model({**_config(second), "seed": 3}, 10, 1)
    pairs = list(zip(trained.trainable_weights, started.trainable_weights))
    assert len(pairs) == len(fresh.trainable_weights) > 10
    for theirs, ours in pairs:
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)


def test_resume_elsewhere_may_change_the_data_dir_and_drop_init_from(tmp_path):
    """A run stored unfinished resumes on another machine: its data may lie elsewhere
    and the model it started from may be gone (the backup holds the weights)."""
    model_dir = tmp_path / "run"
    (model_dir / "backup").mkdir(parents=True)
    saved = {"alpha": 0.6, "data_dir": "/old/data", "init_from": "/old/final.keras"}
    checkpoints.write_json(saved, str(model_dir / "config.json"))
    config = {"alpha": 0.6, "data_dir": "/new/data", "init_from": None}
    assert train.prepare_model_dir(str(model_dir), config, False) == "resume"
    with pytest.raises(app.UsageError, match=r"--alpha=0.5 \(the run has 0.6\)"):
        train.prepare_model_dir(str(model_dir), {**config, "alpha": 0.5}, False)


def test_an_ff_net_resumes_when_only_the_localization_settings_changed(tmp_path):
    """FF-Net (one glimpse) has no localization network: a preset's new placement or
    size penalty changes nothing in it, so its interrupted run resumes; an MGNet's
    does not, and neither does a change of the number of glimpses."""
    model_dir = tmp_path / "run"
    (model_dir / "backup").mkdir(parents=True)
    saved = {"num_glimpses": 1, "placement": "absolute", "size_penalty": 0.3, "alpha": 0.6}
    checkpoints.write_json(saved, str(model_dir / "config.json"))
    changed = {**saved, "placement": "spatial", "size_penalty": 0.1}
    assert train.prepare_model_dir(str(model_dir), changed, False) == "resume"
    with pytest.raises(app.UsageError, match=r"--alpha=0.5 \(the run has 0.6\)"):
        train.prepare_model_dir(str(model_dir), {**changed, "alpha": 0.5}, False)
    with pytest.raises(app.UsageError, match=r"--num_glimpses=5 \(the run has 1\)"):
        train.prepare_model_dir(str(model_dir), {**changed, "num_glimpses": 5}, False)
    checkpoints.write_json({**saved, "num_glimpses": 5}, str(model_dir / "config.json"))
    with pytest.raises(app.UsageError, match=r"--placement=spatial \(the run has absolute\)"):
        train.prepare_model_dir(str(model_dir), {**changed, "num_glimpses": 5}, False)


def test_init_from_a_missing_or_other_model_names_the_flag(run_train, tmp_path, idx_dir):
    data = ("--dataset=translated_mnist", f"--data_dir={idx_dir}")
    with pytest.raises(app.UsageError, match=r"--init_from=.*nowhere.keras does not exist"):
        run_train(*data, *_quick(tmp_path / "a"), f"--init_from={tmp_path / 'nowhere.keras'}")
    # FF-Net (one glimpse, no localization network) cannot start MGNet.
    run_train(*data, *_quick(tmp_path / "ff"), "--glimpses=1", "--downsample=1")
    with pytest.raises(
        app.UsageError, match=r"other weights than this run's.*num_glimpses=1 \(this run: 2\)"
    ):
        run_train(
            *data,
            *_quick(tmp_path / "mgnet"),
            "--glimpses=2",
            f"--init_from={tmp_path / 'ff' / 'final.keras'}",
        )


def test_resume_with_other_settings_is_refused(run_train, tmp_path, idx_dir):
    model_dir = tmp_path / "run"
    (model_dir / "backup").mkdir(parents=True)
    checkpoints.write_json({"alpha": 0.1}, str(model_dir / "config.json"))
    with pytest.raises(app.UsageError, match="interrupted run with other settings"):
        run_train(
            "--dataset=translated_mnist", f"--data_dir={idx_dir}", *_quick(model_dir)
        )


def test_resume_with_other_epochs_is_refused_naming_the_flag(
    run_train, tmp_path, idx_dir
):
    """The one-cycle schedule spans --epochs: a resumed run may not change it."""
    model_dir = tmp_path / "run"
    (model_dir / "backup").mkdir(parents=True)
    checkpoints.write_json({"epochs": 5}, str(model_dir / "config.json"))
    with pytest.raises(app.UsageError, match=r"--epochs=1 \(the run has 5\)"):
        run_train(
            "--dataset=translated_mnist", f"--data_dir={idx_dir}", *_quick(model_dir)
        )
    assert checkpoints.read_json(str(model_dir / "config.json")) == {"epochs": 5}


def test_bad_flag_is_one_message_and_a_pointer_to_help(run_train, tmp_path, capfd):
    capfd.readouterr()
    with pytest.raises(SystemExit) as stopped:
        run_train(
            "--dataset=translated_mnist",
            f"--model_dir={tmp_path}",
            "--alpha=1.5",
            entry=train.run,
        )
    assert stopped.value.code == 1
    err = capfd.readouterr().err
    assert err.splitlines() == [
        "train.py: --alpha=1.5 is invalid; expected in [0, 1]",
        "See python train.py --help for the flags.",
    ]


def test_full_disk_ends_in_one_message_naming_the_path(
    run_train, tmp_path, idx_dir, monkeypatch, capfd
):
    import errno  # noqa: PLC0415

    import keras  # noqa: PLC0415

    model_dir = tmp_path / "run"

    def full(self, filepath, *args, **kwargs):  # the backup's weights
        with open(filepath, "wb") as file:
            file.write(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    def exit_(code):
        raise SystemExit(code)

    monkeypatch.setattr(keras.Model, "save_weights", full)
    monkeypatch.setattr(train, "_hard_exit", exit_)
    capfd.readouterr()
    with pytest.raises(SystemExit) as stopped:
        run_train(
            "--dataset=translated_mnist",
            f"--data_dir={idx_dir}",
            *_quick(model_dir),
            "--glimpses=1",
            entry=train.run,
        )
    assert stopped.value.code == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("train.py:")]
    path = model_dir / "backup" / "latest.weights.h5"
    assert f"No space left on device while writing the weights and optimizer " \
        f"state to {path}" in line
    assert "nothing of this run is saved yet" in line
    assert "rerun the same command to resume" in line
    assert not list(model_dir.rglob(".tmp-*"))


def test_a_run_directory_from_before_the_flag_took_the_arguments_name_resumes(
    run_train, tmp_path, idx_dir
):
    """config.json files written before --glimpses became --num_glimpses say
    "glimpses": their runs resume, and a changed T is still refused."""
    model_dir = tmp_path / "run"
    args = ("--dataset=translated_mnist", f"--data_dir={idx_dir}", *_quick(model_dir))
    old = train.upgrade_config  # the comparison below must see the old key renamed
    assert old({"glimpses": 2, "alpha": 0.6}) == {"num_glimpses": 2, "alpha": 0.6}
    (model_dir / "backup").mkdir(parents=True)
    checkpoints.write_json({"glimpses": 3}, str(model_dir / "config.json"))
    with pytest.raises(app.UsageError, match=r"--num_glimpses=2 \(the run has 3\)"):
        run_train(*args, "--glimpses=2")
    checkpoints.write_json({"glimpses": 2}, str(model_dir / "config.json"))
    run_train(*args, "--glimpses=2")
    assert (model_dir / "final.keras").exists()
    assert _config(model_dir)["num_glimpses"] == 2


def test_resume_of_a_run_from_before_a_new_flag_is_allowed(
    run_train, tmp_path, idx_dir
):
    """A config.json written before --deterministic existed still resumes."""
    model_dir = tmp_path / "run"
    args = ("--dataset=translated_mnist", f"--data_dir={idx_dir}", *_quick(model_dir))
    run_train(*args)
    config = _config(model_dir)
    del config["deterministic"]
    checkpoints.write_json(config, str(model_dir / "config.json"))
    (model_dir / "final.keras").unlink()
    (model_dir / "backup").mkdir()  # as an interrupted run leaves it
    run_train(*args)
    assert (model_dir / "final.keras").exists()
    assert _config(model_dir)["deterministic"] is False


def test_the_official_schedule_trains_and_is_recorded(run_train, tmp_path, idx_dir):
    """--warmup_fraction=0.2 --cycle_momentum --weight_decay_mode=coupled: the official
    code's OneCycleLR and torch SGD; the run's config keeps them, so a resume is held
    to them."""
    model_dir = tmp_path / "official"
    official = ("--warmup_fraction=0.2", "--cycle_momentum", "--weight_decay_mode=coupled")
    args = ("--dataset=translated_mnist", f"--data_dir={idx_dir}", *_quick(model_dir))
    run_train(*args, *official)
    config = _config(model_dir)
    assert (config["warmup_fraction"], config["cycle_momentum"]) == (0.2, True)
    assert config["weight_decay_mode"] == "coupled"
    (model_dir / "final.keras").unlink()
    (model_dir / "backup").mkdir()  # as an interrupted run leaves it
    with pytest.raises(app.UsageError, match="--cycle_momentum=False"):
        run_train(*args, "--warmup_fraction=0.2", "--weight_decay_mode=coupled")


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--backbone=resnet1000", "resnet1000"),
        ("--downsample=0.5", "--downsample=0.5"),
        ("--num_glimpses=0", "--num_glimpses=0"),
        ("--glimpses=0", "--num_glimpses=0"),  # the old name of the flag
        ("--alpha=1.5", "--alpha=1.5"),
        ("--glimpse_loss_from=6", "--glimpse_loss_from=6"),  # T = 5
        ("--mean=abc", "--mean=abc"),
        ("--global_loss_weights=1,1", "--global_loss_weights=\\[1.0, 1.0\\]"),  # T = 5
        ("--global_loss_weights=1,x,1,1,1", "--global_loss_weights=1,x"),
        ("--downsample=abc", "--downsample=abc"),
        # Needs the relative placement; the preset's (spatial) is named.
        ("--shift_consistency=1", "received --placement=spatial"),
        ("--shift_consistency=-1", "--shift_consistency=-1"),
        ("--shift_consistency_radius=0", "--shift_consistency_radius=0"),
        # Only the spatial placement reads a map.
        (("--placement=relative", "--placement_map=conv3"), "received --placement=relative"),
        ("--placement_map=conv9", "'conv9' is not a layer"),
        ("--spatial_rescale_at=middle", "--spatial_rescale_at=middle"),
        ("--global_clipnorm=-1", "--global_clipnorm=-1"),
        (("--placement=relative", "--spatial_rescale_at=input"), "received --placement=relative"),
        ("--warmup_fraction=1", "--warmup_fraction=1.0"),
        # PyTorch's update only; the preset's decoupled mode is named.
        ("--cycle_momentum", "--weight_decay_mode=decoupled"),
        (("--cycle_momentum", "--weight_decay_mode=coupled", "--schedule=cosine"), "--schedule=cosine"),
        # A --lookahead given where it has no glimpse 2 to teach is refused, naming why.
        (("--lookahead=0.1", "--num_glimpses=2"), "received --num_glimpses=2"),
        (("--lookahead=0.1", "--placement=absolute"), "--placement=absolute"),
        (("--lookahead=0.1", "--nofirst_localization"), "--first_localization=False"),
        (("--lookahead=0.1", "--spatial_rescale_at=input"), "--spatial_rescale_at=input, --rescale_at=output"),
        ("--lookahead=-1", "--lookahead=-1"),
    ],
)
def test_bad_flags_fail_at_once_with_the_allowed_values(
    run_train, tmp_path, flag, message
):
    flags_given = flag if isinstance(flag, tuple) else (flag,)
    with pytest.raises(app.UsageError, match=message) as error:
        run_train("--dataset=translated_mnist", f"--model_dir={tmp_path}", *flags_given)
    assert "expected" in str(error.value)
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize(
    "given, lookahead",
    [
        ((), 0.1),  # the preset's MGNet: 5 glimpses, a first head, the spatial placement
        (("--num_glimpses=1", "--downsample=1"), 0.0),  # FF-Net: no glimpse 2
        (("--num_glimpses=2",), 0.0),  # glimpse 2 is the last one
        (("--placement=absolute",), 0.0),
        (("--nofirst_localization",), 0.0),
        (("--spatial_rescale_at=input",), 0.0),
        (("--lookahead=0.3",), 0.3),
        (("--lookahead=0",), 0.0),
    ],
)
def test_the_presets_lookahead_applies_only_where_there_is_a_glimpse_2_to_teach(
    run_train, tmp_path, given, lookahead
):
    """translated MNIST's preset turns the lookahead on; FF-Net and the other runs it
    cannot apply to train without it instead of failing on a flag they did not give,
    and the model builds from the resolved settings."""
    resolved = []
    run_train(
        "--dataset=translated_mnist",
        f"--model_dir={tmp_path}",
        *given,
        entry=lambda _: resolved.append(train.resolve_config()),
    )
    config = resolved[0]
    assert config["lookahead"] == lookahead
    model = MGNet.from_settings(config, num_classes=10, channels=1)
    assert model.lookahead == lookahead
    assert (model.lookahead_gate is not None) == (lookahead > 0)


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(flags.IllegalFlagValueError, match="tiny_imagenet"):
        flags.FLAGS(["train.py", "--dataset=cifar10", "--model_dir=x"])
    flags.FLAGS.unparse_flags()
