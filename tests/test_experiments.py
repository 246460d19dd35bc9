"""The translated Fashion-MNIST study script runs end to end (slow: about 4 minutes)."""

import os
import subprocess
import sys

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


@pytest.mark.parametrize(
    "path",
    [
        "experiments/results/translated_fashion_mnist/mgnet/final.keras",
        "experiments/results/translated_fashion_mnist/ff/eval/clean.json",
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


def _oracle():
    sys.path.insert(0, os.path.join(REPO, "experiments"))
    import glimpse_oracle  # noqa: PLC0415

    return glimpse_oracle


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
