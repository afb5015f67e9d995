"""`cytogan serve` as an MCP server, driven by the official MCP Python SDK (`mcp` on PyPI): the
SDK starts the worker over stdio, initializes, lists the tools and calls each of them on the
built-in synthetic screen; every number is checked against what the command line computes for
the same inputs (`cytogan extract`, `cytogan sample`, `cytogan profile`, `cytogan evaluate`).

scripts/python-tests.sh runs this file in its own virtual environment (.venv-mcp) with `mcp`
installed; elsewhere it is skipped when `mcp` cannot be imported."""
import asyncio
import base64
import csv
import io
import json
import os

import numpy as np
import pytest

mcp = pytest.importorskip(
    "mcp", reason="the MCP Python SDK is not installed here: scripts/python-tests.sh installs it into .venv-mcp and runs this file there")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from conftest import BIN  # noqa: E402

# A tiny network so that training and sampling take seconds on two cores.
TINY = {"architecture": {"size": 32, "generator_widths": [32, 16, 8], "discriminator_widths": [8, 16, 32],
                         "discriminator_strides": [1, 2, 2], "representation": 16, "latent": 20}, "batch_size": 8}


@pytest.fixture(scope="module")
def screen(tmp_path_factory, cytogan):
    """A small synthetic screen (3 MOAs x 2 compounds x 2 doses, DMSO wells, 2 batches) from `cytogan synth`."""
    d = tmp_path_factory.mktemp("mcp-screen")
    cytogan("synth", "--out", d / "synth", "--moas", 3, "--compounds-per-moa", 2, "--concentrations", "1,3",
            "--batches", 2, "--plates-per-batch", 1, "--control-wells", 2, "--cells-per-well", 4, "--size", 32)
    return d


def plain(model):
    """An SDK result as the JSON the worker sent (camelCase keys), whichever SDK version made it."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def structured(result):
    """A successful tools/call result's JSON: the text content, which must equal structuredContent."""
    r = plain(result)
    assert r.get("isError") is not True, r["content"][0]["text"]
    assert r["content"][0]["type"] == "text"
    data = json.loads(r["content"][0]["text"])
    if "structuredContent" in r:
        assert r["structuredContent"] == data
    return data


