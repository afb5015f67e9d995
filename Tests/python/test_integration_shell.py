"""integrations/shell: the example scripts (find, xargs, jq, the worker driven by jq-built JSON
lines, the batch profile commands) run offline on a tiny synthetic screen made by `cytogan synth`;
their features are checked against the Python client's (an independent reader of the protocol)."""
import csv
import json
import os
import pathlib

import numpy as np
import pytest

from test_integration_support import BIN, INTEGRATIONS, cytogan_client, require, require_command, run, synth_screen  # noqa: F401

SHELL = INTEGRATIONS / "shell"
ENV = {"CYTOGAN": BIN}


def read_features(path):
    """{crop path: float32 features} of a CSV whose first column is the crop path."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], {os.path.realpath(r[0]): np.array(r[1:], dtype=np.float32) for r in rows[1:]}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    require("model/create", "model/save")
    out = tmp_path_factory.mktemp("shell") / "model.safetensors"
    p = run([str(SHELL / "make-model.sh"), str(out), "small-64", "3"], env=ENV)
    assert out.is_file() and "saved" in p.stdout
    return out


def client_features(model, paths, batch_size=None):
    with cytogan_client.Worker.start(BIN) as w:
        w.model_load(model)
        return w.extract([cytogan_client.crop_file(p) for p in paths], output="numpy", batch_size=batch_size)


def test_find_into_line_mode_extract(model, synth_screen, tmp_path):
    require_command("extract")
    p = run([str(SHELL / "extract-find.sh"), str(model), str(synth_screen / "crops")], env=ENV)
    (tmp_path / "f.csv").write_text(p.stdout)
    header, feats = read_features(tmp_path / "f.csv")
    tifs = sorted(str(x) for x in (synth_screen / "crops").rglob("*.tif"))
    assert len(feats) == len(tifs) and set(feats) == {os.path.realpath(t) for t in tifs}
    ref = client_features(model, tifs)
    got = np.stack([feats[os.path.realpath(t)] for t in tifs])
    # Different batches (the CLI's 256, the worker's 64) round the last bits differently.
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)


def test_xargs_parallel_equals_one_process_with_the_same_batches(model, synth_screen, tmp_path):
    require_command("extract")
    out = tmp_path / "par.csv"
    run([str(SHELL / "extract-xargs-parallel.sh"), str(model), str(synth_screen / "crops"), str(out), "2", "5"], env=ENV)
    tifs = sorted(str(x) for x in (synth_screen / "crops").rglob("*.tif"))
    one = run(f"printf '%s\\n' {' '.join(tifs)} | {BIN} extract --model {model} --paths - --batch 5 --threads 1",)
    (tmp_path / "one.csv").write_text(one.stdout)
    h1, par = read_features(out)
    h2, ref = read_features(tmp_path / "one.csv")
    assert h1 == h2 and par.keys() == ref.keys() and len(par) == len(tifs)
    for k in ref:
        np.testing.assert_array_equal(par[k], ref[k])


def test_serve_driven_by_jq_lines(model, synth_screen, tmp_path):
    require("model/load", "features/extract")
    p = run([str(SHELL / "serve-jq.sh"), str(model), str(synth_screen / "crops")], env=ENV)
    (tmp_path / "s.csv").write_text(p.stdout)
    header, feats = read_features(tmp_path / "s.csv")
    assert header[0] == "path" and header[1] == "Cytogan_representation_0"
    tifs = sorted(str(x.resolve()) for x in (synth_screen / "crops").rglob("*.tif"))
    ref = client_features(model, tifs)
    np.testing.assert_array_equal(np.stack([feats[t] for t in tifs]), ref)  # same worker, same batches: exact
    assert "progress" in p.stderr


def test_profile_and_score_with_jq(model, synth_screen, tmp_path):
    require_command("extract")
    p = run([str(SHELL / "profile-score.sh"), str(model), str(synth_screen / "crops.csv"), str(tmp_path / "w")], env=ENV)
    scores = json.loads(p.stdout)
    assert set(scores) == {"nsc", "nscb", "per_compound", "map"}
    assert 0 <= scores["nsc"] <= 1
    full = json.loads((tmp_path / "w" / "moa.json").read_text())
    assert scores["nsc"] == full["nsc"] and scores["map"] == full["map"]
