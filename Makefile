# Two entry points: `make run` (the main job: a small real benchmark) and `make test`.
# Both build .venv/ first with a pinned CPU torch, then the package in editable mode.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup run test data clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

data: setup
	$(BIN)/noveltykit data fetch --dataset mnist

# The main job, on real MNIST, one-vs-rest, seed 0: every classical baseline on all ten classes,
# then the EDE-GAN teacher (cpu budget, about 3 minutes a class) on three of them, into one report.
run: data
	$(BIN)/noveltykit bench --dataset mnist --protocol one-vs-rest --classes all --seeds 0 \
		--method knn pca kde ocsvm --out runs/main
	$(BIN)/noveltykit bench --dataset mnist --protocol one-vs-rest --classes 2,3,8 --seeds 0 \
		--method ede-gan --out runs/main

test: data
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
