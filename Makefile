# The two commands a newcomer needs are `make run` and `make test`; everything else is for maintainers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements/lock.txt
export PYTHONPATH := $(CURDIR)/service:$(CURDIR)

HOST ?= 127.0.0.1
PORT ?= 8080
STACK ?= dev

.PHONY: run batch test lint plan golden bench fixtures lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per requirements group: `make run` installs only what the service needs.
$(VENV)/.service: requirements/service.txt requirements/lock.txt | $(BIN)/python
	$(PIP) -r requirements/service.txt
	touch $@

$(VENV)/.dev: $(VENV)/.service requirements/infra.txt requirements/dev.txt requirements/lock.txt
	$(PIP) -r requirements/service.txt -r requirements/infra.txt -r requirements/dev.txt
	touch $@

run: $(VENV)/.service ## Serve the API on the bundled tiny.en model (WHISPER_* variables pass through).
	HOST=$(HOST) PORT=$(PORT) WHISPER_LOG_JSON=$${WHISPER_LOG_JSON:-false} $(BIN)/python -m whisper_api

# make itself exits only 0 or 2, so the CLI's status is named, and an interrupted run (130) makes
# make die of SIGINT as Ctrl-C at a terminal does: the calling shell then sees 130. The recipe's
# shell outlives that signal by a second: make, signalled as its child left, failed "wait: No child
# processes" and exited 2.
batch: $(VENV)/.service ## Transcribe every recording under IN (folder or gs://) into OUT; ARGS="--formats srt,vtt" etc.
	@test -n "$(IN)" -a -n "$(OUT)" || { echo 'usage: make batch IN=folder-or-gs://bucket/prefix OUT=folder-or-gs://bucket/prefix [ARGS="--formats srt"]' >&2; exit 2; }
	@WHISPER_LOG_JSON=$${WHISPER_LOG_JSON:-false} $(BIN)/python -m whisper_api.batch "$(IN)" "$(OUT)" $(ARGS); \
	status=$$?; case $$status in \
	  0) ;; \
	  1) echo "make batch: exit status 1: some recordings failed (see the manifest)" >&2 ;; \
	  130) kill -INT $$PPID; sleep 1 & wait $$! ;; \
	  *) echo "make batch: exit status $$status" >&2 ;; \
	esac; exit $$status

test: $(VENV)/.dev ## Every test: service, infra (mock runtime), Dockerfiles, workflows, policies (WHISPER_IMAGE_TESTS=1: build and run the images too).
	$(BIN)/python -m pytest

lint: $(VENV)/.dev ## Every offline linter: ruff, mypy, zizmor + shellcheck (platform), hadolint + checkov (images).
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy service/whisper_api infra bench
	scripts/lint-platform
	scripts/lint-docker

plan: $(VENV)/.dev ## Evaluate the Pulumi program for STACK on the mock runtime and print its resources.
	$(BIN)/python scripts/plan --stack $(STACK)

golden: $(VENV)/.dev ## Rewrite the committed plans of the dev and prod stacks (tests/infra/golden/) after an infra change.
	for stack in dev prod; do $(BIN)/python scripts/plan --stack $$stack > tests/infra/golden/$$stack.txt || exit 1; done

bench: $(VENV)/.dev ## Rerun every benchmark into benchmarks/ (quiet machine, ~30 min on 2 cores; AUDIO=folder of jfk.flac and multilingual.mp3, required; WHISPER_CPP=.cache/whisper-cpp).
	PYTHON=$(BIN)/python AUDIO="$(AUDIO)" scripts/bench-all

fixtures: ## Regenerate tests/fixtures (needs espeak-ng, sox and ffmpeg from apt; the tests do not).
	scripts/make-fixtures

lock: $(VENV)/.dev ## Regenerate the images' pins (service/requirements-*.txt) from requirements/lock.txt.
	$(BIN)/python scripts/lock-images

clean:
	rm -rf $(VENV) .venv-tools .pytest_cache .ruff_cache .mypy_cache
