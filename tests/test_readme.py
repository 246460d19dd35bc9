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
