#!/usr/bin/env bash
# Builds the owlet and owlet-soc packages: .deb (cargo-deb) and .rpm
# (cargo-generate-rpm), one per binary.
#
#   packaging/build.sh [--profile release|dev] [--version VERSION] [--no-build] [--out DIR]
#
#   --profile   cargo profile of the packaged binaries (default release;
#               the tests package the dev binaries they already built)
#   --version   package version instead of the crate's (e.g. 0.0.1, for the
#               upgrade test's "previous" build); the Debian revision is -1
#   --no-build  package the binaries already built (cargo build --bins)
#   --out       where the packages go (default target/packages)
#
# Steps: build the binaries and owlet-docgen; render the man pages and shell
# completions from the clap definitions into packaging/generated/; render the
# RPM scriptlets from packaging/rpm/*.sh; run cargo-deb and
# cargo-generate-rpm. Installs cargo-deb and cargo-generate-rpm with
# `cargo install --locked` when missing (a few minutes, once).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

PROFILE=release
VERSION=""
BUILD=1
OUT="$ROOT/target/packages"
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "packaging/build.sh: unknown argument '$1' (see the comment at the top of this script)" >&2; exit 2 ;;
  esac
done
case "$PROFILE" in
  release) PROFILE_DIR=release ;;
  dev|debug) PROFILE=dev; PROFILE_DIR=debug ;;
  *) PROFILE_DIR="$PROFILE" ;;
esac
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="$TARGET_DIR/$PROFILE_DIR"

for tool in cargo-deb:cargo-deb cargo-generate-rpm:cargo-generate-rpm; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
    echo "packaging/build.sh: installing ${tool#*:} (cargo install --locked; a few minutes, once)" >&2
    start=$(date +%s)
    cargo install --locked --quiet "${tool#*:}"
    echo "packaging/build.sh: ${tool#*:} installed in $(( $(date +%s) - start ))s" >&2
  fi
done

if [ "$BUILD" = 1 ]; then
  cargo build --profile "$PROFILE" -p owlet-agent -p owlet-soc -p owlet-docgen --bins
fi
for bin in owlet owlet-soc owlet-docgen; do
  if [ ! -x "$BIN_DIR/$bin" ]; then
    echo "packaging/build.sh: $BIN_DIR/$bin is missing: build it (cargo build --profile $PROFILE --bins) or drop --no-build" >&2
    exit 2
  fi
done

GEN="$ROOT/packaging/generated"
rm -rf "$GEN"
"$BIN_DIR/owlet-docgen" "$GEN"
for pkg in owlet owlet-soc; do
  case "$pkg" in
    owlet) gecos="owlet monitoring agent" ;;
    owlet-soc) gecos="owlet SOC receiver" ;;
  esac
  mkdir -p "$GEN/rpm/$pkg"
  for script in pre post preun postun; do
    sed -e "s/@PKG@/$pkg/g" -e "s/@GECOS@/$gecos/g" "packaging/rpm/$script.sh" > "$GEN/rpm/$pkg/$script.sh"
  done
done

if [ "$PROFILE" = release ]; then
  # cargo-deb strips its own copy; cargo-generate-rpm packages the file as it is.
  strip "$BIN_DIR/owlet" "$BIN_DIR/owlet-soc"
fi

mkdir -p "$OUT"
deb_version=()
rpm_version=()
if [ -n "$VERSION" ]; then
  deb_version=(--deb-version "$VERSION-1")
  rpm_version=(-s "version = \"$VERSION\"")
fi
deb_flags=()
if [ "$PROFILE" = dev ]; then
  # cargo-deb warns that the dev profile is meant for development only: the
  # tests package the dev binaries on purpose (the same bits they test),
  # stripped (lintian) and lightly compressed (minutes saved per package).
  deb_flags=(--strip --fast)
fi
for crate in agent soc; do
  cargo deb --no-build --quiet --profile "$PROFILE" -p "owlet-$crate" "${deb_flags[@]}" "${deb_version[@]}" --output "$OUT/"
  cargo generate-rpm --profile "$PROFILE" -p "$crate" "${rpm_version[@]}" --output "$OUT/"
done
ls -1 "$OUT"
