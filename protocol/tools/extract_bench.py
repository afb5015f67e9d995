#!/usr/bin/env python3
"""Feature extraction through the worker against the same extraction in process, and the worker's
resident memory while many crop requests stream through (PROTOCOL.md §11, limits and performance). Standard library
only; a benchmark, not a test.

  python3 protocol/tools/extract_bench.py --crops 2048 --batch 64                # throughput
  python3 protocol/tools/extract_bench.py --crops 0 --memory 200000 --preset small-64 \
      --config '{"architecture": {"size": 32, "generator_widths": [32, 16, 8], "discriminator_widths": [8, 16, 32], "discriminator_strides": [1, 2, 2]}}'
                                                                                 # resident memory

Throughput: the same BBBC021 crops (TIFF paths) and batch size through `cytogan extract --manifest`
(in process) and through `cytogan serve` (features/extract, one request per batch, all requests
up to --window of them unanswered at a time, answers read as they come; and one streamed request for the whole list). The
model is created by the worker (a fresh one of the preset: speed does not depend on the weights)
and saved for the command line.

Memory: --memory N crops in requests of --batch crops (the crop list cycled), VmRSS of the worker
sampled every 5% of the way; reported against the value after the first 10% (warm caches).

The machine this ran on is shared and busy: the three modes run in turn in every repetition, and
the best and the median of the repetitions are reported, with CPU time per crop (user + system of
the process), which depends less on what else runs."""
import argparse
import csv
import json
import os
import pathlib
import resource
import statistics
import queue
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def crops_from(shared):
    d = pathlib.Path(shared) / "data" / "bbbc021"
    if not (d / "crops.csv").exists():
        sys.exit(f"no BBBC021 crops at {d}: give --shared or set CYTOGAN_SHARED to the folder holding data/")
    with open(d / "crops.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"no crops in {d}")
    return [str(d / r["path"]) for r in rows]


class Worker:
    def __init__(self, binary):
        self.p = subprocess.Popen([binary, "serve", "--log-level", "warning"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.id = 0

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, method, params):
        self.id += 1
        self.p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": self.id, "method": method, "params": params}).encode() + b"\n")
        self.p.stdin.flush()
        return self.id

    def answer(self, rid):
        while True:
            line = self.lines.get(timeout=3600)
            if line is None:
                sys.exit("the worker closed its output")
            m = json.loads(line)
            if m.get("id") == rid:
                if "error" in m:
                    sys.exit(f"worker error: {m['error']}")
                return m["result"]

    def call(self, method, params):
        return self.answer(self.send(method, params))

    def cpu_seconds(self):
        """User + system CPU time of the worker so far (all its threads)."""
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=600)


def pipelined(w, paths, batch, count, window):
    """Requests of `batch` crops covering `count` crops (the list cycled), written by a thread that
    keeps at most `window` requests unanswered (a streaming client), while this one reads the
    answers; returns (seconds, crops, rss samples [(crops done, KiB)])."""
    starts = list(range(0, count, batch))
    slots = threading.Semaphore(window)

    def writer():
        for k, s in enumerate(starts):
            crops = [{"path": paths[(s + i) % len(paths)]} for i in range(min(batch, count - s))]
            slots.acquire()
            w.p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": f"x{k}", "method": "features/extract",
                                        "params": {"crops": crops, "batchSize": batch}}).encode() + b"\n")
            w.p.stdin.flush()

    t0 = time.perf_counter()
    threading.Thread(target=writer, daemon=True).start()
    seen, crops, samples = 0, 0, []
    step = max(1, len(starts) // 20)
    while seen < len(starts):
        line = w.lines.get(timeout=3600)
        m = json.loads(line)
        if "error" in m:
            sys.exit(f"worker error: {m['error']}")
        if "result" in m:
            crops += m["result"]["count"]
            seen += 1
            slots.release()
            if seen % step == 0 or seen == len(starts):
                samples.append((crops, w.rss_kib()))
    return time.perf_counter() - t0, crops, samples


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / ".build" / "release" / "cytogan"))
    ap.add_argument("--shared", default=os.environ.get("CYTOGAN_SHARED", str(ROOT.parent / "shared")))
    ap.add_argument("--preset", default="paper-96")
    ap.add_argument("--config", help="model/create config overrides as JSON (e.g. a tiny network for the memory run)")
    ap.add_argument("--crops", type=int, default=2048, help="crops for the throughput comparison")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--memory", type=int, default=0, help="crops to stream for the memory check (0: skip)")
    ap.add_argument("--window", type=int, default=8, help="requests the client keeps unanswered")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each throughput measurement (the best counts)")
    a = ap.parse_args()
    every = crops_from(a.shared)
    paths = every[:a.crops]
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="cytogan-extract-bench-"))
    model = tmp / "model.safetensors"
    w = Worker(a.bin)
    w.call("initialize", {"protocolVersion": "1.0", "clientInfo": {"name": "extract_bench", "version": "1"}})
    create = {"preset": a.preset}
    if a.config:
        create["config"] = json.loads(a.config)
    info = w.call("model/create", create)
    w.call("model/save", {"path": str(model)})
    print(f"model {a.preset}: {info['parameters']['discriminator']} discriminator parameters, {info['featureDim']} features; "
          f"{os.cpu_count()} cpus; batch {a.batch}")

    if a.crops:
        manifest = tmp / "crops.csv"
        with open(manifest, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["path"])
            out.writerows([p] for p in paths)
        cli, proto, stream = [], [], []
        cpu = {"cli": [], "proto": [], "stream": []}
        for _ in range(a.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            r = subprocess.run([a.bin, "extract", "--model", str(model), "--manifest", str(manifest), "--batch", str(a.batch),
                                "--out", str(tmp / "cli.npy")], capture_output=True, text=True)
            if r.returncode:
                sys.exit(r.stderr)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall = len(paths) / (time.perf_counter() - t0)
            # Its own figure (the extraction loop, after loading the model and indexing the manifest).
            own = [float(x.split()[-2]) for x in r.stderr.splitlines() if x.endswith("crops/s")]
            cli.append(own[-1] if own else wall)
            cpu["cli"].append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / len(paths))
            c0 = w.cpu_seconds()
            secs, n, _ = pipelined(w, paths, a.batch, len(paths), a.window)
            proto.append(n / secs)
            cpu["proto"].append((w.cpu_seconds() - c0) / n)
            c0 = w.cpu_seconds()
            t0 = time.perf_counter()
            rid = w.send("features/extract", {"crops": [{"path": p} for p in paths], "batchSize": a.batch, "stream": True})
            n = w.answer(rid)["count"]
            stream.append(n / (time.perf_counter() - t0))
            cpu["stream"].append((w.cpu_seconds() - c0) / n)
        med = statistics.median
        best, mid = max(cli), med(cli)
        print(f"in process  (cytogan extract, its extraction loop): best {best:8.1f}  median {mid:8.1f} crops/s  "
              f"runs {', '.join(f'{x:.1f}' for x in cli)}")
        for name, xs in [(f"protocol, one request per batch, {a.window} in flight", proto), ("protocol, one streamed request", stream)]:
            print(f"{name + ':':52} best {max(xs):8.1f}  median {med(xs):8.1f} crops/s  = {100 * max(xs) / best:5.1f}% / "
                  f"{100 * med(xs) / mid:5.1f}% of in process  runs {', '.join(f'{x:.1f}' for x in xs)}")
        ref = med(cpu["cli"])
        for k, name in [("cli", "in process"), ("proto", "per batch"), ("stream", "streamed")]:
            print(f"CPU time per crop, {name:10}: median {1000 * med(cpu[k]):6.2f} ms (in-process / this = {100 * ref / med(cpu[k]):5.1f}%)  "
                  f"runs {', '.join(f'{1000 * x:.2f}' for x in cpu[k])}")

    if a.memory:
        secs, n, samples = pipelined(w, every, a.batch, a.memory, a.window)   # all BBBC021 crops, cycled
        base = next(kib for crops, kib in samples if crops >= a.memory // 10)
        peak = max(kib for _, kib in samples)
        after = [kib for crops, kib in samples if crops >= a.memory // 10]
        print(f"memory: {n} crops in {secs:.0f} s ({n / secs:.0f} crops/s); VmRSS after 10%: {base / 1024:.1f} MiB, "
              f"min/max after that: {min(after) / 1024:.1f}/{peak / 1024:.1f} MiB ({100 * (peak - base) / base:+.1f}%), "
              f"at the end: {samples[-1][1] / 1024:.1f} MiB")
        print("samples (crops, MiB): " + ", ".join(f"({c}, {k / 1024:.1f})" for c, k in samples))
    w.close()


if __name__ == "__main__":
    main()
