"""Committed notebooks: numbered, stripped of outputs, with a tagged parameters cell declaring run_dir."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_and_parameterised(path):
    nb = json.loads(path.read_text())
    assert re.match(r"^\d{2}[a-z]?_[a-z0-9_]+\.ipynb$", path.name), "name like NN_stage.ipynb or NNb_stage.ipynb"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "outputs not stripped"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    assert "run_dir" in "".join(params[0]["source"])
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
