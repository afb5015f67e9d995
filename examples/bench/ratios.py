"""Reads `WHO<TAB>{json}` lines from examples/bench/vs-peer.sh and prints, per measure, each
runner's median images/s (the median of its rounds' medians) and its ratio to the peer's."""
import json
import statistics
import sys

runs = {}
for line in sys.stdin:
    who, _, text = line.rstrip("\n").partition("\t")
    try:
        j = json.loads(text)
    except ValueError:
        continue
    if "measure" not in j or "images_per_s" not in j:
        continue
    runs.setdefault((j["measure"], who), []).append(j["images_per_s"]["median"])

measures = sorted({m for m, _ in runs})
print("| measure | runner | rounds | median images/s | ratio to peer |")
print("| --- | --- | --- | --- | --- |")
for m in measures:
    peer = statistics.median(runs[(m, "peer")]) if (m, "peer") in runs else None
    for (mm, who), v in sorted(runs.items()):
        if mm != m:
            continue
        med = statistics.median(v)
        ratio = f"{med / peer:.2f}x" if peer else "n/a"
        print(f"| {m} | {who} | {len(v)} | {med:.1f} | {ratio} |")
