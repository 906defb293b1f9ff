# Two set-up commands do everything on a fresh machine (see README.md):
#   make demo   -- create .venv, install, run the main job offline on the embedded SynthAVA default
#   make test   -- create .venv, install, lint (ruff, mypy) and run the test suite
PYTHON_BOOT ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
# torch/torchvision pair that imports here (pip takes them from this machine's disk); override elsewhere.
TORCH_SPEC  ?= torch==2.14.1 torchvision==0.29.1
STAMP       := $(VENV)/.slowfast_det-installed
PYTEST_ARGS ?=
LINT_PATHS  := slowfast_det ava_tools tests

.PHONY: install detectron2 lint test demo bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml slowfast_det/detection/install.py slowfast_det/detection/ext_standin.py slowfast_det/tools/install_detectron2.py
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools<81" wheel
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m slowfast_det.tools.install_detectron2
	$(PY) -c "import slowfast_det.detection.compat as c; c.import_detectron2(); import torch, torchvision, av, cv2; print('environment ok: torch', torch.__version__)"
	touch $(STAMP)

detectron2: install
	$(PY) -m slowfast_det.tools.install_detectron2 --force

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy slowfast_det ava_tools

test: install lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: install
	$(PY) -m slowfast_det.tools.demo

bench: install
	for b in tests/benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
