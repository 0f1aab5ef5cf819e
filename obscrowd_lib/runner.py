"""Headless notebook runs: execute the numbered notebooks with papermill into a run folder.

``run_notebooks(profile="smoke")`` reads ``configs/<profile>.json``::

    {"description": "...",
     "notebooks": {"00_setup_and_data.ipynb": {"param": value, ...}, ...}}

and executes each listed notebook, in the listed order, into
``papermill_runs/<UTC date-time>_<profile>/``. Every notebook receives ``run_dir`` (its own
output folder inside the run) on top of the profile's parameters; a parameter the notebook does
not declare in its ``parameters`` cell is refused before anything runs (papermill only warns).
``summary.json`` records per notebook: parameters, duration, status, and the ``metrics.json``
the notebook wrote into its ``run_dir``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .io import write_json  # re-exported: notebooks write metrics.json with it


class RunnerError(RuntimeError):
    """A profile or notebook is invalid (message names the file and the problem)."""


@dataclass(frozen=True)
class NotebookResult:
    """Outcome of one executed notebook."""

    notebook: str  # notebook file name
    status: str  # "ok" or "failed"
    seconds: float  # wall time
    parameters: dict  # parameters passed (including run_dir)
    metrics: dict  # contents of <run_dir>/metrics.json, or {} if the notebook wrote none
    error: str = ""  # last line of the error when failed


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def load_profile(profile: str, configs_dir: Path | None = None) -> dict[str, Any]:
    """Read ``configs/<profile>.json`` (or a path to a JSON file)."""
    path = Path(profile) if profile.endswith(".json") else (configs_dir or project_root() / "configs") / f"{profile}.json"
    if not path.is_file():
        known = sorted(p.stem for p in (configs_dir or project_root() / "configs").glob("*.json"))
        raise RunnerError(f"{path}: no such profile (known: {', '.join(known)})")
    try:
        cfg = json.loads(path.read_text())
    except ValueError as e:
        raise RunnerError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(cfg.get("notebooks"), dict) or not cfg["notebooks"]:
        raise RunnerError(f"{path}: needs a non-empty object 'notebooks' mapping notebook file -> parameters")
    return cfg


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """Parameters declared in the notebook's cell tagged ``parameters`` (name -> inferred info)."""
    import papermill

    if not notebook.is_file():
        raise RunnerError(f"{notebook}: notebook not found")
    try:
        return papermill.inspect_notebook(str(notebook))
    except Exception as e:  # papermill raises several types for unreadable notebooks
        raise RunnerError(f"{notebook}: cannot read its parameters ({e})") from e


def check_parameters(notebook: Path, params: dict[str, Any]) -> None:
    """Refuse parameters the notebook does not declare."""
    declared = declared_parameters(notebook)
    if not declared:
        raise RunnerError(f"{notebook}: no cell tagged 'parameters'")
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise RunnerError(f"{notebook}: unknown parameter(s) {', '.join(unknown)}; declared: {', '.join(declared)}")


def run_notebooks(*, profile: str = "smoke", notebooks_dir: Path | None = None, out_root: Path | None = None,
                  only: list[str] | None = None, progress: bool = True) -> Path:
    """Execute the profile's notebooks in order; return the run folder (holding summary.json).

    Stops at the first failing notebook (later stages depend on earlier ones) and records it as
    failed in the summary; raises :class:`RunnerError` after writing the summary.
    """
    import papermill

    root = project_root()
    notebooks_dir = notebooks_dir or root / "notebooks"
    cfg = load_profile(profile)
    plan = [(name, dict(params or {})) for name, params in cfg["notebooks"].items()
            if not only or any(name.startswith(o) for o in only)]
    for name, params in plan:  # validate everything before running anything
        check_parameters(notebooks_dir / name, {**params, "run_dir": ""})
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
    run_dir = (out_root or root / "papermill_runs") / f"{stamp}_{Path(profile).stem}"
    run_dir.mkdir(parents=True, exist_ok=False)
    scratch = run_dir / ".jupyter"
    for sub in ("runtime", "ipython", "mpl"):
        (scratch / sub).mkdir(parents=True)
    env_backup = {k: os.environ.get(k) for k in ("JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR", "MPLBACKEND",
                                                 "OBSCROWD_PROGRESS")}
    os.environ.update({"JUPYTER_RUNTIME_DIR": str(scratch / "runtime"), "IPYTHONDIR": str(scratch / "ipython"),
                       "MPLCONFIGDIR": str(scratch / "mpl"), "MPLBACKEND": "Agg", "OBSCROWD_PROGRESS": "0"})
    results: list[NotebookResult] = []
    failed = None
    try:
        for name, params in plan:
            nb_out = run_dir / Path(name).stem
            nb_out.mkdir()
            params = {**params, "run_dir": str(nb_out)}
            t0 = time.perf_counter()
            status, err = "ok", ""
            try:
                papermill.execute_notebook(str(notebooks_dir / name), str(run_dir / name), parameters=params,
                                           kernel_name="python3", cwd=str(notebooks_dir), progress_bar=progress,
                                           log_output=False)
            except Exception as e:  # papermill.PapermillExecutionError and kernel failures
                status, err = "failed", str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            metrics_path = nb_out / "metrics.json"
            metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
            results.append(NotebookResult(name, status, round(time.perf_counter() - t0, 2), params, metrics, err))
            write_json(run_dir / "summary.json", {"profile": profile, "run_dir": str(run_dir),
                                                    "notebooks": [r.__dict__ for r in results]})
            if status != "ok":
                failed = (name, err)
                break
    finally:
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if failed:
        raise RunnerError(f"{run_dir / failed[0]}: notebook failed ({failed[1]}); see the executed copy")
    return run_dir
