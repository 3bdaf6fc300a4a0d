# One-command set-up, tests and demo on a fresh machine (CPU is enough).
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup test test-fast demo lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || (echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'" && exit 1)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, from the machine's wheel cache, so nerfstudio does not pull another build
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# Two pytest workers, whole files per worker (module-scoped fixtures are built once); many tests wait on
# one-thread ns-train subprocesses, so two workers keep both cores busy. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

demo: $(STAMP)
	$(VENV)/bin/relevance-demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench_image_edit.py
	$(PY) benchmarks/bench_scene_edit.py

clean:
	rm -rf $(VENV) outputs demo_outputs .pytest_cache .ruff_cache *.egg-info
