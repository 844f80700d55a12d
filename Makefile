# Every target installs what it needs on first use: nothing is installed by hand.
# .venv is built from uv.lock (exact versions with hashes) by uv, itself pinned with
# hashes in tools/uv-requirements.txt and installed into .tools/ by pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# uv must never download a Python: the venv uses $(PYTHON).
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

# LiveKit's and Pipecat's Gemini Live clients, test peers of the emulator (tests/peers/):
# each in its own venv from its own lock (they pin google-genai majors of their own).
PEERS := livekit pipecat
PEER_STAMPS := $(foreach peer,$(PEERS),peers/$(peer)/.venv/.installed-stamp)

.PHONY: run console web test lint lint-newest bench soak format lock lock-upgrade lock-check lock-tools clean peers

$(UV): tools/uv-requirements.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r tools/uv-requirements.txt
	touch $(UV)

# --frozen: install exactly what uv.lock says (never re-resolve); sync removes anything else.
$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --quiet --frozen --all-extras --python $(PYTHON)
	touch $(STAMP)

# uv resolves a relative UV_PROJECT_ENVIRONMENT against the project, hence $(CURDIR).
peers/%/.venv/.installed-stamp: $(UV) peers/%/pyproject.toml peers/%/uv.lock
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/peers/$*/.venv $(UV) sync --quiet --frozen --project peers/$* --python $(PYTHON)
	touch $@

peers: $(PEER_STAMPS)

# The script's own output only (its failures are one line; make adds its own "Error" line
# and turns every failing status into 2).
run: $(STAMP)
	@$(BIN)/python examples/supervisor.py $(ARGS)

# A live conversation: microphone in, speaker out (the audio extra, which .venv always has,
# and the system's PortAudio: apt-get install libportaudio2).
console: $(STAMP)
	@$(BIN)/python examples/supervisor.py --console $(ARGS)

# The voice page (python -m web): open the URL it prints; the emulator without a key.
web: $(STAMP)
	@$(BIN)/python -m web $(ARGS)

test: $(STAMP) $(PEER_STAMPS)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The same checks on the newest mypy and ruff the index serves (not the lock's), in a
# throwaway venv: the pins must not hide real errors.
lint-newest: $(UV)
	rm -rf .venv-newest
	$(UV) venv --quiet --python $(PYTHON) .venv-newest
	VIRTUAL_ENV=.venv-newest $(UV) pip install --quiet --upgrade -e '.[dev]' mypy ruff
	.venv-newest/bin/ruff --version && .venv-newest/bin/mypy --version
	.venv-newest/bin/ruff check .
	.venv-newest/bin/ruff format --check .
	.venv-newest/bin/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak $(ARGS)

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# After editing pyproject.toml's dependencies: re-resolve, keeping every other pin.
lock: $(UV)
	$(UV) lock
	for peer in $(PEERS); do $(UV) lock --project peers/$$peer || exit 1; done

# Move every pin to the newest version pyproject.toml allows.
lock-upgrade: $(UV)
	$(UV) lock --upgrade
	for peer in $(PEERS); do $(UV) lock --upgrade --project peers/$$peer || exit 1; done

# One line and a non-zero status when pyproject.toml and uv.lock disagree (CI runs it).
lock-check: $(UV)
	@$(UV) lock --check --quiet 2>/dev/null || { echo "uv.lock does not match pyproject.toml: run 'make lock' and commit uv.lock" >&2; exit 1; }
	@for peer in $(PEERS); do $(UV) lock --check --quiet --project peers/$$peer 2>/dev/null || { echo "peers/$$peer/uv.lock does not match its pyproject.toml: run 'make lock' and commit it" >&2; exit 1; }; done

# Re-pin uv itself (the version in tools/uv-requirements.txt, with every wheel's hash).
lock-tools: $(UV)
	echo "uv==$$($(UV) --version | cut -d' ' -f2)" > $(TOOLS)/uv.in
	{ sed -n '1,2p' tools/uv-requirements.txt; $(UV) pip compile --quiet --generate-hashes --no-header $(TOOLS)/uv.in; } > $(TOOLS)/uv.txt
	mv $(TOOLS)/uv.txt tools/uv-requirements.txt

clean:
	rm -rf $(VENV) $(TOOLS) .venv-newest $(foreach peer,$(PEERS),peers/$(peer)/.venv) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
