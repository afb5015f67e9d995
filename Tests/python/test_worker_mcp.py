"""The worker as an MCP server, line by line (no MCP library needed): version negotiation, the
tool listing's schemas and shapes per MCP revision, every tool's arguments of the wrong type
answered as isError results naming them, progress and MCP's cancellation (no response), and the
worker alive and holding its state throughout."""
import json
import re
import time

import pytest

from test_worker_robustness import JSON_TYPES, accepted_types
from test_worker_support import ROOT, Worker, ok

TINY = {"architecture": {"size": 32, "generator_widths": [32, 16, 8], "discriminator_widths": [8, 16, 32],
                         "discriminator_strides": [1, 2, 2], "representation": 16, "latent": 20}, "batch_size": 8}
MCP_VERSIONS = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]


def start(version):
    w = Worker()
    r = w.call("initialize", {"protocolVersion": version, "clientInfo": {"name": "pytest-mcp", "version": "1"}, "capabilities": {}})
    return w, r


def tool(w, name, arguments=None, meta=None):
    params = {"name": name, "arguments": arguments or {}}
    if meta:
        params["_meta"] = meta
    return ok(w.call("tools/call", params))


def tool_json(r):
    assert r["isError"] is False, r["content"][0]["text"]
    return json.loads(r["content"][0]["text"])


@pytest.mark.parametrize("asked,answered", [(v, v) for v in MCP_VERSIONS] + [("2099-01-01", "2025-11-25"), ("draft", "2025-11-25")])
def test_initialize_answers_an_mcp_revision_it_speaks_with_itself_and_another_with_the_newest(asked, answered):
    w, r = start(asked)
    try:
        res = ok(r)
        assert res["protocolVersion"] == answered
        assert res["cytoganProtocolVersion"] == "1.0" and res["versions"]["protocol"] == "1.0"
        caps = res["capabilities"]
        assert caps["tools"] == {"listChanged": False} and caps["prompts"] == {"listChanged": False}
        assert caps["resources"] == {"listChanged": False, "subscribe": False}
        assert "tools/call" in caps["methods"] and "features/extract" in caps["methods"]
        assert "create_model" in res["instructions"]
        w.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert ok(w.call("ping")) == {}
        assert ok(w.call("jobs/list")) == {"jobs": []}
        w.close_input()
        assert w.wait() == 0
    finally:
        w.kill()


@pytest.mark.parametrize("asked", ["1.0", "1.7"])
def test_a_cytogan_client_gets_the_answer_it_always_got(asked):
    w, r = start(asked)
    try:
        res = ok(r)
        assert res["protocolVersion"] == "1.0"
        assert not {"cytoganProtocolVersion", "instructions"} & set(res)
        assert not {"tools", "resources", "prompts"} & set(res["capabilities"])
    finally:
        w.kill()


@pytest.mark.parametrize("asked", ["2.0", "0.9", ""])
def test_another_cytogan_major_or_nothing_is_refused_naming_protocol_version(asked):
    w, r = start(asked)
    try:
        assert r["error"]["code"] == -32602 and r["error"]["data"]["field"] == "protocolVersion"
        if asked:
            assert r["error"]["data"]["supported"] == ["1.0", *MCP_VERSIONS]
        assert w.call("jobs/list")["error"]["code"] == -32001  # still uninitialized
    finally:
        w.kill()


def test_tool_listings_are_json_schemas_in_the_shape_of_the_sessions_revision():
    import jsonschema

    doc = (ROOT / "protocol" / "PROTOCOL.md").read_text()
    for version, title, annotations, structured in [("2024-11-05", False, False, False), ("2025-03-26", False, True, False),
                                                     ("2025-06-18", True, True, True), ("2025-11-25", True, True, True)]:
        w, r = start(version)
        try:
            ok(r)
            tools = ok(w.call("tools/list"))["tools"]
            assert len(tools) >= 15
            for t in tools:
                assert re.fullmatch(r"[a-z_]+", t["name"]), t["name"]
                assert f"`{t['name']}`" in doc, f"{t['name']} is not in PROTOCOL.md's tool table"
                s = t["inputSchema"]
                jsonschema.Draft202012Validator.check_schema(s)
                assert s["type"] == "object" and s["additionalProperties"] is False
                assert set(s.get("required", [])) <= set(s["properties"]), t["name"]
                for name, prop in s["properties"].items():
                    assert prop.get("description") or prop.get("anyOf"), f"{t['name']}.{name} has no description"
                assert ("title" in t) == title and ("annotations" in t) == annotations, (version, t)
            r = tool(w, "list_tables")
            assert ("structuredContent" in r) == structured
            assert tool_json(r) == {"tables": []}
            assert w.call("tools/list", {"cursor": "x"})["error"]["data"]["field"] == "cursor"
        finally:
            w.kill()


# Arguments that decode for each tool (most name files that do not exist: a wrong-typed argument
# must be refused before anything is read).
VALID = {
    "create_model": {}, "load_model": {"path": "x.safetensors"}, "save_model": {"path": "x.safetensors"},
    "model_info": {}, "train_model": {"data": {"directory": "nowhere"}, "steps": 1},
    "job_status": {"jobId": "job-99"}, "list_jobs": {}, "cancel_job": {"jobId": "job-99"},
    "extract_features": {"crops": ["x.tif"]}, "generate_cells": {"count": 1},
    "interpolate_cells": {"from": 1, "to": 2}, "cell_algebra": {"a": 1, "b": 2, "c": 3},
    "encode_cells": {"crops": ["x.tif"]}, "aggregate_profiles": {"source": "x.csv"},
    "normalize_profiles": {"source": "x.csv", "controls": {"column": "Metadata_Compound", "values": ["DMSO"]}},
    "score_profiles": {"source": "x.csv"}, "list_tables": {}, "export_table": {"source": "x.csv", "path": "y.csv"},
    "evaluate_realism": {"manifest": "x.csv"},
}


