#!/usr/bin/env bash
# Installs the system libraries cytogan links against, only when they are missing.
# Idempotent and quiet when everything is present; needs root (or sudo) for apt-get otherwise.
set -euo pipefail

packages=(pkg-config libopenblas-dev libtiff-dev libpng-dev libjson-c-dev zlib1g-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# pkg-config names that must resolve once the packages are in.
pcnames=(openblas libtiff-4 libpng json-c zlib)

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for n in "${pcnames[@]}"; do
  pkg-config --exists "$n" || { echo "setup: pkg-config cannot find '$n' after install" >&2; exit 1; }
done
