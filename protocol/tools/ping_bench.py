#!/usr/bin/env python3
"""Ping round trip over the worker's pipes: starts `cytogan serve`, initializes, then sends N
pings one at a time (each waits for its answer) and reports the round-trip times.

    python3 protocol/tools/ping_bench.py [--bin .build/release/cytogan] [-n 20000]

Raw file descriptors (os.write / os.read) keep the Python side's own cost small; the figure is
what a lean client sees: its write, the worker's read, parse, dispatch, serialize, write, and its read.
"""
import argparse
import json
import os
import statistics
import subprocess
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "..", ".build", "release", "cytogan"))
    ap.add_argument("-n", type=int, default=20000, help="timed pings (after 2000 warm-up pings)")
    args = ap.parse_args()
    p = subprocess.Popen([args.bin, "serve", "--log-level", "warning"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    wfd, rfd = p.stdin.fileno(), p.stdout.fileno()
    buf = b""

    def roundtrip(line):
        nonlocal buf
        os.write(wfd, line)
        while b"\n" not in buf:
            buf += os.read(rfd, 65536)
        out, buf = buf.split(b"\n", 1)
        return out

    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "1.0", "clientInfo": {"name": "ping_bench", "version": "1"}}}
    assert b'"result"' in roundtrip(json.dumps(init).encode() + b"\n")
    lines = [b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % i for i in range(1, args.n + 2001)]
    for line in lines[:2000]:
        roundtrip(line)
    times = []
    for i, line in enumerate(lines[2000:], 2001):
        t0 = time.perf_counter_ns()
        out = roundtrip(line)
        times.append(time.perf_counter_ns() - t0)
        if out != b'{"id":%d,"jsonrpc":"2.0","result":{}}' % i:
            raise SystemExit(f"unexpected answer: {out!r}")
    p.stdin.close()
    p.wait()
    us = sorted(t / 1000 for t in times)
    print(f"ping round trip over pipes, {len(us)} pings: median {statistics.median(us):.1f} us, "
          f"mean {statistics.fmean(us):.1f} us, p90 {us[int(0.9 * len(us))]:.1f} us, p99 {us[int(0.99 * len(us))]:.1f} us, "
          f"min {us[0]:.1f} us")


if __name__ == "__main__":
    main()
