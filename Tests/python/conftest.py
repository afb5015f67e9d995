"""Shared fixtures for the Python checks: the cytogan binary and the shared data folder."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("CYTOGAN_BIN", str(ROOT / ".build" / "release" / "cytogan"))
SHARED = pathlib.Path(os.environ.get("CYTOGAN_SHARED", str(ROOT.parent / "shared")))


@pytest.fixture(scope="session")
def cytogan():
    """Runs the cytogan binary with arguments; returns the CompletedProcess (text mode)."""
    if not os.path.exists(BIN):
        pytest.fail(f"cytogan binary not built at {BIN}: run `make test`")

    def run(*args, check=True, input=None):
        p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, input=input)
        if check and p.returncode != 0:
            raise AssertionError(f"cytogan {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
        return p

    return run


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data, or a skip with a clear message when it is absent."""
    d = SHARED / "data"
    if not d.is_dir():
        pytest.skip(f"shared data not found at {d}: set CYTOGAN_SHARED to the folder holding data/")
    return d
