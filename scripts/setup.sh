#!/usr/bin/env bash
# Installs the system libraries cytogan links against, only when they are missing.
# Idempotent and quiet when everything is present; needs root (or sudo) for apt-get otherwise.
# On macOS it only checks, and names the Homebrew command when something is missing.
set -euo pipefail

if [ "$(uname -s)" = Darwin ]; then
  for n in openblas libtiff-4 libpng json-c zlib; do
    if ! pkg-config --exists "$n" 2>/dev/null; then
      echo "setup: pkg-config cannot find '$n'. With Homebrew:" >&2
      echo "  brew install pkg-config openblas libtiff libpng json-c zlib" >&2
      echo "  export PKG_CONFIG_PATH=\"\$(brew --prefix openblas)/lib/pkgconfig:\$(brew --prefix zlib)/lib/pkgconfig:\$PKG_CONFIG_PATH\"" >&2
      exit 1
    fi
  done
  exit 0
fi

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

# Open MPI for data-parallel training (mpirun -np N cytogan train) and its tests. Optional:
# cytogan loads libmpi at run time, so everything else builds and runs without it.
if ! command -v mpirun >/dev/null 2>&1; then
  echo "setup: installing openmpi-bin libopenmpi-dev (optional: data-parallel training)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if ! { $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq --no-install-recommends openmpi-bin libopenmpi-dev >/dev/null; }; then
    echo "setup: Open MPI could not be installed; the MPI tests will be skipped (everything else is unaffected)" >&2
  fi
fi
