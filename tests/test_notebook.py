"""notebooks/colab_tpu.ipynb runs top to bottom on the CPU with its tiny data set."""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_colab_notebook_runs_on_cpu(tmp_path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(os.path.join(REPO, "notebooks", "colab_tpu.ipynb"), 4)
    (parameters,) = [
        c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])
    ]
    # As papermill would: override the parameters after the defaults.
    parameters.source += f"\nREPO = {REPO!r}\nMODEL_DIR = {str(tmp_path / 'run')!r}"
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
    assert (tmp_path / "run" / "final.keras").exists()
    assert (tmp_path / "run" / "eval" / "evaluation.json").exists()
    printed = "".join(
        output.get("text", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    assert "glimpse boxes" in printed
