# The README's two Quick start commands. Each installs what is missing first.
#   make demo   set up, build in release mode, run the main job on built-in data
#   make test   set up and run every test (Swift, then the Python reference checks)
SWIFT ?= swift
BIN := .build/release/cytogan
VENV := .venv-test

.PHONY: setup build demo test test-swift test-python clean

setup:
	@./scripts/setup.sh

build: setup
	$(SWIFT) build -c release --product cytogan

demo: build
	$(BIN) demo

# Tests run one at a time: some set the engine's global thread count, which others rely on.
test: setup
	$(SWIFT) build -c release --product cytogan
	$(SWIFT) test -c release --no-parallel
	./scripts/python-tests.sh

test-swift: setup
	$(SWIFT) test -c release --no-parallel

test-python: build
	./scripts/python-tests.sh

clean:
	rm -rf .build $(VENV) .venv-cp
