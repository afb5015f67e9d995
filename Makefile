# The README's two Quick start commands. Each installs what is missing first.
#   make demo   set up, build in release mode, run the main job on built-in data
#   make test   set up and run every test (Swift, then the Python reference checks; the MPI checks
#               run when mpirun is installed, which setup tries, and are skipped with a message otherwise)
#   make test-mpi   only the data-parallel checks (simulated ranks in Swift, then mpirun -np 2)
# Installing:
#   make install [PREFIX=~/.local]   build, then PREFIX/bin/cytogan and PREFIX/share/cytogan (no root)
#   make uninstall [PREFIX=...]      remove them again
#   make dist                        dist/cytogan-VERSION-linux-ARCH.tar.gz, runs without Swift
SWIFT ?= swift
BIN := .build/release/cytogan
VENV := .venv-test
PREFIX ?= $(HOME)/.local

.PHONY: setup build demo test test-swift test-python test-mpi install uninstall dist clean

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

test-mpi: build
	$(SWIFT) test -c release --no-parallel --filter 'CollectiveTests|DataParallelTests'
	@[ -x $(VENV)/bin/python ] || { python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -r Tests/python/requirements.txt; }
	CYTOGAN_BIN=$(CURDIR)/$(BIN) $(VENV)/bin/python -m pytest -q -rs Tests/python/test_mpi.py

install: build
	install -d "$(PREFIX)/bin" "$(PREFIX)/share/cytogan"
	install -m 755 $(BIN) "$(PREFIX)/bin/cytogan"
	install -m 644 protocol/PROTOCOL.md "$(PREFIX)/share/cytogan/PROTOCOL.md"
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) echo "installed $(PREFIX)/bin/cytogan (on your PATH)";; \
	  *) echo "installed $(PREFIX)/bin/cytogan; add $(PREFIX)/bin to PATH to call it as cytogan";; esac

uninstall:
	rm -f "$(PREFIX)/bin/cytogan"
	rm -rf "$(PREFIX)/share/cytogan"

dist: setup
	./scripts/dist.sh

clean:
	rm -rf .build .build-dist dist $(VENV) .venv-cp .venv-mcp
