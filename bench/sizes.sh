#!/usr/bin/env bash
# Stripped sizes of the shipped binaries (release builds), and what the
# sensor binary must not contain. Usage: bash bench/sizes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p owlet-agent -p owlet-soc
OUT=$(mktemp -d /tmp/owlet-sizes.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
printf '%-10s %12s %12s\n' binary "release MB" "stripped MB"
for bin in owlet owlet-soc; do
  cp "target/release/$bin" "$OUT/$bin"
  strip "$OUT/$bin"
  awk -v b="$bin" -v r="$(stat -c %s "target/release/$bin")" -v s="$(stat -c %s "$OUT/$bin")" \
    'BEGIN { printf "%-10s %12.1f %12.1f\n", b, r / 1e6, s / 1e6 }'
done
echo "sensor dependencies that must be absent (cargo tree -p owlet-agent -e normal):"
for crate in owlet-soc rusqlite rcgen; do
  if cargo tree -q -p owlet-agent -e normal --prefix none | grep -q "^$crate "; then
    echo "  $crate: PRESENT"; exit 1
  else
    echo "  $crate: absent"
  fi
done