def test_every_argument_of_every_tool_of_the_wrong_type_is_an_is_error_result_naming_it():
    w, r = start("2025-06-18")
    try:
        ok(r)
        ok(w.call("model/create", {"preset": "small-64", "config": TINY}))
        tools = ok(w.call("tools/list"))["tools"]
        assert set(VALID) == {t["name"] for t in tools}, "VALID needs arguments for every tool"
        checked = 0
        for t in tools:
            base = VALID[t["name"]]
            for name, prop in t["inputSchema"]["properties"].items():
                for typ, bad in JSON_TYPES.items():
                    if typ in accepted_types(prop, None):
                        continue
                    res = tool(w, t["name"], {**base, name: bad})
                    assert res["isError"] is True, f"{t['name']} accepted {name}={bad!r}"
                    err = res["structuredContent"]["error"]
                    assert err["code"] == -32602 and err["data"]["field"] == name, f"{t['name']} {name}={bad!r}: {err}"
                    assert name in res["content"][0]["text"]
                    checked += 1
            res = tool(w, t["name"], {**base, "noSuchArgument": 1})
            assert res["isError"] is True and res["structuredContent"]["error"]["data"]["field"] == "noSuchArgument"
        assert checked > 150, checked
        # The worker answers, holds its model and is still initialized.
        assert ok(w.call("ping")) == {}
        assert tool_json(tool(w, "model_info"))["featureDim"] == 16
        assert w.call("initialize", {"protocolVersion": "2025-06-18", "clientInfo": {"name": "x", "version": "1"}})["error"]["code"] == -32002
    finally:
        w.kill()


def test_a_call_cancelled_by_an_mcp_client_gets_no_response_and_its_progress_came_first():
    w, r = start("2025-06-18")
    try:
        ok(r)
        ok(w.call("model/create", {"preset": "small-64", "config": TINY}))
        w.send({"jsonrpc": "2.0", "id": "long", "method": "tools/call", "params": {
            "name": "generate_cells", "arguments": {"count": 10000, "pictures": "none", "returnLatents": False},
            "_meta": {"progressToken": "p"}}})
        first = w.recv(timeout=60)
        assert first["method"] == "notifications/progress" and first["params"]["progressToken"] == "p"
        assert first["params"]["total"] == 10000 and 0 < first["params"]["progress"] < 10000
        w.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "long", "reason": "enough"}})
        # A computing request after it: it runs once the cancelled one has stopped, so its answer
        # comes after anything the cancelled one could have written.
        w.send({"jsonrpc": "2.0", "id": "next", "method": "tools/call", "params": {"name": "generate_cells", "arguments": {"count": 2}}})
        _, seen = w.recv_until("next", timeout=60)
        assert not [m for m in seen if m.get("id") == "long"], "the cancelled request was answered"
        progress = [m["params"]["progress"] for m in seen if m.get("method") == "notifications/progress"]
        assert all(p < 10000 for p in progress)
        assert len([c for c in seen[-1]["result"]["content"] if c["type"] == "image"]) == 1
        assert ok(w.call("ping")) == {}
    finally:
        w.kill()


def test_a_cancelled_tool_call_in_a_cytogan_session_is_answered_with_minus_32800():
    w = Worker()
    try:
        w.initialize()
        ok(w.call("model/create", {"preset": "small-64", "config": TINY}))
        w.send({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "generate_cells", "arguments": {"count": 10000, "pictures": "none"}, "_meta": {"progressToken": 1}}})
        assert w.recv(timeout=60)["method"] == "notifications/progress"
        w.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}})
        m, _ = w.recv_until(7, timeout=60)
        assert m["error"]["code"] == -32800 and m["error"]["data"]["requestId"] == 7
    finally:
        w.kill()


def test_job_status_waits_for_a_training_job_and_passes_its_progress_on(tmp_path, cytogan):
    cytogan("synth", "--out", tmp_path / "s", "--moas", 1, "--compounds-per-moa", 1, "--concentrations", "1",
            "--batches", 1, "--plates-per-batch", 1, "--control-wells", 1, "--cells-per-well", 8, "--size", 32)
    w, r = start("2025-03-26")
    try:
        ok(r)
        tool_json(tool(w, "create_model", {"preset": "small-64", "config": TINY}))
        job = tool_json(tool(w, "train_model", {"data": {"manifest": str(tmp_path / "s" / "crops.csv")}, "steps": 6}))
        t0 = time.time()
        w.send({"jsonrpc": "2.0", "id": "w", "method": "tools/call", "params": {
            "name": "job_status", "arguments": {"jobId": job["jobId"], "waitSeconds": 120}, "_meta": {"progressToken": "t"}}})
        m, seen = w.recv_until("w", timeout=150)
        status = json.loads(m["result"]["content"][0]["text"])
        assert status["state"] == "done" and status["result"]["step"] == 6 and time.time() - t0 < 120
        mine = [x["params"] for x in seen if x.get("method") == "notifications/progress" and x["params"]["progressToken"] == "t"]
        assert mine and mine[-1]["progress"] == 6 and mine[-1]["total"] == 6
        assert [p["progress"] for p in mine] == sorted({p["progress"] for p in mine})
    finally:
        w.kill()
