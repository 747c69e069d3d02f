# Two entry points: `make run` (the main job: a small real benchmark) and `make test`.
# Both build .venv/ first with a pinned CPU torch, then the package in editable mode.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup run test test-kernels test-browser test-data data clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

data: setup
	$(BIN)/noveltykit data fetch --dataset mnist

# The main job, on real MNIST, one-vs-rest, seed 0, sized to finish inside 10 minutes on 2 slow
# cores (README: measured times): every classical baseline on all ten classes, then the EDE-GAN
# teacher on class 8 for 3 epochs (the docs' results train 8, the `cpu` budget). Then it prints
# the commands of the full benchmarks.
run: data
	$(BIN)/noveltykit bench --dataset mnist --protocol one-vs-rest --classes all --seeds 0 \
		--method knn pca kde ocsvm --out runs/main
	$(BIN)/noveltykit bench --dataset mnist --protocol one-vs-rest --classes 8 --seeds 0 \
		--method ede-gan:epochs=3 --out runs/main
	@echo "Full benchmarks (docs/benchmarks.md has each one's command, time and results), e.g.:"
	@echo "  $(BIN)/noveltykit bench --dataset mnist --classes all --method ede-gan --out runs/ede-gan-mnist   # about 35 min"
	@echo "  $(BIN)/noveltykit bench --dataset fashion-mnist --classes all --method knn pca kde ocsvm ede-gan --out runs/fmnist"
	@echo "Report: runs/main/report.md. On your own images (a folder of normal ones, then new ones to score):"
	@echo "  $(BIN)/noveltykit fit --method knn --train MY_NORMAL_IMAGES/ --out models/mine"
	@echo "  $(BIN)/noveltykit score models/mine NEW_IMAGES/ --out scores.csv --report scores-report/"

# `make test` runs every test but the CUDA-only ones, so it first gets what the others read beyond
# `make data` (the main job, `make run`, needs none of it):
#   chromium       Debian's package: the served page is scored in headless Chromium, driven by
#                  playwright (the dev extra; it uses this chromium, no browser is downloaded);
#   fashion-mnist  from Debian's dataset-fashion-mnist (`apt-get download`, no root needed);
#   cifar10-jpeg   the copy in ../shared/data/cifar10-jpeg/ (or $NOVELTYKIT_CIFAR10_JPEG), decoded
#                  into the cache once (about 10 s).
# apt-get runs only for what is missing, and only as root. Under CI a missing one fails the run;
# elsewhere it is a warning and its tests skip (pytest -ra lists each skip and why).
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -qq -o=Dpkg::Use-Pty=0
FETCH := $(BIN)/noveltykit data fetch --dataset
MISSING = { if [ -n "$$CI" ] && [ "$$CI" != false ]; then echo "make: $(1) (CI: a failure, not a skip)" >&2; false; \
	else echo "make: $(1); its tests will skip" >&2; fi; }

test-browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  [ "$$(id -u)" = 0 ] || { $(call MISSING,chromium is not installed and apt-get install needs root); exit; }; \
	  log=$$(mktemp); \
	  if $(APT_GET) update >$$log 2>&1 && $(APT_GET) install -y --no-install-recommends chromium >>$$log 2>&1; \
	  then rm -f $$log; else cat $$log >&2; rm -f $$log; $(call MISSING,apt-get install chromium failed); fi; }

# A first try that fails (no package lists yet, where chromium was there already) is retried once
# after `apt-get update`.
test-data: data test-browser
	@$(FETCH) fashion-mnist >/dev/null 2>&1 || { [ "$$(id -u)" != 0 ] || $(APT_GET) update >/dev/null 2>&1; \
	  $(FETCH) fashion-mnist >/dev/null; } || $(call MISSING,no fashion-mnist)
	@$(FETCH) cifar10-jpeg >/dev/null || $(call MISSING,no cifar10-jpeg)

test: data test-browser test-data
	$(BIN)/python -m pytest -q

# The GAN, distillation, conformance, export and fault tests again under AVX2-only and plain ATen
# kernels (what other CPUs run); CI runs it after `make test`.
test-kernels: data
	.ci/kernels $(BIN)/python

clean:
	rm -rf $(VENV) runs
