# Two commands matter: `make run` and `make test`. Both set themselves up.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := python3-venv python3-dev mosquitto mosquitto-clients espeak-ng flite sox libportaudio2 libsndfile1 strace systemd openssl chromium nodejs openscad device-tree-compiler libfuse3-3 fonts-dejavu-core fonts-liberation
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

# Installs the named Debian packages that are missing; asks apt nothing when none is.
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages: $$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endef

.PHONY: setup apt web-deps models run test test-ha lint bench measure-ocr bench-arm bench-arm-apt screenshots schemas clean lock sets measure-sets measure-speaker

setup: apt $(STAMP)

# Only asks apt for what is missing, so a set-up machine does not need the network or sudo.
apt:
	$(call apt_install,$(APT_PACKAGES))

# Every Python package comes from uv.lock, checked by the sha256 it holds; uv itself from
# tools/requirements-uv.txt (pip --require-hashes). uv uses the machine's python3 (3.11+), never
# one it downloads; `--locked` stops here when pyproject.toml and the lock disagree.
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3

$(UV): tools/requirements-uv.txt
	python3 -m venv $(TOOLS)
	PIP_CONFIG_FILE=/dev/null $(TOOLS)/bin/python -m pip --isolated install -q --disable-pip-version-check --no-deps \
	  --require-hashes -r tools/requirements-uv.txt
	touch $(UV)

