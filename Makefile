# Two commands matter: `make run` and `make test`. Both set themselves up.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := python3-venv python3-dev mosquitto mosquitto-clients espeak-ng sox libportaudio2 libsndfile1 strace systemd openssl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: setup apt models run test lint bench schemas clean

setup: apt $(STAMP)

# Only asks apt for what is missing, so a set-up machine does not need the network or sudo.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages: $$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

models: setup
	$(PY) -m pendant.models fetch

run: setup models
	$(PY) tools/run_demo.py

lint: setup
	$(PY) -m ruff check device tests tools

test: setup models lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup models
	$(PY) tools/bench.py

schemas: setup
	$(PY) -m pendant.events

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache bench-results.json