def images(result):
    """The PNG pictures of a tools/call result, decoded to RGB arrays."""
    from PIL import Image

    out = []
    for c in plain(result)["content"]:
        if c["type"] == "image":
            assert c["mimeType"] == "image/png"
            png = base64.b64decode(c["data"])
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            out.append(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
    return out


def read_cli_table(path):
    """A feature table the command line wrote: metadata columns and a float matrix."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    feats = [i for i, h in enumerate(header) if not h.startswith("Metadata_")]
    return [dict(zip(header, r)) for r in body], np.array([[float(r[i]) for i in feats] for r in body])


def render(tif):
    """A 16-bit generated-cell TIFF (3 samples per pixel: DNA, tubulin, actin; -1 -> 0, 1 -> 65535)
    in the paper's colours (red, green, blue) as 8-bit RGB: the picture generate_cells should
    return for the same cell."""
    import tifffile

    v = tifffile.imread(tif).astype(np.float64) / 65535.0  # back to [0, 1] from the model's [-1, 1]
    assert v.shape[-1] == 3, v.shape
    return np.clip(np.rint(v * 255), 0, 255)


async def session_run(body, cwd):
    params = StdioServerParameters(command=BIN, args=["serve", "--log-level", "warning"], cwd=str(cwd))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as s:
            init = await s.initialize()
            return await body(s, init)


def test_the_mcp_sdk_drives_every_tool_and_gets_the_command_lines_numbers(screen, cytogan):
    synth = screen / "synth"
    manifest = synth / "crops.csv"
    model = screen / "model.safetensors"
    rows = list(csv.DictReader(open(manifest)))
    paths = [str(synth / r["path"]) for r in rows]
    progress = []

    async def body(s, init):
        # The handshake: the SDK's own protocol version is answered with itself, cytogan's beside it.
        i = plain(init)
        assert i["protocolVersion"] in ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
        assert i["serverInfo"]["name"] == "cytogan"
        assert "tools" in i["capabilities"] and "resources" in i["capabilities"] and "prompts" in i["capabilities"]
        await s.send_ping()

        listed = plain(await s.list_tools())["tools"]
        tools = {t["name"]: t for t in listed}
        for t in listed:
            assert t["inputSchema"]["type"] == "object" and isinstance(t["inputSchema"]["properties"], dict), t["name"]
            assert t["description"], t["name"]
        called = set()

        async def call(name, args=None, **kw):
            called.add(name)
            return await s.call_tool(name, args or {}, **kw)

        # A model, trained as a background job followed with job_status, saved for the command line.
        info = structured(await call("create_model", {"preset": "small-64", "config": TINY, "seed": 3}))
        assert info["featureDim"] == 16 and info["step"] == 0
        job = structured(await call("train_model", {"data": {"manifest": str(manifest)}, "steps": 12}))
        assert job["kind"] == "train" and job["state"] in ("queued", "running")

        async def on_progress(p, total, message):
            progress.append((p, total, message))

        done = structured(await call("job_status", {"jobId": job["jobId"], "waitSeconds": 300}, progress_callback=on_progress))
        assert done["state"] == "done" and done["result"]["step"] == 12, done
        assert structured(await call("list_jobs"))["jobs"][0]["jobId"] == job["jobId"]
        assert structured(await call("model_info"))["step"] == 12
        saved = structured(await call("save_model", {"path": str(model)}))
        assert saved["step"] == 12 and os.path.getsize(model) == saved["bytes"]
        assert structured(await call("load_model", {"path": str(model)}))["checkpoint"] == str(model)

        # A job cancelled: train on for many more steps, cancel, and the job says so.
        long = structured(await call("train_model", {"data": {"crops": paths[:8]}, "steps": 1_000_000}))
        cancelled = structured(await call("cancel_job", {"jobId": long["jobId"], "reason": "enough"}))
        assert cancelled["state"] == "cancelled" and cancelled["error"]["data"]["reason"] == "enough"
        structured(await call("load_model", {"path": str(model)}))  # back to step 12

        # Features by crop paths and by manifest; pictures; profiles; realism.
        by_paths = structured(await call("extract_features", {"paths": paths, "batchSize": 64}))
        by_manifest = structured(await call("extract_features", {
            "manifest": str(manifest), "keep": True, "table": "cells", "returnFeatures": True}))
        generated = await call("generate_cells", {"count": 4, "seed": 5, "pictures": "both"})
        interp = await call("interpolate_cells", {"from": 5, "to": 6, "steps": 5, "mode": "slerp", "pictures": "cells"})
        algebra = await call("cell_algebra", {"a": 1, "b": 2, "c": 3})
        encoded = await call("encode_cells", {"crops": paths[:2], "steps": 5, "restarts": 1, "pictures": "cells"})
        agg = structured(await call("aggregate_profiles", {
            "source": "cells", "by": ["Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_Concentration"],
            "join": ["Metadata_Batch"], "into": "wells"}))
        norm = structured(await call("normalize_profiles", {
            "source": "wells", "controls": {"column": "Metadata_Compound", "values": ["DMSO"]},
            "by": ["Metadata_Plate"], "into": "normalized"}))
        score = structured(await call("score_profiles", {
            "source": "normalized", "batch": "Metadata_Batch",
            "exclude": {"column": "Metadata_Compound", "values": ["DMSO"]}, "neighbors": 3}))
        tables = structured(await call("list_tables"))
        exported = structured(await call("export_table", {"source": "normalized", "path": str(screen / "normalized.csv")}))
        realism = structured(await call("evaluate_realism", {
            "manifest": str(manifest), "count": 12, "folds": 2, "epochs": 1, "seed": 4}))

        # A bad argument is a tool error naming it, and the worker goes on.
        bad = plain(await call("generate_cells", {"count": 0}))
        assert bad["isError"] is True and "count" in bad["content"][0]["text"]
        missing = plain(await call("extract_features", {"paths": [paths[0], str(screen / "no-such.tif")]}))
        assert missing["isError"] is True and "paths[1]" in missing["content"][0]["text"]
        await s.send_ping()

        # Resources and prompts.
        res = plain(await s.list_resources())["resources"]
        uris = [r["uri"] for r in res]
        assert "cytogan://protocol" in uris and "cytogan://model" in uris
        doc = plain(await s.read_resource("cytogan://protocol"))["contents"][0]
        assert doc["mimeType"] == "text/markdown" and "tools/call" in doc["text"]
        current = json.loads(plain(await s.read_resource("cytogan://model"))["contents"][0]["text"])
        assert current["model"]["step"] == 12
        prompts = [p["name"] for p in plain(await s.list_prompts())["prompts"]]
        assert "profile_screen" in prompts
        got = plain(await s.get_prompt("profile_screen", {"manifest": str(manifest)}))
        assert str(manifest) in got["messages"][0]["content"]["text"]

        assert called == set(tools), f"tools not called: {sorted(set(tools) - called)}"
        return dict(by_paths=by_paths, by_manifest=by_manifest, generated=generated, interp=interp, algebra=algebra,
                    encoded=encoded, agg=agg, norm=norm, score=score, tables=tables, exported=exported, realism=realism)

    r = asyncio.run(session_run(body, screen))
    assert progress and progress[-1][0] == 12 and progress[-1][1] == 12, progress

    # Features: `cytogan extract` of the same checkpoint and crops. With the command line's batch
    # size (the tool's default) the numbers are the same to the last bit; in batches of another
    # size the matrix products are blocked differently.
    cytogan("extract", "--model", model, "--manifest", manifest, "--out", screen / "cli-features.csv")
    meta, cli = read_cli_table(screen / "cli-features.csv")
    for got in (r["by_paths"], r["by_manifest"]):
        assert got["count"] == len(rows) and got["dim"] == 16
    np.testing.assert_array_equal(np.array(r["by_manifest"]["features"], dtype=np.float32), cli.astype(np.float32))
    np.testing.assert_allclose(np.array(r["by_paths"]["features"]), cli, rtol=1e-5, atol=1e-7)
    assert [m["Metadata_Well"] for m in meta] == [row["Metadata_Well"] for row in rows]

    # Pictures: `cytogan sample` with the same seed writes the same cells as TIFFs.
    cytogan("sample", "--model", model, "--count", 4, "--seed", 5, "--out", screen / "cli-samples")
    gen = images(r["generated"])
    assert len(gen) == 5  # the montage, then one picture per cell
    for k in range(4):
        want = render(screen / "cli-samples" / f"sample-{k:04d}.tif")
        assert gen[k + 1].shape == want.shape == (32, 32, 3)
        assert np.abs(gen[k + 1].astype(float) - want).max() <= 1, k
    # The montage: one row of four 32-pixel cells, 2-pixel gaps around each, the cells in order.
    assert gen[0].shape == (2 + 32 + 2, 2 + 4 * 34, 3)
    for k in range(4):
        assert (gen[0][2:34, 2 + k * 34:2 + k * 34 + 32] == gen[k + 1]).all()
    latents = structured(r["generated"])["latents"]
    assert len(latents) == 4 and len(latents[0]) == 20
    interp = images(r["interp"])
    assert len(interp) == 5
    # The ends of an interpolation are the cells of its seeds: seed 5 is sample 0 above (drawn in
    # another batch, so the last bits of the sums, and a level of the picture, may differ).
    assert np.abs(interp[0].astype(int) - gen[1].astype(int)).max() <= 1
    alg = images(r["algebra"])
    assert len(alg) == 1 and alg[0].shape == (36, 2 + 4 * 34, 3)
    enc = structured(r["encoded"])
    assert len(enc["latents"]) == 2 and len(images(r["encoded"])) == 2

    # Profiles: the command line's aggregate, normalize and score of its own extraction.
    cytogan("profile", "aggregate", "--input", screen / "cli-features.csv", "--output", screen / "cli-wells.csv",
            "--by", "Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_Concentration",
            "--join", "Metadata_Batch")
    cytogan("profile", "normalize", "--input", screen / "cli-wells.csv", "--output", screen / "cli-normalized.csv",
            "--control", "Metadata_Compound=DMSO", "--per", "Metadata_Plate")
    cli_score = json.loads(cytogan("profile", "score", "--profiles", screen / "cli-normalized.csv",
                                   "--batch-column", "Metadata_Batch", "--neighbors", 3).stdout)
    wells = len({(m["Metadata_Plate"], m["Metadata_Well"]) for m in meta})
    assert r["agg"]["rows"] == wells
    _, cli_norm = read_cli_table(screen / "cli-normalized.csv")
    _, mcp_norm = read_cli_table(screen / "normalized.csv")
    # The two ways sum in different orders; dividing by the spread of two control wells per plate
    # magnifies the last bits (features with almost no spread among controls reach thousands).
    np.testing.assert_allclose(mcp_norm, cli_norm, rtol=1e-3, atol=1e-6)
    assert r["exported"]["rows"] == r["norm"]["rows"] == wells
    score = r["score"]
    assert score["nsc"]["accuracy"] == pytest.approx(cli_score["nsc"], abs=1e-12)
    if cli_score["nscb"] is None:
        assert score["nscb"] is None
    else:
        assert score["nscb"]["accuracy"] == pytest.approx(cli_score["nscb"], abs=1e-12)
    assert score["map"] == pytest.approx(cli_score["map"], abs=1e-12)
    assert score["perCompound"]["mean"] == pytest.approx(cli_score["per_compound"], abs=1e-12)
    assert len(score["neighbors"]) == len(cli_score["treatments"]) == score["treatments"]
    for mine, theirs in zip(score["neighbors"], cli_score["treatments"]):
        assert (mine["compound"], mine["concentration"]) == (theirs["compound"], theirs["concentration"])
        assert mine["nscCorrect"] == theirs["nsc_correct"]
        assert [(n["compound"], n["concentration"]) for n in mine["neighbors"]] == \
            [(n["compound"], n["concentration"]) for n in theirs["neighbors"]]
        np.testing.assert_allclose([n["distance"] for n in mine["neighbors"]],
                                   [n["distance"] for n in theirs["neighbors"]], rtol=1e-3, atol=1e-5)
    assert {t["name"] for t in r["tables"]["tables"]} == {"cells", "wells", "normalized"}

    # Realism: `cytogan evaluate realism` of the same checkpoint, manifest, counts and seed.
    cli_real = json.loads(cytogan("evaluate", "realism", "--model", model, "--manifest", manifest, "--count", 12,
                                  "--folds", 2, "--epochs", 1, "--seed", 4).stdout)
    mine = r["realism"]
    assert mine["step"] == 12
    for key in ("distance", "floor"):
        assert mine["frechet"][key] == pytest.approx(cli_real["frechet"][key], rel=1e-9)
    assert mine["classifier"]["accuracy"] == pytest.approx(cli_real["classifier"]["accuracy"], abs=1e-12)
