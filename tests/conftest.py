"""Shared fixtures: one headless smoke run of every notebook, reused by the notebook tests."""

import pytest

from obscrowd_lib import runner


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The run folder of ``obscrowd run-notebooks --profile smoke`` (executed once per test session).

    A failing notebook does not raise here: its status and error are in ``summary.json``, which the
    tests read, so every notebook test reports what failed.
    """
    out = tmp_path_factory.mktemp("smoke_runs")
    try:
        return runner.run_notebooks(profile="smoke", out_root=out, progress=False)
    except runner.RunnerError:
        (run,) = [p for p in out.iterdir() if p.is_dir()]
        return run


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests: on a shared 2-core machine, oversubscribed OpenMP threads make
    convolutions ~10x slower. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
