"""Helpers for the worker tests: a `cytogan serve` subprocess, the protocol's JSON Schemas, and
the transcript format of protocol/PROTOCOL.md section 10. No tests here."""
import json
import os
import pathlib
import queue
import subprocess
import tempfile
import threading

from conftest import BIN, ROOT

PROTOCOL = ROOT / "protocol"
SCHEMAS = PROTOCOL / "schemas"
TRANSCRIPTS = PROTOCOL / "transcripts"


def ok(r):
    """The result of a response, which must be one."""
    assert "result" in r, r
    return r["result"]


def err(r, code):
    """The error data of a response, which must be an error with `code`."""
    assert "error" in r and r["error"]["code"] == code, r
    return r["error"]["data"]


def canonical(msg):
    """A message as the worker writes it: compact JSON, keys sorted, UTF-8 as is."""
    return json.dumps(msg, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Worker:
    """`cytogan serve` as a subprocess: write lines, read lines (with a timeout), exit status.
    stderr goes to a temporary file so a chatty log can never block the worker."""

    def __init__(self, *args, log_level="warning"):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([BIN, "serve", "--log-level", log_level, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.next_id = 0

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send_line(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.proc.stdin.write(data + b"\n")
        self.proc.stdin.flush()

    def send(self, msg):
        self.send_line(canonical(msg))

    def recv_line(self, timeout=20):
        """The next line the worker wrote (bytes, with its newline), or None at end of output."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line from the worker within {timeout} s; stderr:\n{self.log()}")

    def recv(self, timeout=20):
        line = self.recv_line(timeout)
        assert line is not None, f"the worker closed its output; stderr:\n{self.log()}"
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        return json.loads(line)

    def call(self, method, params=None, id=None):
        """Sends a request and returns its response (notifications in between are skipped)."""
        if id is None:
            self.next_id += 1
            id = self.next_id
        msg = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.recv_until(id)[0]

    def recv_until(self, id, timeout=20):
        """Reads up to the response to request `id`: (that response, every message read, it last)."""
        seen = []
        while True:
            r = self.recv(timeout)
            seen.append(r)
            if isinstance(r, dict) and "method" not in r and r.get("id") == id:
                return r, seen

    def initialize(self):
        r = self.call("initialize", {"protocolVersion": "1.0", "clientInfo": {"name": "pytest", "version": "1"}})
        assert "result" in r, r
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return r["result"]

    def close_input(self):
        self.proc.stdin.close()

    def wait(self, timeout=20):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the worker did not exit within {timeout} s; stderr:\n{self.log()}")

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-4000:]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Schemas:
    """Every schema of protocol/schemas, resolvable by $id, and validation of whole messages."""

    def __init__(self):
        import jsonschema
        from referencing import Registry, Resource

        self.jsonschema = jsonschema
        docs = [json.loads(p.read_text()) for p in sorted(SCHEMAS.rglob("*.json"))]
        self.registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)
        self.by_title = {d["title"]: d for d in docs if "x-kind" in d}
        self.envelope = next(d for d in docs if d["$id"].endswith("/envelope.json"))
        self.common = next(d for d in docs if d["$id"].endswith("/common.json"))
        for d in docs:
            jsonschema.Draft202012Validator.check_schema(d)

    def _validate(self, instance, uri):
        schema = {"$ref": uri}
        v = self.jsonschema.Draft202012Validator(schema, registry=self.registry)
        errors = sorted(v.iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            raise AssertionError(f"{canonical(instance)[:300]} does not fit {uri}: {errors[0].message[:300]} at {list(errors[0].path)}")

    def method_uri(self, method, part):
        d = self.by_title.get(method)
        assert d is not None, f"no schema for {method}"
        return d["$id"] + "#/$defs/" + part

    def validate_sent(self, msg):
        """A client message (or batch): the envelope, then each request's or notification's method schema."""
        self._validate(msg, self.envelope["$id"])
        for m in msg if isinstance(msg, list) else [msg]:
            kind = "request" if "id" in m else "notification"
            self._validate(m, self.method_uri(m["method"], kind))

    def validate_received(self, msg, methods_by_id):
        """A worker message: the envelope; a notification against its schema; a response's result
        against the schema of the method whose request had the same id."""
        self._validate(msg, self.envelope["$id"])
        for m in msg if isinstance(msg, list) else [msg]:
            if "method" in m:
                self._validate(m, self.method_uri(m["method"], "notification"))
            elif "result" in m:
                method = methods_by_id.get(canonical(m["id"]))
                assert method is not None, f"a result for id {m['id']} that no request sent"
                self._validate(m, self.method_uri(method, "response"))


_schemas = None


def schemas():
    global _schemas
    if _schemas is None:
        _schemas = Schemas()
    return _schemas


def json_pointer_remove(doc, pointer):
    """Removes the value at an RFC 6901 pointer; False when it is not there."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, list):
            p = int(p)
            if p >= len(cur):
                return False
        elif not isinstance(cur, dict) or p not in cur:
            return False
        cur = cur[p]
    last = parts[-1]
    if isinstance(cur, dict) and last in cur:
        del cur[last]
        return True
    if isinstance(cur, list) and last.isdigit() and int(last) < len(cur):
        cur[int(last)] = None
        return True
    return False


def replay(path):
    """Runs one transcript against a fresh worker; raises AssertionError at the first difference."""
    entries = [json.loads(l) for l in pathlib.Path(path).read_text().splitlines() if l.strip()]
    args = entries[0]["args"] if entries and "args" in entries[0] else []
    s = schemas()
    methods_by_id = {}
    w = Worker(*args)
    try:
        for n, e in enumerate(entries, 1):
            where = f"{pathlib.Path(path).name} entry {n}"
            if "args" in e or "comment" in e:
                continue
            if "send" in e:
                msg = e["send"]
                s.validate_sent(msg)
                for m in msg if isinstance(msg, list) else [msg]:
                    if "id" in m:
                        methods_by_id[canonical(m["id"])] = m["method"]
                w.send(msg)
            elif "sendRaw" in e:
                assert "\n" not in e["sendRaw"], where
                try:  # ids of well-formed requests in it, to know the method of their responses
                    raw = json.loads(e["sendRaw"])
                except ValueError:
                    raw = None
                for m in raw if isinstance(raw, list) else [raw]:
                    if isinstance(m, dict) and isinstance(m.get("method"), str) and "id" in m:
                        methods_by_id[canonical(m["id"])] = m["method"]
                w.send_line(e["sendRaw"])
            elif "expect" in e:
                line = w.recv_line()
                assert line is not None, f"{where}: the worker closed its output; stderr:\n{w.log()}"
                got = json.loads(line)
                want = e["expect"]
                s.validate_received(want, methods_by_id)
                s.validate_received(got, methods_by_id)
                volatile = e.get("volatile", [])
                if volatile:
                    got, want = json.loads(json.dumps(got)), json.loads(json.dumps(want))
                    for p in volatile:
                        assert json_pointer_remove(got, p), f"{where}: {p} missing in {line[:300]!r}"
                        json_pointer_remove(want, p)
                    assert got == want, f"{where}:\n got  {canonical(got)[:2000]}\n want {canonical(want)[:2000]}"
                else:
                    assert line.decode().rstrip("\n") == canonical(want), \
                        f"{where}:\n got  {line.decode()[:2000]}\n want {canonical(want)[:2000]}"
            elif "close" in e:
                w.close_input()
            elif "exit" in e:
                rest = w.recv_line()
                assert rest is None, f"{where}: unexpected output {rest[:300]!r}"
                assert w.wait() == e["exit"], f"{where}: exit status; stderr:\n{w.log()}"
            else:
                raise AssertionError(f"{where}: unknown transcript entry {e}")
    finally:
        w.kill()
