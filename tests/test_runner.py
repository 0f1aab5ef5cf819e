"""Notebook runner: parameter checking, run folder, summary.json, and failures recorded."""

import json

import pytest

from obscrowd_lib import runner

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from nb import write_notebook  # noqa: E402


def _nb(path, body):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    p = nbformat.v4.new_code_cell('run_dir: str = "."  # output folder\nx: int = 1  # a number')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    path.write_text(nbformat.writes(nb))


@pytest.fixture
def setup(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _nb(nbdir / "00_a.ipynb", "import json, pathlib\n"
        "pathlib.Path(run_dir, 'metrics.json').write_text(json.dumps({'x2': 2 * x}))")
    _nb(nbdir / "01_b.ipynb", "raise RuntimeError('stage failed on purpose')")
    return tmp_path, nbdir


def _profile(tmp_path, notebooks):
    p = tmp_path / "prof.json"
    p.write_text(json.dumps({"notebooks": notebooks}))
    return str(p)


def test_run_writes_summary_with_metrics(setup):
    tmp_path, nbdir = setup
    run = runner.run_notebooks(profile=_profile(tmp_path, {"00_a.ipynb": {"x": 21}}), notebooks_dir=nbdir,
                               out_root=tmp_path / "runs", progress=False)
    assert run.name.endswith("_prof")
    summary = json.loads((run / "summary.json").read_text())
    (entry,) = summary["notebooks"]
    assert entry["status"] == "ok" and entry["metrics"] == {"x2": 42}
    assert entry["parameters"]["x"] == 21
    assert (run / "00_a.ipynb").is_file()


def test_unknown_parameter_is_refused_before_running(setup):
    tmp_path, nbdir = setup
    with pytest.raises(runner.RunnerError, match="unknown parameter.*typo"):
        runner.run_notebooks(profile=_profile(tmp_path, {"00_a.ipynb": {"typo": 1}}), notebooks_dir=nbdir,
                             out_root=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


def test_failure_is_recorded_and_raised(setup):
    tmp_path, nbdir = setup
    with pytest.raises(runner.RunnerError, match="notebook failed"):
        runner.run_notebooks(profile=_profile(tmp_path, {"00_a.ipynb": {}, "01_b.ipynb": {}}), notebooks_dir=nbdir,
                             out_root=tmp_path / "runs", progress=False)
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert [n["status"] for n in summary["notebooks"]] == ["ok", "failed"]
    assert "stage failed on purpose" in summary["notebooks"][1]["error"]


def test_missing_profile_names_the_file(tmp_path):
    with pytest.raises(runner.RunnerError, match="no such profile"):
        runner.load_profile(str(tmp_path / "nope.json"))


def test_notebook_without_parameters_cell_is_refused(tmp_path):
    p = tmp_path / "n.ipynb"
    write_notebook(p, [("code", "x = 1")])  # absolute path: resolved as given
    with pytest.raises(runner.RunnerError, match="parameters"):
        runner.check_parameters(p, {"x": 2})


def test_shipped_profiles_name_existing_notebooks_and_parameters():
    root = runner.project_root()
    for prof in sorted((root / "configs").glob("*.json")):
        cfg = runner.load_profile(str(prof))
        for name, params in cfg["notebooks"].items():
            runner.check_parameters(root / "notebooks" / name, {**params, "run_dir": ""})
