#!/usr/bin/env bash
# Drives the long-lived worker with JSON lines built by jq: initialize, load a model, extract the
# features of every crop `find` lists (in one request, with progress notifications), then end of
# input. Prints a CSV (path, then the features under the names the worker sends with them, as
# `cytogan extract` names them) built with jq from the responses.
#   ./serve-jq.sh MODEL.safetensors CROPS_DIR > features.csv
set -euo pipefail
model=${1:?usage: serve-jq.sh MODEL CROPS_DIR}
crops=${2:?}
cytogan=${CYTOGAN:-${CYTOGAN_BIN:-cytogan}}
model_abs=$(realpath "$model")
list=$(mktemp)
trap 'rm -f "$list"' EXIT
find "$(realpath "$crops")" -name '*.tif' | sort > "$list"

{
  jq -nc '{jsonrpc: "2.0", id: 1, method: "initialize",
           params: {protocolVersion: "1.0", clientInfo: {name: "serve-jq.sh", version: "1"}}}'
  jq -nc '{jsonrpc: "2.0", method: "notifications/initialized"}'
  jq -nc --arg p "$model_abs" '{jsonrpc: "2.0", id: 2, method: "model/load", params: {path: $p}}'
  # The crop list: one {"path": ...} per line of the list, and a progress token.
  jq -R . "$list" | jq -sc '{jsonrpc: "2.0", id: 3, method: "features/extract",
                             params: {crops: map({path: .}), _meta: {progressToken: "extract"}}}'
} | "$cytogan" serve --log-level error \
  | tee >(jq -r --unbuffered 'select(.method == "notifications/progress")
           | "progress \(.params.progress)/\(.params.total)"' >&2) \
  | jq -rs --rawfile list "$list" '
      map(select(.id != null)) as $rs
      | ($rs | map(select(.error))) as $errs
      | if ($errs | length) > 0 then ($errs[0] | "request \(.id): error \(.error.code): \(.error.message)\n" | halt_error(1))
        else
          ($rs | map(select(.id == 3))[0].result) as $r
          | ($list | split("\n") | map(select(length > 0))) as $paths
          | (["path"] + $r.names | @csv),
            (range($r.count) | [$paths[.]] + $r.features[.] | @csv)
        end'
