#!/usr/bin/env python3
"""Writes a cytogan checkpoint's generator and discriminator weights alone (no optimizer moments,
no moving average) as a new safetensors file: what anchor.py --init-from needs, in a quarter of
the bytes (8.8 MB for cpu-64), so that it fits the GPU machine's transfer beside the crops.

  python3 strip.py CHECKPOINT.safetensors OUT.safetensors
"""
import json, sys

src, dst = sys.argv[1:3]
blob = open(src, "rb").read()
n = int.from_bytes(blob[:8], "little")
head = json.loads(blob[8:8 + n])
out, data = {}, bytearray()
for k, e in head.items():
    if k.startswith(("generator.", "discriminator.")):
        lo, hi = e["data_offsets"]
        out[k] = dict(dtype=e["dtype"], shape=e["shape"], data_offsets=[len(data), len(data) + hi - lo])
        data += blob[8 + n + lo:8 + n + hi]
header = json.dumps(out).encode()
header += b" " * (-len(header) % 8)  # safetensors pads the header to 8 bytes
with open(dst, "wb") as f:
    f.write(len(header).to_bytes(8, "little") + header + data)
print(f"{dst}: {len(out)} tensors, {len(data)} bytes", file=sys.stderr)
