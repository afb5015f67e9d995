#!/usr/bin/env bash
# Builds dist/cytogan-VERSION-linux-ARCH.tar.gz: the cytogan binary with the Swift standard library
# and Foundation linked in (swift build --static-swift-stdlib), so it runs where no Swift toolchain
# is installed. Its only run-time dependencies are the system libraries it was built against
# (OpenBLAS, libtiff, libpng, json-c, zlib) and the C/C++ runtime every Linux has; the script checks
# that, and fails if the binary would need anything else. Linux only (on macOS Swift is part of the OS).
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
build=.build-dist   # its own build folder: switching the static flag in .build would rebuild everything twice

if [ "$(uname -s)" != Linux ]; then
  echo "dist: the relocatable tarball is built on Linux; on macOS use 'make install'" >&2
  exit 1
fi

"$SWIFT" build -c release --product cytogan --static-swift-stdlib --build-path "$build"
bin="$build/release/cytogan"
version=$("$bin" --version)
name="cytogan-$version-linux-$(uname -m)"

# Every shared library the binary asks for must be a system library we name, never Swift's.
needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p')
allowed='^(libopenblas|libtiff|libpng16|libjson-c|libz|libc|libm|libdl|libpthread|librt|libutil|libstdc\+\+|libgcc_s|ld-linux)[.-]'
if bad=$(echo "$needed" | grep -Ev "$allowed"); then
  echo "dist: the binary needs libraries that are not in the list of system dependencies:" $bad >&2
  exit 1
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/$name"
mkdir -p "$root/bin" "$root/share/cytogan"
install -m 755 "$bin" "$root/bin/cytogan"
install -m 644 protocol/PROTOCOL.md "$root/share/cytogan/PROTOCOL.md"
cp -R integrations "$root/share/cytogan/integrations"
find "$root/share/cytogan/integrations" \( -name __pycache__ -o -name '*.egg-info' -o -name build \) -prune -exec rm -rf {} +
install -m 755 scripts/dist-install.sh "$root/install.sh"

# What the binary needs at run time, for the install script and for people.
{
  echo "cytogan $version for Linux $(uname -m), built on $( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || uname -sr)."
  echo "Shared libraries it loads (everything else, the Swift runtime included, is inside bin/cytogan):"
  echo "$needed" | sed 's/^/  /'
} > "$root/share/cytogan/RUNTIME.txt"

mkdir -p dist
tar -C "$stage" -czf "dist/$name.tar.gz" "$name"
echo "dist: dist/$name.tar.gz ($(du -h "dist/$name.tar.gz" | cut -f1)); needs at run time:" $needed >&2
