"""One registry of data sets: every name in pipelines.SPECS trains (train.py, its
preset) and evaluates (evaluate.py, in a subprocess as users run it) by that name
alone, and train.py, evaluate.py and presets know no other name."""

import json
import os
import subprocess
import sys

import pytest
from absl import flags

import pipelines
import presets
import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_presets_and_the_pipelines_name_the_same_data_sets():
    assert set(presets.PRESETS) == set(pipelines.DATASETS)
    assert sorted(flags.FLAGS["dataset"].parser.enum_values) == sorted(pipelines.DATASETS)
    for name, spec in pipelines.SPECS.items():
        assert spec.name == name
        info_channels = 1 if spec.reader == "translated" else 3
        assert spec.channels == info_channels


@pytest.mark.parametrize("name", pipelines.DATASETS)
def test_every_data_set_trains_and_evaluates_by_name(name, roots, tmp_path):
    model_dir = tmp_path / "run"
    # The data set's preset, made small: a plain CNN on 32 px, one step.
    flags.FLAGS(
        [
            "train.py",
            f"--dataset={name}",
            f"--data_dir={roots[name]}",
            f"--model_dir={model_dir}",
            "--backbone=vanilla_cnn",
            "--image_size=32",
            "--num_glimpses=2",
            "--downsample=2",
            "--placement=relative",  # a 16 px glimpse: one cell, too few for spatial
            "--nosmall_input",
            "--epochs=1",
            "--steps_per_epoch=1",
            "--validation_steps=1",
            "--batch_size=2",
        ]
    )
    try:
        train.main([])
    finally:
        flags.FLAGS.unparse_flags()
    config = json.loads((model_dir / "config.json").read_text())
    spec = pipelines.spec(name)
    assert config["dataset"] == name
    assert config["model"]["channels"] == spec.channels
    assert config["model"]["crop_fraction"] == spec.crop_fraction
    assert config["augment"] == presets.preset(name)["augment"]

    output = tmp_path / "eval"
    result = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            f"--model_dir={model_dir}",
            f"--output_dir={output}",
            "--max_examples=2",
            "--batch_size=2",
            "--latency_repeats=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((output / "evaluation.json").read_text())
    assert report["data"]["dataset"] == name
    assert report["clean"]["num_examples"] == 2
    assert len(report["clean"]["accuracy"]) == 2
