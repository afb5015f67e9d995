"""No line, however malformed or hostile, stops the worker or loses its state: garbage, truncated
requests, huge lines, invalid UTF-8, deep nesting, wrong types in every parameter of every method
served, unknown methods. Also batches, notifications, the end of input and SIGTERM."""
import json
import random
import signal

from test_worker_support import Worker, canonical, schemas

JSON_TYPES = {"string": "s", "integer": 7, "number": 2.5, "boolean": True, "null": None, "array": [1], "object": {"k": 1}}


def accepted_types(schema, resolver):
    """The JSON types a parameter schema admits (following $ref, oneOf, anyOf, allOf, enum, const)."""
    if "$ref" in schema:
        r = resolver.lookup(schema["$ref"])
        return accepted_types(r.contents, r.resolver)
    if "type" in schema:
        t = schema["type"]
        types = set(t if isinstance(t, list) else [t])
        if "number" in types:
            types.add("integer")
        return types
    for key in ("oneOf", "anyOf"):
        if key in schema:
            out = set()
            for sub in schema[key]:
                out |= accepted_types(sub, resolver)
            return out
    if "allOf" in schema:
        return accepted_types(schema["allOf"][0], resolver)
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if values is not None:
        return {json_type(v) for v in values}
    return set(JSON_TYPES)


def json_type(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(v)]


def properties(schema, resolver):
    """The named members of an object schema (through $ref and allOf) with the resolver for them."""
    if "$ref" in schema:
        r = resolver.lookup(schema["$ref"])
        return properties(r.contents, r.resolver)
    if "allOf" in schema:
        return properties(schema["allOf"][0], resolver)
    return {k: (v, resolver) for k, v in schema.get("properties", {}).items()}


def mutations(example, schema, resolver, prefix=""):
    """(field path, params) pairs: `example` with one member replaced by a value of each JSON type
    the member does not admit, recursing into nested objects that the example fills in."""
    for name, (sub, res) in properties(schema, resolver).items():
        if name == "_meta":
            continue
        field = f"{prefix}{name}"
        ok = accepted_types(sub, res)
        for t, bad in JSON_TYPES.items():
            if t not in ok:
                yield field, replace(example, field, bad)
        if isinstance(example_at(example, field), dict) and properties(sub, res):
            yield from mutations(example, sub, res, prefix=field + ".")


def example_at(doc, field):
    cur = doc
    for part in field.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def replace(doc, field, value):
    doc = json.loads(json.dumps(doc))
    cur = doc
    parts = field.split(".")
    for part in parts[:-1]:
        cur = cur[part]
    cur[parts[-1]] = value
    return doc


def check_alive(w, jobs_before):
    """The worker answers, is still initialized, and holds the jobs it held."""
    assert w.call("ping")["result"] == {}
    assert w.call("jobs/list")["result"] == jobs_before
    again = w.call("initialize", {"protocolVersion": "1.0", "clientInfo": {"name": "x", "version": "1"}})
    assert again["error"]["code"] == -32002, "the worker lost its initialized state"


def test_wrong_types_in_every_parameter_of_every_method_served():
    s = schemas()
    w = Worker()
    try:
        served = w.initialize()["capabilities"]["methods"]
        before = w.call("jobs/list")["result"]
        checked = 0
        for method in served:
            doc = s.by_title[method]
            params_schema = doc["$defs"]["params"]
            example = params_schema["examples"][0]
            for field, params in mutations(example, params_schema, s.registry.resolver(base_uri=doc["$id"])):
                r = w.call(method, params)
                assert "error" in r, f"{method} accepted {canonical(params)}"
                assert r["error"]["code"] == -32602, f"{method} {canonical(params)}: {r['error']}"
                assert r["error"]["data"]["field"] == field, f"{method} {canonical(params)}: {r['error']}"
                checked += 1
            # An unknown parameter, and _meta of the wrong type.
            r = w.call(method, {**example, "noSuchParameter": 1})
            assert r["error"]["code"] == -32602 and r["error"]["data"]["field"] == "noSuchParameter", r
            r = w.call(method, {**example, "_meta": "x"})
            assert r["error"]["code"] == -32602 and r["error"]["data"]["field"] == "_meta", r
            r = w.call(method, {**example, "_meta": {"progressToken": 1.5}})
            assert r["error"]["data"]["field"] == "_meta.progressToken", r
            r = w.call(method, [1, 2])
            assert r["error"]["code"] == -32602 and r["error"]["data"]["field"] == "params", r
        assert checked > 30, f"only {checked} wrong-typed parameters were tried"
        check_alive(w, before)
        w.close_input()
        assert w.wait() == 0
    finally:
        w.kill()


