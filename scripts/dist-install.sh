#!/usr/bin/env bash
# Installs this unpacked cytogan release: ./install.sh [PREFIX] (default ~/.local, no root needed)
# puts PREFIX/bin/cytogan and PREFIX/share/cytogan (the protocol document, the integrations).
# Then checks that the system libraries cytogan loads are present and names the packages to
# install if one is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prefix="${1:-${PREFIX:-$HOME/.local}}"

mkdir -p "$prefix/bin" "$prefix/share/cytogan"
install -m 755 "$here/bin/cytogan" "$prefix/bin/cytogan"
cp -R "$here/share/cytogan/." "$prefix/share/cytogan/"
echo "installed $prefix/bin/cytogan"

missing=$(ldd "$prefix/bin/cytogan" 2>/dev/null | awk '/not found/ {print $1}' || true)
if [ -n "$missing" ]; then
  echo "cytogan needs these system libraries, which are missing:" >&2
  for lib in $missing; do
    case "$lib" in
      libopenblas*) hint="Debian/Ubuntu: libopenblas0   Fedora/RHEL: openblas-serial" ;;
      libtiff*)     hint="Debian/Ubuntu: libtiff6 (or libtiff5)   Fedora/RHEL: libtiff" ;;
      libpng16*)    hint="Debian/Ubuntu: libpng16-16 (libpng16-16t64)   Fedora/RHEL: libpng" ;;
      libjson-c*)   hint="Debian/Ubuntu: libjson-c5   Fedora/RHEL: json-c" ;;
      libz.*)       hint="Debian/Ubuntu: zlib1g   Fedora/RHEL: zlib" ;;
      *)            hint="" ;;
    esac
    echo "  $lib   $hint" >&2
  done
  echo "(or a conda environment with openblas, libtiff, libpng, json-c and zlib on LD_LIBRARY_PATH)" >&2
  exit 1
fi

"$prefix/bin/cytogan" --version >/dev/null
case ":$PATH:" in
  *":$prefix/bin:"*) echo "cytogan is on your PATH: try 'cytogan --help'" ;;
  *) echo "add $prefix/bin to your PATH, e.g.: echo 'export PATH=\"$prefix/bin:\$PATH\"' >> ~/.bashrc" ;;
esac
