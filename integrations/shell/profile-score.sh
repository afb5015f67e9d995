#!/usr/bin/env bash
# From a crop manifest to MOA scores with the batch commands: extract per-cell features, average
# them per well, then the standard protocol (normalize per plate to DMSO, aggregate treatments,
# nearest-neighbour MOA matching) and pick the scores out of its JSON with jq.
#   ./profile-score.sh MODEL.safetensors crops.csv WORKDIR
set -euo pipefail
model=${1:?usage: profile-score.sh MODEL crops.csv WORKDIR}
manifest=${2:?}
work=${3:?}
cytogan=${CYTOGAN:-${CYTOGAN_BIN:-cytogan}}
mkdir -p "$work"

"$cytogan" extract --model "$model" --manifest "$manifest" --out "$work/cells.csv"
"$cytogan" profile aggregate --input "$work/cells.csv" --output "$work/wells.csv" \
  --by Metadata_Plate Metadata_Well --join Metadata_Batch > /dev/null 2>&1
"$cytogan" profile moa --wells "$work/wells.csv" 2> /dev/null > "$work/moa.json"
jq '{nsc, nscb, per_compound, map}' "$work/moa.json"
