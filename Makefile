# obscrowd: two commands do all the set-up.
#   make demo   set up (venv, torch, the package, pinned weights, sample photos) and run the demo notebooks
#   make test   set up and run the test suite
# Both are idempotent: a second run skips what is already installed and fetched.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.obscrowd-setup
# torch/torchvision pair installed only when the venv has no working torch (a GPU user's own torch is kept).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PIP := $(PY) -m pip --disable-pip-version-check
export MPLBACKEND ?= Agg

.PHONY: setup test demo fetch notebooks-clean benchmarks clean-runs

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch, torchvision" 2>/dev/null || $(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e '.[notebooks,dev,scale]'
	@# facenet-pytorch (MTCNN code) pins torch<2.3 and numpy<2: install it without its pins.
	$(PIP) install -q --no-deps facenet-pytorch==2.6.0
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(MAKE) fetch
	@touch $(STAMP)

fetch:
	$(PY) -m obscrowd_lib.cli models fetch
	$(PY) -m obscrowd_lib.cli data fetch

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

demo: setup
	$(PY) -m obscrowd_lib.cli run-notebooks --profile demo

notebooks-clean:
	$(VENV)/bin/nbstripout --keep-id notebooks/*.ipynb

benchmarks: setup
	$(PY) benchmarks/run_all.py

clean-runs:
	find papermill_runs -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