$(STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --locked
	touch $(STAMP)

# Moves every pin to the newest release pyproject.toml allows; then run `make test` and the
# speech measurements (README, "The lock") before committing the new uv.lock.
lock: $(UV)
	$(UV) lock --upgrade

# Speech sets nobody tuned on (tools/kokoro_sets.py): Kokoro voices saying the commands under
# pink noise, babble, music and reverb, Kokoro voices talking, and the read English inside the
# moonshine-voice wheel, and an hour of English chatter (Debian's fortunes read by Kokoro and
# espeak-ng voices); split into tune / held-out voices. Test tooling in its own venv (the
# `sets` dependency group, from the lock), never part of `make test`. Progress goes to stderr;
# about 30 CPU minutes the first time, a cache hit after that. `make measure-sets` runs
# tools/measure_asr.py on all four.
SETS_VENV := .venv-sets
SETS_DIR := .cache/kokoro-sets
SETS_STAMP := $(SETS_VENV)/.installed
$(SETS_STAMP): pyproject.toml uv.lock $(UV)
	UV_PROJECT_ENVIRONMENT=$(SETS_VENV) $(UV) sync --locked --no-default-groups --group sets
	touch $(SETS_STAMP)

sets: apt $(SETS_STAMP)
	nice -n 10 $(SETS_VENV)/bin/python tools/kokoro_sets.py $(SETS_DIR)

# Only the wearer (issue 19): the voice encoder's error rates and cost on Kokoro, espeak-ng,
# flite and the shared real voices (tools/measure_speaker.py; renders the Kokoro speech it
# lacks, about real time, cached in ~/.cache/pendant/speaker-sets). `make bench` measures the
# same with whatever of it is cached.
measure-speaker: setup models apt $(SETS_STAMP)
	nice -n 10 $(SETS_VENV)/bin/python tools/measure_speaker.py --render --json speaker-results.json

# BACKEND=pocketsphinx: another recogniser than the config's; HELD=1: as said holding the button.
measure-sets: setup sets
	nice -n 10 $(PY) tools/measure_asr.py $(if $(BACKEND),--backend $(BACKEND)) $(if $(HELD),--pressed) \
	  --manifest $(SETS_DIR)/commands/manifest.json --manifest $(SETS_DIR)/talk/manifest.json \
	  --manifest $(SETS_DIR)/moonshine/manifest.json --manifest $(SETS_DIR)/chatter/manifest.json

models: setup
	$(PY) -m pendant.setup.fetch_models fetch

run: setup models
	$(PY) tools/run_demo.py

lint: setup
	$(PY) -m ruff check device tests tools image packaging
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(PY) -m pytest -q -p no:cacheprovider tests/system/test_layout.py

# The browser test's driver (playwright-core, no browser download: it uses apt's chromium).
WEB_DEPS := tests/web/node_modules/.package-lock.json
web-deps: $(WEB_DEPS)
$(WEB_DEPS): tests/web/package.json tests/web/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tests/web --no-audit --no-fund; \
	else echo "npm missing: the browser test will be skipped"; fi

# One worker per core, a test file per worker at a time (pytest-xdist): most tests wait on real
# time, brokers and child processes, so one process left a core idle (17:48 -> 9:02 on 2 cores,
# 2026-12-07). The slowest tests are printed, so a CI log shows where the time goes.
test: setup models lint web-deps
	PENDANT_FUZZ=full $(PY) -m pytest -n auto --dist loadfile --durations=15 $(PYTEST_ARGS)

# Refreshes docs/companion-*.png, the screenshots the README shows, from the browser test.
screenshots: setup models web-deps
	PENDANT_SCREENSHOTS=1 $(PY) -m pytest -q tests/system/test_web_app.py

bench: setup models
	$(PY) tools/bench.py

# The eyes' OCR on text images it renders (tune and held-out fonts and texts, kept apart),
# photos, and photos without text: accuracy, CPU and memory per model set (tools/measure_ocr.py).
measure-ocr: setup models apt
	$(PY) tools/measure_ocr.py

# The pendant against a real Home Assistant (tests/system/test_home_assistant.py, and
# tests/system/test_home_import.py for `pendant home import`). Home Assistant needs
# Python 3.13: tools/ha_root.py builds a Debian trixie root with it, from tests/ha/requirements.txt
# (hashes), once (about 2 minutes, 1.3 GB in .cache/ha-root); chroot needs root.
test-ha: setup models
	$(call apt_install,mmdebstrap)
	$(SUDO) $(PY) tools/ha_root.py build
	$(SUDO) $(PY) -m pytest -v -p no:cacheprovider tests/system/test_home_assistant.py tests/system/test_home_import.py

# An estimate of the ears on a Pi Zero 2 W (README, "An ARM estimate"): the ears on aarch64 under
# qemu-user, guest instructions counted by a TCG plugin, turned into time with an assumed IPC.
# Build-host tools, installed when missing (as `apt` does for APT_PACKAGES).
BENCH_ARM_APT_PACKAGES := qemu-user mmdebstrap gcc libc6-dev
bench-arm-apt:
	$(call apt_install,$(BENCH_ARM_APT_PACKAGES))

# BACKEND=hama: another recogniser than the config's (bench-arm-results-hama.json).
# PARTS=read,ask: only some of ears, read ("read this"), ask (Whisper on a Pi 5) and speaker
# (the speaker check's voice embedding of an utterance, on a Zero 2 W and a Pi 5).
BACKEND ?=
PARTS ?=
bench-arm: setup models bench-arm-apt
	$(PY) tools/bench_arm.py $(if $(BACKEND),--backend $(BACKEND)) $(if $(PARTS),--parts $(PARTS))

schemas: setup
	$(PY) -m pendant.core.events
	$(PY) -m pendant.ears.understand.closed_words

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache bench-results.json bench-arm-results*.json speaker-results.json tests/web/node_modules

# --- the SD card image (image/README.md) -------------------------------------------------
# Build-host tools, installed when missing (as `apt` does for APT_PACKAGES).
IMAGE_APT_PACKAGES := mmdebstrap qemu-user-static binfmt-support qemu-system-arm arch-test device-tree-compiler dosfstools mtools e2fsprogs fdisk dpkg-dev espeak-ng
BOARD ?= zero2w
DEB_MODELS ?=
.PHONY: image-apt deb image image-test-build image-test image-camera-check flash

image-apt:
	$(call apt_install,$(IMAGE_APT_PACKAGES))

# The Architecture: all package: wheels for aarch64, units, models verified by sha256.
deb: setup models
	$(PY) packaging/build_deb.py $(if $(DEB_MODELS),--models $(DEB_MODELS))

# image/out/pendant-$(BOARD).img (BOARD=zero2w|pi5|zero2w-camera), with mmdebstrap under qemu-user-static.
image: image-apt deb
	$(SUDO) $(PY) image/build.py $(BOARD)

# image/out/pendant-$(BOARD)-test.img: the same plus the boot test's hook, which runs scripts
# from the FAT partition as root. Never flash it to a card that leaves the bench.
image-test-build: image-apt deb
	$(SUDO) $(PY) image/build.py $(BOARD) --test

# Boots the test image in qemu-system-aarch64 (-M virt; IMAGE_MACHINE=raspi3b for the Pi 3 model,
# with the board's RAM: IMAGE_MEM=off gives it QEMU's 1 GiB, IMAGE_MEMORY_MAX=off lifts MemoryMax=).
image-test: image-apt
	@test -f image/out/pendant-$(BOARD)-test.img || $(MAKE) image-test-build BOARD=$(BOARD)
	PENDANT_IMAGE_TEST=1 PENDANT_IMAGE_BOARD=$(BOARD) $(PY) -m pytest -v -s tests/system/test_image_boot.py

# The Zero 2 W image with Debian trixie's camera stack (libcamera's Pi pipeline, the IMX219 in
# the tree), built afresh and booted: what QEMU can show of the camera (image/README.md, "The
# camera on the Debian image"). Not in .ci/run: about 25 minutes on 2 cores alone, most of it the
# trixie build. (IMAGE_MACHINE=raspi3b does not boot it through yet: image/README.md.)
image-camera-check: image-apt
	$(MAKE) image-test-build BOARD=zero2w-camera
	$(MAKE) image-test BOARD=zero2w-camera

# Writes the image to an SD card: refuses a mounted or non-removable disk.
flash:
	@test -n "$(DEVICE)" || { echo "flash: error: name the card, e.g. make flash DEVICE=/dev/sdX"; exit 2; }
	$(SUDO) $(PY) image/flash.py --image image/out/pendant-$(BOARD).img $(DEVICE)