def test_thousands_of_random_and_truncated_lines_each_get_their_error():
    rng = random.Random(6)
    valid = [
        canonical({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        canonical({"jsonrpc": "2.0", "id": "x", "method": "jobs/status", "params": {"jobId": "job-1"}}),
        canonical([{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "method": "ping"}]),
    ]
    lines = []
    for i in range(3000):
        kind = i % 3
        if kind == 0:  # random bytes, no newline
            b = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).replace(b"\n", b"")
        elif kind == 1:  # random printable text with JSON punctuation
            b = "".join(rng.choice('{}[]",:0123456789.-eE truefalsnl\\"\'abc') for _ in range(rng.randrange(1, 120))).encode()
        else:  # a valid message cut short
            v = rng.choice(valid)
            b = v[: rng.randrange(1, len(v))].encode()
        lines.append(b)
    s = schemas()
    w = Worker()
    try:
        w.initialize()
        before = w.call("jobs/list")["result"]
        first_line = 3  # initialize, notifications/initialized and jobs/list came first
        for b in lines:
            w.send_line(b)
        w.send(({"jsonrpc": "2.0", "id": "end", "method": "ping"}))
        answered_lines = []
        while True:
            r = w.recv()
            if isinstance(r, dict) and r.get("id") == "end":
                s.validate_received(r, {canonical("end"): "ping"})
                break
            s.validate_received(r, {})
            # Random text can form valid JSON by chance (a number, a string, an array): such lines
            # get -32600 (an array: one per element), the rest -32700. Never a result.
            for x in r if isinstance(r, list) else [r]:
                assert x["id"] is None and x["error"]["code"] in (-32700, -32600), x
            first = r[0] if isinstance(r, list) else r
            answered_lines.append(first["error"]["data"]["line"])
        expected = [n for n, b in enumerate(lines, first_line + 1) if b.strip(b" \t\r")]
        assert answered_lines == expected, f"answers for lines {answered_lines[:10]}..., expected {expected[:10]}...; stderr:\n{w.log()}"
        check_alive(w, before)
        w.close_input()
        assert w.wait() == 0
    finally:
        w.kill()


def test_errors_name_the_line_they_answer():
    w = Worker()
    try:
        w.initialize()  # lines 1 and 2
        for n in range(3, 203):
            w.send_line(b"{" * (n % 7 + 1))
            r = w.recv()
            assert r["error"]["code"] == -32700 and r["error"]["data"]["line"] == n, r
    finally:
        w.kill()


def test_huge_lines_invalid_utf8_and_deep_nesting():
    w = Worker()
    try:
        w.initialize()
        before = w.call("jobs/list")["result"]
        # 30 MB of valid JSON: an unknown 30 MB parameter, named in the error.
        big = canonical({"jsonrpc": "2.0", "id": "big", "method": "ping", "params": {"pad": "x" * 30_000_000}})
        w.send_line(big)
        r = w.recv(timeout=60)
        assert r["id"] == "big" and r["error"]["code"] == -32602 and r["error"]["data"]["field"] == "pad"
        # 30 MB of garbage.
        w.send_line(b"[" + b"1," * 15_000_000)
        assert w.recv(timeout=60)["error"]["code"] == -32700
        # 70 MB: over the 64 MiB default limit, skipped unread.
        w.send_line(b"y" * 70_000_000)
        r = w.recv(timeout=60)
        assert r["error"]["code"] == -32600 and r["error"]["data"]["kind"] == "line_too_long"
        assert r["error"]["data"]["bytes"] == 70_000_000 and r["error"]["data"]["limit"] == 64 << 20
        # Invalid UTF-8 in a string, in a key, and alone.
        for bad in [b'{"jsonrpc":"2.0","id":"\xff\xfe","method":"ping"}', b'{"\xc3\x28":1}', b"\x80\x81", b'"\xed\xa0\x80"']:
            w.send_line(bad)
            assert w.recv()["error"]["code"] == -32700, bad
        # Deep nesting: a million brackets, and objects nested past the limit inside a request.
        w.send_line(b"[" * 1_000_000 + b"]" * 1_000_000)
        assert w.recv()["error"]["code"] == -32700
        nested = '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":' + '{"a":' * 100 + "1" + "}" * 101 + "}"
        w.send_line(nested)
        assert w.recv()["error"]["code"] == -32700
        # NUL bytes and control characters.
        w.send_line(b'{"jsonrpc":"2.0","id":1,"method":"ping\x00"}')
        assert w.recv()["error"]["code"] == -32700
        check_alive(w, before)
        w.close_input()
        assert w.wait() == 0
    finally:
        w.kill()


def test_a_batch_of_a_thousand_requests_answers_in_order():
    w = Worker()
    try:
        w.initialize()
        batch = [{"jsonrpc": "2.0", "id": i, "method": "ping"} if i % 10 else {"jsonrpc": "2.0", "method": "ping"} for i in range(1000)]
        w.send(batch)
        r = w.recv()
        assert [x["id"] for x in r] == [i for i in range(1000) if i % 10]
        assert all(x["result"] == {} for x in r)
        w.send_line(json.dumps([1] * 10_001))
        r = w.recv()
        assert r["error"]["data"]["kind"] == "batch_too_large"
    finally:
        w.kill()


def test_end_of_input_answers_everything_then_exits_zero():
    w = Worker()
    try:
        w.send({"jsonrpc": "2.0", "id": "i", "method": "initialize",
                "params": {"protocolVersion": "1.0", "clientInfo": {"name": "pipe", "version": "1"}}})
        for i in range(2000):
            w.send({"jsonrpc": "2.0", "id": i, "method": "ping"})
        w.close_input()
        assert w.recv()["id"] == "i"
        assert [w.recv()["id"] for _ in range(2000)] == list(range(2000))
        assert w.recv_line() is None
        assert w.wait() == 0
    finally:
        w.kill()


def test_shutdown_and_sigterm_exit_zero():
    w = Worker()
    try:
        w.initialize()
        assert w.call("shutdown")["result"] == {"jobs": []}
        assert w.recv_line() is None
        assert w.wait() == 0
    finally:
        w.kill()
    w = Worker()
    try:
        w.initialize()
        w.proc.send_signal(signal.SIGTERM)
        assert w.wait() == 0
    finally:
        w.kill()


def test_stdout_carries_protocol_only_even_when_the_log_is_chatty():
    w = Worker(log_level="debug")
    try:
        w.initialize()
        for line in [b"garbage", b'{"jsonrpc":"2.0","method":"unknown/notification"}', b'{"jsonrpc":"2.0","id":1,"result":{}}']:
            w.send_line(line)
        w.send({"jsonrpc": "2.0", "id": "last", "method": "ping"})
        assert w.recv()["error"]["code"] == -32700
        assert w.recv()["id"] == "last"
        w.close_input()
        assert w.recv_line() is None and w.wait() == 0
        log = w.log()
        assert "line 3" in log and "unknown notification" in log, log
    finally:
        w.kill()
