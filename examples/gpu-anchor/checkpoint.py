"""Reads and writes the safetensors files cytogan checkpoints are (an 8-byte little-endian header
length, a JSON header naming each tensor's dtype, shape and byte range, then the raw bytes),
with the standard library alone, so prepare.sh needs no PyTorch."""
import json


def read(path):
    """({name: (dtype, shape, raw bytes)} of every tensor in the file, the metadata: {key: text})."""
    blob = open(path, "rb").read()
    n = int.from_bytes(blob[:8], "little")
    head = json.loads(blob[8:8 + n])
    tensors = {k: (e["dtype"], e["shape"], blob[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]])
               for k, e in head.items() if k != "__metadata__"}
    return tensors, head.get("__metadata__", {})


def write(path, tensors):
    """Writes {name: (dtype, shape, raw bytes)} as a safetensors file."""
    head, data = {}, bytearray()
    for k, (dtype, shape, raw) in tensors.items():
        head[k] = dict(dtype=dtype, shape=shape, data_offsets=[len(data), len(data) + len(raw)])
        data += raw
    header = json.dumps(head).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + data)
