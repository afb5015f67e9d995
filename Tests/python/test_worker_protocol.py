"""The protocol's documents against the binary: the JSON Schemas are valid and cover every
method, the capabilities list exactly the methods served, and every transcript in
protocol/transcripts replays byte for byte against `cytogan serve`."""
import json

import pytest

from test_worker_support import TRANSCRIPTS, Worker, schemas

TRANSCRIPT_FILES = sorted(TRANSCRIPTS.glob("*.jsonl"))


def test_schemas_are_valid_draft_2020_12_and_name_their_messages():
    s = schemas()  # checks every schema against the draft 2020-12 metaschema
    for title, d in s.by_title.items():
        assert d["$id"].endswith("/messages/" + title.replace("/", ".") + ".json"), title
        assert d["x-kind"] in ("request", "clientNotification", "serverNotification")
        params = d["$defs"]["params"]
        for example in params.get("examples", []):
            s.jsonschema.Draft202012Validator({"$ref": d["$id"] + "#/$defs/params"}, registry=s.registry).validate(example)


def test_capabilities_list_exactly_the_methods_marked_implemented():
    s = schemas()
    w = Worker()
    try:
        result = w.initialize()
        served = result["capabilities"]["methods"]
        assert served == sorted(served)
        implemented = sorted(t for t, d in s.by_title.items() if d["x-kind"] == "request" and d["x-implemented"])
        assert served == implemented, "capabilities.methods and the schemas' x-implemented flags disagree"
        accepts = sorted(t for t, d in s.by_title.items() if d["x-kind"] == "clientNotification" and d["x-implemented"])
        assert result["capabilities"]["notifications"]["accepts"] == accepts
        sends = sorted(t for t, d in s.by_title.items() if d["x-kind"] == "serverNotification")
        assert result["capabilities"]["notifications"]["sends"] == sends
        catalogue = w.call("methods/list")["result"]
        assert [m["name"] for m in catalogue["methods"]] == served
        for m in catalogue["methods"]:
            props = set(s.by_title[m["name"]]["$defs"]["params"]["properties"]) - {"_meta"}
            assert set(m["params"]) == props, f"{m['name']}: the worker takes {m['params']}, the schema says {sorted(props)}"
        assert [n["name"] for n in catalogue["notifications"]] == accepts
        w.close_input()
        assert w.wait() == 0
    finally:
        w.kill()


def test_every_transcript_line_is_valid_json_of_the_format():
    assert TRANSCRIPT_FILES, "no transcripts in protocol/transcripts"
    keys = {"args", "comment", "send", "sendRaw", "expect", "volatile", "close", "exit"}
    for f in TRANSCRIPT_FILES:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            e = json.loads(line)
            assert set(e) <= keys, f"{f.name}:{n}: {sorted(set(e) - keys)}"


@pytest.mark.parametrize("path", TRANSCRIPT_FILES, ids=[p.stem for p in TRANSCRIPT_FILES])
def test_transcript_replays_exactly(path):
    from test_worker_support import replay

    replay(path)
