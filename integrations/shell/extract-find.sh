#!/usr/bin/env bash
# Line mode: every TIFF crop below a folder, one path per line, into one features CSV
# (one row per crop: its path, then the features), as with any Unix filter.
#   ./extract-find.sh MODEL.safetensors CROPS_DIR > features.csv
set -euo pipefail
model=${1:?usage: extract-find.sh MODEL CROPS_DIR}
crops=${2:?usage: extract-find.sh MODEL CROPS_DIR}
cytogan=${CYTOGAN:-${CYTOGAN_BIN:-cytogan}}

find "$crops" -name '*.tif' | sort | "$cytogan" extract --model "$model" --paths -
