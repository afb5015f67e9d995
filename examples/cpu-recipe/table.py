"""Prints the CPU-recipe table (which training recipe gives useful features on a CPU budget) from
the runs that examples/cpu-recipe/run.sh wrote: one row per recipe and feature layer with steps
reached and (a), (b), (c) for the trained discriminator, the same network untrained, and the
intensity measurements; for a recipe that reads features from a moving average of the
discriminator, a second row ("current") gives the same run's discriminator as it stood at the last
step.

    python3 examples/cpu-recipe/table.py runs/paper64 runs/cpu64 ...
"""
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def scores(e):
    a = e["logistic"]["balanced_accuracy"]
    b = e["well_nn"]["accuracy"]
    c = e["dose"]["fraction_increasing_pairs"]
    f = lambda v: "n/a" if v is None else f"{v:.3f}"
    return f(a), f(b), f(c)


def layers(run):
    """The feature layers a run scored (its eval-trained-LAYER.json files), the usual ones first."""
    found = [f[len("eval-trained-"):-len(".json")] for f in os.listdir(run)
             if f.startswith("eval-trained-") and f.endswith(".json")]
    usual = ["representation", "pooled", "pooled@dihedral"]
    return sorted(found, key=lambda l: (usual.index(l) if l in usual else len(usual), l))


def main(runs):
    print("| recipe | layer | steps | (a) trained / untrained / intensity | (b) trained / untrained / intensity "
          "| (c) trained / untrained / intensity |")
    print("| --- | --- | --- | --- | --- | --- |")
    for run in runs:
        name = os.path.basename(run.rstrip("/"))
        train = load(os.path.join(run, "train.json"))
        intensity = scores(load(os.path.join(run, "eval-intensity.json")))
        for layer in layers(run):
            un = scores(load(os.path.join(run, f"eval-untrained-{layer}.json")))
            for which, label in (("trained", layer), ("current", f"{layer} (current D)")):
                path = os.path.join(run, f"eval-{which}-{layer}.json")
                if not os.path.exists(path):
                    continue
                tr = scores(load(path))
                cells = [" / ".join((tr[k], un[k], intensity[k])) for k in range(3)]
                print(f"| {name} | {label} | {train['step']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
