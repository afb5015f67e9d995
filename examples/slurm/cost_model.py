#!/usr/bin/env python3
"""Predicted images/s of data-parallel training on N nodes (one cytogan process per node).

One step of a global batch B on N processes costs
    compute      B * t_img / N                       (t_img: seconds per image on one node)
  + gradients    for G and D: 2 (N-1)/N * 4 P / bandwidth + 2 (N-1) * latency
                 (ring allreduce of the fused buffer of P float32 gradients)
  + sync BN      3 allreduces per BatchNorm layer per step (forward: sums, then squared
                 deviations; backward: sum dy and sum dy * xhat), a few hundred bytes each:
                 ceil(log2 N) * latency apiece (recursive doubling, as MPI does for small messages)
and images/s = B / step time. N is at most B (every process needs an item) and must divide it.
Usage: cost_model.py [--node-speedup K] [--preset P --node-rate IMG_PER_S ...]
"""
import argparse
import math

# Parameter counts and BatchNorm layers from `cytogan train` / the checkpoints; images/s of one
# process from the measurements in examples/slurm/README.md.
PRESETS = {
    # name: (batch, generator parameters, discriminator parameters, BatchNorm layers)
    "small-64": (32, 1_097_987, 1_089_641, 4),
    "paper-96": (64, 4_802_051, 4_764_681, 4),
}
# images/s of one process on the 2-core machine of the measurements (examples/slurm/README.md).
MEASURED_RATE = {"small-64": 107.0, "paper-96": 21.2}
NETWORKS = {
    "10 GbE": (1.25e9, 25e-6),
    "100 Gb/s InfiniBand": (12.0e9, 2e-6),
}


def step_seconds(n, batch, params, bn_layers, t_img, bandwidth, latency):
    compute = batch * t_img / n
    if n == 1:
        return compute
    grads = sum(2 * (n - 1) / n * 4 * p / bandwidth + 2 * (n - 1) * latency for p in params)
    sync_bn = 3 * bn_layers * math.ceil(math.log2(n)) * latency
    return compute + grads + sync_bn


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", help="small-64 and/or paper-96 (default both)")
    ap.add_argument("--node-rate", type=float, action="append",
                    help="images/s of one process on one node, per preset in order (default: the measured rate)")
    ap.add_argument("--node-speedup", type=float, default=1,
                    help="multiplies the default node rates (16: a 32-core node if the engine scales from the 2 measured cores)")
    args = ap.parse_args()
    presets = args.preset or ["small-64", "paper-96"]
    rates = args.node_rate or [MEASURED_RATE[p] * args.node_speedup for p in presets]
    for name, rate in zip(presets, rates):
        batch, pg, pd, bn = PRESETS[name]
        print(f"{name}: batch {batch}, {pg + pd:,} parameters ({4 * (pg + pd) / 1e6:.1f} MB of gradients per step), "
              f"{bn} BatchNorm layers, one node {rate:.0f} images/s")
        ns = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= batch and batch % n == 0]
        print("| network | " + " | ".join(f"N={n}" for n in ns) + " |")
        print("| --- |" + " --- |" * len(ns))
        for net, (bw, lat) in NETWORKS.items():
            cells = []
            for n in ns:
                ips = batch / step_seconds(n, batch, (pg, pd), bn, 1 / rate, bw, lat)
                cells.append(f"{ips:,.0f} ({ips / (n * rate):.0%})")
            print(f"| {net} | " + " | ".join(cells) + " |")
        for net, (bw, lat) in NETWORKS.items():
            # Gradient traffic (about 8 P bytes per step for large N) equals the compute B t_img / N.
            crossover = batch / rate * bw / (8 * (pg + pd))
            limit = f"N = {crossover:.0f}" if crossover < batch else f"beyond the batch (N = {crossover:.0f} > {batch})"
            print(f"{net}: communication equals computation at {limit}")
        print()



if __name__ == "__main__":
    main()
