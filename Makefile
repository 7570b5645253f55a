# Two commands do all the set-up on a fresh machine:
#   make demo   — create .venv, install cytolens (CPU torch first), segment a synthetic image
#   make test   — same install, then the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0

.PHONY: install demo test test-all benchmarks clean browser

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU wheel first: a plain "torch" requirement would pull a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet "$(TORCH_CPU)"
	$(BIN)/python -m pip install --quiet -e ".[test,export]"
	touch $@

demo: install
	$(BIN)/cytolens demo --output cytolens-demo

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

# the web page test drives Debian's headless Chromium (it skips, saying why, when chromium is missing)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; \
	else echo "no apt-get: install chromium and chromedriver yourself, or the web page test is skipped"; fi

clean:
	rm -rf $(VENV) cytolens-demo .pytest_cache
