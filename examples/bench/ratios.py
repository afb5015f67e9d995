"""Reads `WHO<TAB>{json}` lines from examples/bench/vs-peer.sh and prints, per measure, each
runner's median images/s (the median of its rounds' medians) and its ratio to the peer's.
A measure timed at another batch than the peer's gets no ratio: batch size changes images/s."""
import json
import statistics
import sys

runs = {}
batches = {}
for line in sys.stdin:
    who, _, text = line.rstrip("\n").partition("\t")
    try:
        j = json.loads(text)
    except ValueError:
        continue
    if "measure" not in j or "images_per_s" not in j:
        continue
    runs.setdefault((j["measure"], who), []).append(j["images_per_s"]["median"])
    batches.setdefault((j["measure"], who), set()).add(j.get("batch"))

measures = sorted({m for m, _ in runs})
print("| measure | runner | batch | rounds | median images/s | ratio to peer |")
print("| --- | --- | --- | --- | --- | --- |")
for m in measures:
    peer = statistics.median(runs[(m, "peer")]) if (m, "peer") in runs else None
    for (mm, who), v in sorted(runs.items()):
        if mm != m:
            continue
        med = statistics.median(v)
        batch = batches[(m, who)]
        same = peer is not None and batch == batches[(m, "peer")]
        ratio = f"{med / peer:.2f}x" if same else ("n/a" if peer is None else "n/a (other batch than the peer)")
        shown = ", ".join(str(b) for b in sorted(batch, key=str))
        print(f"| {m} | {who} | {shown} | {len(v)} | {med:.1f} | {ratio} |")
