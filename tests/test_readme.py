"""The README's two commands are the ones CI and users run."""

import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ci_runs_the_readme_test_command():
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    extracted = subprocess.run(
        [
            "awk",
            "/<!-- test-command/ {found=1; next} found && /^```bash/ {getline; print; exit}",
            os.path.join(REPO, "README.md"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ci = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read()
    # .ci/run reads the command with this very awk program, then runs it.
    assert "/<!-- test-command/ {found=1; next} found && /^```bash/ {getline; print; exit}" in ci
    # The whole suite on TensorFlow, then the layer and model tests on JAX.
    assert "&& python -m pytest &&" in extracted
    assert extracted.endswith("KERAS_BACKEND=jax python -m pytest tests/layers tests/test_mgnet.py tests/test_attacks.py")
    assert 'pip install -e ".[test,corruptions]"' in extracted
    assert f"```bash\n{extracted}\n```" in readme
    # The test install pulls no PyTorch (its reference values are stored fixtures).
    setup = open(os.path.join(REPO, "setup.py"), encoding="utf-8").read()
    test_extra = setup.split('"test": [')[1].split("]")[0]
    assert "torch" not in test_extra


def test_the_preset_table_of_docs_training_is_presets_py():
    """docs/training.md's table of presets says what presets.py trains with (it once
    said 20 epochs for the translated sets a session after they became 30)."""
    import sys  # noqa: PLC0415

    sys.path.insert(0, REPO)
    import presets  # noqa: PLC0415

    text = open(os.path.join(REPO, "docs", "training.md"), encoding="utf-8").read()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 11 and cells[0].startswith("`") and cells[0].strip("`") in presets.PRESETS:
            rows[cells[0].strip("`")] = cells
    assert set(rows) == set(presets.PRESETS)
    for name, cells in rows.items():
        config = presets.preset(name)
        _, _, image, glimpses, downsample, _, augment, epochs, batch, rate, decay = cells
        assert int(image) == config["image_size"], name
        assert int(glimpses) == config["num_glimpses"], name
        numerator, _, denominator = downsample.partition("/")
        assert abs(float(numerator) / float(denominator or 1) - config["downsample"]) < 1e-9, name
        assert augment == config["augment"], name
        assert int(epochs) == config["epochs"], name
        assert int(batch) == config["batch_size"], name
        assert float(rate) == config["learning_rate"], name
        assert float(decay) == config["weight_decay"], name
