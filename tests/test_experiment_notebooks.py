"""Policy: the two notebooks in experiment/notebooks run top to bottom on a CPU (nbclient, tiny data)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.mnist_idx import write_mnist

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "experiment" / "notebooks"


@pytest.mark.parametrize("name", ["getting_started.ipynb", "mnist.ipynb"])
def test_notebook_runs_top_to_bottom_on_cpu(name, tmp_path, monkeypatch):
    # The kernel inherits this environment: tiny data, quick settings, outputs in tmp, CPU only.
    monkeypatch.setenv("GPULAB_DATA_DIR", str(write_mnist(tmp_path / "data", n_train=320, n_test=100)))
    monkeypatch.setenv("GPULAB_QUICK", "1")
    monkeypatch.setenv("GPULAB_MATMUL_SIZE", "256")
    monkeypatch.setenv("GPULAB_MODEL_PATH", str(tmp_path / "mnist_cnn.pt"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{name} raised: {errors}"
    if name == "mnist.ipynb":
        assert (tmp_path / "mnist_cnn.pt").exists(), "the walkthrough did not save mnist_cnn.pt"
