#!/usr/bin/env bash
# One row of the CPU-recipe table (which training recipe gives useful features on a CPU budget):
# train a GAN recipe for a wall-clock budget on a crop manifest, then measure what its
# discriminator features know against the same network untrained and plain intensity
# measurements, with `cytogan profile evaluate-crops` (a), (b), (c).
#
#   examples/cpu-recipe/run.sh NAME MINUTES MANIFEST -- [cytogan train options...]
#   e.g. examples/cpu-recipe/run.sh cpu64 20 ../shared/data/bbbc021/crops.csv -- --preset cpu-64
#
# Writes runs/NAME/: log.csv (losses), train.json, checkpoints, samples/, features-*.csv and
# eval-*.json (one per feature set: trained and untrained x the LAYERS,
# "current" too when the recipe reads features from a moving average of the discriminator, and
# intensity), and prints a summary line per feature set. CYTOGAN (default
# .build/release/cytogan), THREADS (default 2) and LAYERS (the feature layers scored, default
# "representation pooled pooled@dihedral") can be set in the environment.
set -euo pipefail
[ $# -ge 4 ] && [ "$4" = "--" ] || { echo "usage: $0 NAME MINUTES MANIFEST -- [train options]" >&2; exit 2; }
name=$1 minutes=$2 manifest=$3; shift 4
bin=${CYTOGAN:-.build/release/cytogan}
threads=${THREADS:-2}
run=${RUNS:-runs}/$name
mkdir -p "$run"

"$bin" train --manifest "$manifest" "$@" --minutes "$minutes" --threads "$threads" \
    --checkpoint-dir "$run/ckpt" --checkpoint-minutes 5 --keep 5 --log-csv "$run/log.csv" --progress lines \
    > "$run/train.json" 2> "$run/train.log"
# The same network at its initial weights (and the same dataset scale, when the recipe estimates one).
"$bin" train --manifest "$manifest" "$@" --steps 0 --threads "$threads" --checkpoint-dir "$run/untrained" \
    --progress none > /dev/null 2>> "$run/train.log"
trained=$(ls "$run"/ckpt/checkpoint-*.safetensors | tail -n 1)
untrained=$(ls "$run"/untrained/checkpoint-*.safetensors | tail -n 1)

evaluate() {  # evaluate TAG FEATURES.csv
    "$bin" profile evaluate-crops --features "$2" > "$run/eval-$1.json" 2> "$run/eval-$1.txt"
    echo "$name $1: $(tr '\n' ' ' < "$run/eval-$1.txt")"
}
# A recipe that keeps a moving average of the discriminator's weights reads features from it;
# "current" is the same run's discriminator as it stood at the last step, for comparison.
whiches="trained untrained"
grep -aq 'discriminator_average[^,]*[0-9]' "$trained" && whiches="trained current untrained"
for layer in ${LAYERS:-representation pooled pooled@dihedral}; do
    for which in $whiches; do
        model=$trained; [ "$which" = untrained ] && model=$untrained
        flag=(); [ "$which" = current ] && flag=(--current-discriminator)
        "$bin" extract --manifest "$manifest" --model "$model" --layer "$layer" --threads "$threads" "${flag[@]}" \
            --out "$run/features-$which-$layer.csv" 2>> "$run/extract.log"
        evaluate "$which-$layer" "$run/features-$which-$layer.csv"
    done
done
intensity=${RUNS:-runs}/intensity.csv
[ -f "$intensity" ] || "$bin" extract --manifest "$manifest" --features intensity --out "$intensity" 2>> "$run/extract.log"
evaluate intensity "$intensity"
"$bin" sample --model "$trained" --count 32 --columns 8 --out "$run/samples" --threads "$threads" > /dev/null 2>> "$run/extract.log"
echo "$name: $(cat "$run/train.json")"
