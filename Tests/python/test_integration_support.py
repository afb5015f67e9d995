"""Helpers for the integration tests (integrations/ and examples/): the client package on
sys.path, a tiny synthetic screen made by `cytogan synth`, a small model, and skips that say
which worker method is not served yet. No tests here."""
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import BIN, ROOT

INTEGRATIONS = ROOT / "integrations"
PYTHON_CLIENT = INTEGRATIONS / "python"
for p in (PYTHON_CLIENT, INTEGRATIONS / "dask", INTEGRATIONS / "cellprofiler", ROOT / "examples" / "bbbc021"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import cytogan_client  # noqa: E402

_served = None


def served_methods():
    """The request methods this build's worker serves (asked once per session)."""
    global _served
    if _served is None:
        with cytogan_client.Worker.start(BIN) as w:
            _served = set(w.methods)
    return _served


def require(*methods):
    """Skips the test, naming them, when the worker does not serve all of `methods` yet."""
    missing = sorted(set(methods) - served_methods())
    if missing:
        pytest.skip(f"this build of `cytogan serve` does not serve {', '.join(missing)} yet (PROTOCOL.md: specified, not registered)")


def require_command(*args):
    """Skips when `cytogan ARGS --help` fails: a batch subcommand that is still a placeholder."""
    p = subprocess.run([BIN, *args, "--help"], capture_output=True, text=True)
    if p.returncode != 0 or "not built yet" in p.stdout + p.stderr:
        pytest.skip(f"`cytogan {' '.join(args)}` is not built in this binary yet")


SYNTH_ARGS = ["--moas", "2", "--compounds-per-moa", "2", "--concentrations", "1", "--batches", "1",
              "--plates-per-batch", "2", "--control-wells", "2", "--cells-per-well", "2", "--size", "48",
              "--threads", "2"]


@pytest.fixture(scope="session")
def synth_screen(tmp_path_factory):
    """A tiny synthetic screen (`cytogan synth`): DIR with crops/ and crops.csv (a few dozen crops)."""
    d = tmp_path_factory.mktemp("synth")
    p = subprocess.run([BIN, "synth", "--out", str(d), *SYNTH_ARGS], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (d / "crops.csv").is_file()
    return d


@pytest.fixture(scope="session")
def small_model(tmp_path_factory):
    """A checkpoint of the `small-64` preset (untrained, seed 1) written by the worker."""
    require("model/create", "model/save")
    path = tmp_path_factory.mktemp("model") / "small.safetensors"
    with cytogan_client.Worker.start(BIN) as w:
        w.model_create("small-64", seed=1)
        w.model_save(path)
    return path


def manifest_rows(path):
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run(cmd, *, cwd=None, env=None, input=None, timeout=300):
    """Runs a command (list or shell string) and returns the CompletedProcess; fails with its stderr."""
    shell = isinstance(cmd, str)
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(cmd, shell=shell, cwd=cwd, env=e, input=input, capture_output=True, text=True, timeout=timeout,
                       executable="/bin/bash" if shell else None)
    if p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
    return p


__all__ = ["BIN", "ROOT", "INTEGRATIONS", "PYTHON_CLIENT", "cytogan_client", "served_methods", "require",
           "require_command", "synth_screen", "small_model", "manifest_rows", "run", "SYNTH_ARGS"]
