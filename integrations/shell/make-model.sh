#!/usr/bin/env bash
# Creates a model checkpoint through the worker, with requests built by jq:
#   ./make-model.sh OUT.safetensors [PRESET] [SEED]
# PRESET: small-64 (default; 64x64, half the widths, CPU-friendly) or paper-96 (CytoGAN). The
# model is untrained: train it (`cytogan train --resume OUT ...`) or use it as a baseline.
set -euo pipefail
out=${1:?usage: make-model.sh OUT.safetensors [PRESET] [SEED]}
preset=${2:-small-64}
seed=${3:-0}
cytogan=${CYTOGAN:-${CYTOGAN_BIN:-cytogan}}
out_abs=$(realpath -m "$out")

# One JSON request per line; the worker answers each on one line of stdout.
{
  jq -nc '{jsonrpc: "2.0", id: 1, method: "initialize",
           params: {protocolVersion: "1.0", clientInfo: {name: "make-model.sh", version: "1"}}}'
  jq -nc --arg preset "$preset" --argjson seed "$seed" \
     '{jsonrpc: "2.0", id: 2, method: "model/create", params: {preset: $preset, seed: $seed}}'
  jq -nc --arg path "$out_abs" '{jsonrpc: "2.0", id: 3, method: "model/save", params: {path: $path}}'
} | "$cytogan" serve --log-level error \
  | jq -e -r 'if .error then ("error \(.error.code): \(.error.message)" | halt_error(1))
              elif .id == 2 then "model: \(.result.preset) \(.result.config.architecture.size)px, \(.result.featureDim) features"
              elif .id == 3 then "saved \(.result.path) (\(.result.bytes) bytes)"
              else empty end'
