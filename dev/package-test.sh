#!/usr/bin/env bash
# The packages, end to end (run by tests/tests/packages.rs; as root):
#
#  1. builds the .deb and .rpm of owlet and owlet-soc twice with
#     packaging/build.sh from the binaries already built (target/debug): once
#     as version 0.0.1 (the "previous" release, its default owlet.toml
#     slightly different so dpkg must decide about the conffile), once as the
#     crate's version;
#  2. in a clean Debian root (debootstrap, cached under
#     /var/cache/owlet-test; systemd is installed there but is not PID 1):
#     install the previous owlet, check the user, files, owners and modes,
#     that nothing is enabled, run `owlet --help` and `owlet check-config`
#     (as the owlet user) on the shipped config; put in a site edit, a
#     spool and baselines and certificates; upgrade; check they all survived
#     and the edited conffile was kept; remove (state kept); purge (state and
#     certificates gone, user kept). Then the same for owlet-soc, and the
#     owlet install once more without systemd-sysusers (the adduser path);
#  3. lintian on both .deb: no errors (warnings printed);
#  4. rpm -qpl on both .rpm: exactly the expected files; config and scripts.
#
# Exit 77 (the test reports it as skipped) only when no Debian mirror is
# reachable for debootstrap; any other failure exits 1 with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
# shellcheck source=lib.sh
source dev/lib.sh

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot)"
ensure_packages debootstrap lintian rpm dpkg-dev curl

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
WORK="$TARGET_DIR/package-test"
rm -rf "$WORK"
mkdir -p "$WORK/old" "$WORK/new"
CHROOTS=()
cleanup() {
  local r
  for r in "${CHROOTS[@]}"; do
    rm -rf --one-file-system "$r"
  done
}
trap cleanup EXIT

# ---------------------------------------------------------------- packages
step "build packages (previous 0.0.1, then current)"
t0=$(date +%s)
packaging/build.sh --profile dev --no-build --out "$WORK/new" >"$WORK/build-new.log" 2>&1 \
  || { cat "$WORK/build-new.log" >&2; fail "packaging/build.sh"; }
# The previous release: the same owlet .deb as version 0.0.1 (cargo-deb's
# --deb-version, from what build.sh just generated).
cargo deb --no-build --quiet --profile dev -p owlet-agent --strip --fast --deb-version 0.0.1-1 \
  --output "$WORK/old/" >"$WORK/build-old.log" 2>&1 \
  || { cat "$WORK/build-old.log" >&2; fail "cargo deb --deb-version 0.0.1-1"; }
# The previous release's default config differs, so the upgrade has to keep
# the site's edited file against a changed package file (dpkg's hard case).
OLD_DEB=$(ls "$WORK"/old/owlet_0.0.1-1_*.deb)
dpkg-deb -R "$OLD_DEB" "$WORK/old/tree"
printf '# previous release default\n' >> "$WORK/old/tree/etc/owlet/owlet.toml"
(cd "$WORK/old/tree" && find etc usr -type f -exec md5sum {} + > DEBIAN/md5sums)
dpkg-deb --root-owner-group -b "$WORK/old/tree" "$OLD_DEB" >/dev/null
rm -rf "$WORK/old/tree"
echo "built in $(( $(date +%s) - t0 ))s:"; ls -1 "$WORK/old" "$WORK/new"
one() { # one GLOB: the single file matching
  local matches=( $1 )
  [ ${#matches[@]} -eq 1 ] && [ -f "${matches[0]}" ] || fail "expected one file for $1, got: ${matches[*]}"
  echo "${matches[0]}"
}
OLD_DEB=$(one "$WORK/old/owlet_0.0.1-1_*.deb")
NEW_DEB=$(one "$WORK/new/owlet_*.deb")
SOC_DEB=$(one "$WORK/new/owlet-soc_*.deb")
NEW_RPM=$(one "$WORK/new/owlet-[0-9]*.rpm")
SOC_RPM=$(one "$WORK/new/owlet-soc-[0-9]*.rpm")

# ---------------------------------------------------------------- rpm
step "rpm -qpl"
expect_rpm_list() { # RPM EXPECTED...
  local rpm_file="$1"; shift
  local got want
  got=$(rpm -qpl "$rpm_file" 2>/dev/null | sort)
  want=$(printf '%s\n' "$@" | sort)
  if [ "$got" != "$want" ]; then
    diff <(echo "$want") <(echo "$got") >&2 || true
    fail "rpm -qpl $(basename "$rpm_file"): unexpected file list (- expected, + got)"
  fi
  echo "$(basename "$rpm_file"): $(echo "$got" | wc -l) files as expected"
}
man_pages() { # BIN: the man pages docgen wrote for BIN, as installed paths
  local f
  for f in packaging/generated/"$1"/man/*.1; do echo "/usr/share/man/man1/$(basename "$f")"; done
}
mapfile -t OWLET_MAN < <(man_pages owlet)
mapfile -t SOC_MAN < <(man_pages owlet-soc)
[ ${#OWLET_MAN[@]} -ge 5 ] || fail "owlet-docgen wrote only ${#OWLET_MAN[@]} owlet man pages"
expect_rpm_list "$NEW_RPM" /usr/bin/owlet /etc/owlet/owlet.toml /usr/lib/sysusers.d/owlet.conf \
  /usr/lib/systemd/system/owlet.service \
  /usr/share/owlet/hw-profiles/small.toml /usr/share/owlet/hw-profiles/medium.toml /usr/share/owlet/hw-profiles/large.toml \
  $(cd systemd/owlet.service.d && for f in *.conf.example; do echo "/usr/share/doc/owlet/examples/owlet.service.d/$f"; done) \
  "${OWLET_MAN[@]}" /usr/share/bash-completion/completions/owlet /usr/share/zsh/site-functions/_owlet \
  /usr/share/fish/vendor_completions.d/owlet.fish
expect_rpm_list "$SOC_RPM" /usr/bin/owlet-soc /etc/owlet-soc/soc.toml /usr/lib/sysusers.d/owlet-soc.conf \
  /usr/lib/systemd/system/owlet-soc.service /usr/lib/systemd/system/owlet-soc-receiver.service \
  /usr/lib/systemd/system/owlet-soc-writer.service /usr/lib/systemd/system/owlet-soc-outputs.service \
  /usr/lib/systemd/system/owlet-soc-notify.service /usr/lib/systemd/system/owlet-soc-reports.service \
  /usr/lib/systemd/system/owlet-soc-portal.service /usr/lib/systemd/system/owlet-soc-scale-portal.service \
  $(cd packaging/examples/scale && for f in *; do echo "/usr/share/doc/owlet-soc/examples/scale/$f"; done) \
  "${SOC_MAN[@]}" /usr/share/bash-completion/completions/owlet-soc /usr/share/zsh/site-functions/_owlet-soc \
  /usr/share/fish/vendor_completions.d/owlet-soc.fish
# (Outputs are captured before grep: `grep -q` in a pipe would SIGPIPE rpm under pipefail.)
flags=$(rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:octal} %{FILEUSERNAME}:%{FILEGROUPNAME}\n]' "$NEW_RPM" 2>/dev/null)
grep -qx '/etc/owlet/owlet.toml cn 100640 root:owlet' <<<"$flags" \
  || fail "owlet.rpm: /etc/owlet/owlet.toml is not %config(noreplace) 0640 root:owlet: $(grep etc/ <<<"$flags")"
[ "$(grep -c ' c' <<<"$flags")" -eq 1 ] || fail "owlet.rpm: config files other than owlet.toml: $flags"
scripts=$(rpm -qp --scripts "$NEW_RPM" 2>/dev/null)
grep -q 'useradd --system --user-group --home-dir /var/lib/owlet' <<<"$scripts" \
  || fail "owlet.rpm: %pre does not create the owlet user"

# ---------------------------------------------------------------- lintian
step "lintian"
for deb in "$NEW_DEB" "$SOC_DEB"; do
  # --fail-on error: warnings are listed, errors fail the test.
  if ! lintian --fail-on error --tag-display-limit 0 "$deb" >"$WORK/lintian.log" 2>&1; then
    cat "$WORK/lintian.log" >&2
    fail "lintian reports errors for $(basename "$deb")"
  fi
  echo "lintian $(basename "$deb"): $(grep -c '^E:' "$WORK/lintian.log" || true) errors, $(grep -c '^W:' "$WORK/lintian.log" || true) warnings"
  sed 's/^/  /' "$WORK/lintian.log"
done

# ---------------------------------------------------------------- Debian root
SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
# The machine's own Debian mirror (the first plain "debian" archive in its apt sources).
MIRROR=$(grep -rhoE '(URIs:|^deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | grep -oE 'https?://[^[:space:]]+' | head -n1 || true)
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
CACHE=/var/cache/owlet-test/debootstrap-$SUITE-v1
if [ ! -x "$CACHE/usr/bin/dpkg" ]; then
  if ! curl -fsS -o /dev/null --max-time 30 "$MIRROR/dists/$SUITE/Release"; then
    echo "SKIP: debootstrap cannot reach the Debian mirror $MIRROR (from /etc/apt/sources.list*): no clean root to install into"
    exit 77
  fi
  step "debootstrap $SUITE from $MIRROR into $CACHE (once; cached)"
  t0=$(date +%s)
  rm -rf "$CACHE.tmp"
  mkdir -p "$(dirname "$CACHE")"
  debootstrap --variant=minbase --include=adduser,systemd "$SUITE" "$CACHE.tmp" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; fail "debootstrap $SUITE $MIRROR (log: $WORK/debootstrap.log)"; }
  rm -rf "$CACHE.tmp/var/cache/apt/archives/"*.deb
  mv "$CACHE.tmp" "$CACHE"
  echo "debootstrap took $(( $(date +%s) - t0 ))s"
fi

new_root() { # NAME: R becomes a fresh copy of the cached clean root
  R="$WORK/root-$1"
  rm -rf --one-file-system "$R"
  CHROOTS+=("$R")
  cp -a "$CACHE" "$R"
  mkdir -p "$R/tmp/pkgs"
  cp "$WORK"/old/*.deb "$WORK"/new/*.deb "$R/tmp/pkgs/"
}
in_root() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
stat_of() { in_root stat -c '%a %U:%G' "$1"; }
expect_stat() { # PATH "MODE OWNER:GROUP"
  local got; got=$(stat_of "$1" 2>/dev/null) || fail "$1 does not exist"
  [ "$got" = "$2" ] || fail "$1 is $got, expected $2"
}
expect_file() { [ -f "$R$1" ] || fail "$1 is not installed"; }
expect_absent() { [ ! -e "$R$1" ] || fail "$1 still exists"; }
expect_not_enabled() { # PKG: no unit symlink anywhere under /etc/systemd
  local links
  links=$(find "$R/etc/systemd" -name "$1.service" 2>/dev/null)
  [ -z "$links" ] || fail "the package enabled $1.service: $links"
}
dpkg_in_root() { # LOG ARGS...: dpkg in the root, output kept
  local log="$1"; shift
  in_root dpkg "$@" >"$log" 2>&1 || { cat "$log" >&2; fail "dpkg $*"; }
}
check_system_user() { # NAME HOME
  local entry uid
  entry=$(in_root getent passwd "$1") || fail "user $1 was not created"
  uid=$(echo "$entry" | cut -d: -f3)
  [ "$uid" -lt 1000 ] || fail "user $1 is not a system user (uid $uid)"
  [ "$(echo "$entry" | cut -d: -f6)" = "$2" ] || fail "user $1: home is not $2 ($entry)"
  case "$(echo "$entry" | cut -d: -f7)" in */nologin|*/false) ;; *) fail "user $1 can log in ($entry)" ;; esac
  in_root getent group "$1" >/dev/null || fail "group $1 was not created"
}

step "owlet: install the previous release (0.0.1) into a clean $SUITE root"
new_root main
dpkg_in_root "$WORK/install.log" -i "/tmp/pkgs/$(basename "$OLD_DEB")"
grep -q "waiting for /etc/owlet/ca.pem /etc/owlet/agent.pem /etc/owlet/agent.key" "$WORK/install.log" \
  || { cat "$WORK/install.log" >&2; fail "postinst does not say it waits for the certificates"; }
check_system_user owlet /var/lib/owlet
expect_stat /etc/owlet "750 root:owlet"
expect_stat /etc/owlet/owlet.toml "640 root:owlet"
expect_stat /var/lib/owlet "700 owlet:owlet"
expect_stat /usr/bin/owlet "755 root:root"
UNIT=$(grep -E '/systemd/system/owlet.service$' <<<"$(in_root dpkg -L owlet)") || fail "owlet.service is not in the package"
expect_file "$UNIT"
grep -q '^ConditionPathExists=/etc/owlet/agent.pem' "$R$UNIT" || fail "$UNIT does not wait for /etc/owlet/agent.pem"
expect_file /usr/lib/sysusers.d/owlet.conf
for p in small medium large; do expect_file "/usr/share/owlet/hw-profiles/$p.toml"; done
expect_file /usr/share/man/man1/owlet.1.gz
expect_file /usr/share/man/man1/owlet-check-config.1.gz
expect_file /usr/share/bash-completion/completions/owlet
expect_file /usr/share/zsh/vendor-completions/_owlet
expect_file /usr/share/fish/vendor_completions.d/owlet.fish
grep -q ' /etc/owlet/owlet.toml ' <<<"$(in_root dpkg-query -W -f='${Conffiles}\n' owlet)" || fail "/etc/owlet/owlet.toml is not a conffile"
expect_not_enabled owlet
grep -q 'check\\-config' <<<"$(gzip -dc "$R/usr/share/man/man1/owlet.1.gz")" || fail "owlet.1 does not list check-config"
in_root owlet --help >"$WORK/help.log" 2>&1 || { cat "$WORK/help.log" >&2; fail "owlet --help"; }
grep -q 'check-config' "$WORK/help.log" || fail "owlet --help does not list check-config"
# The shipped config, as the service user: a clear error naming the missing certificates.
set +e
chroot --userspec=owlet:owlet "$R" env -i PATH=/usr/bin:/bin owlet check-config /etc/owlet/owlet.toml >"$WORK/check.log" 2>&1
code=$?
set -e
cat "$WORK/check.log"
[ "$code" -eq 2 ] || fail "owlet check-config on the shipped config exited $code, expected 2"
for f in ca.pem agent.pem agent.key; do
  grep -q "/etc/owlet/$f" "$WORK/check.log" || fail "owlet check-config does not name the missing /etc/owlet/$f"
done

step "owlet: site state, then upgrade to the current build"
printf '\n# site edit: kept across upgrades\n' >> "$R/etc/owlet/owlet.toml"
in_root install -d -o owlet -g owlet -m 0700 /var/lib/owlet/spool /var/lib/owlet/fim
echo "unacknowledged events" > "$R/var/lib/owlet/spool/00000001.seg"
echo "baseline" > "$R/var/lib/owlet/fim/baseline.db"
in_root chown owlet:owlet /var/lib/owlet/spool/00000001.seg /var/lib/owlet/fim/baseline.db
for f in ca.pem agent.pem; do echo "test $f" > "$R/etc/owlet/$f"; in_root chown root:owlet "/etc/owlet/$f"; chmod 0640 "$R/etc/owlet/$f"; done
echo "test key" > "$R/etc/owlet/agent.key"; in_root chown owlet:owlet /etc/owlet/agent.key; chmod 0600 "$R/etc/owlet/agent.key"
OWLET_UID=$(in_root id -u owlet)
# What unattended upgrades pass: keep the admin's config without asking.
dpkg_in_root "$WORK/upgrade.log" -i --force-confdef --force-confold "/tmp/pkgs/$(basename "$NEW_DEB")"
grep -q "waiting for" "$WORK/upgrade.log" && fail "postinst complains about certificates that are there"
expect_not_enabled owlet
[ "$(in_root dpkg-query -W -f='${Version}' owlet)" != "0.0.1-1" ] || fail "the upgrade did not happen"
grep -q '^# site edit: kept across upgrades' "$R/etc/owlet/owlet.toml" || fail "the upgrade overwrote the edited /etc/owlet/owlet.toml"
[ "$(cat "$R/var/lib/owlet/spool/00000001.seg")" = "unacknowledged events" ] || fail "the upgrade lost the spool"
[ "$(cat "$R/var/lib/owlet/fim/baseline.db")" = "baseline" ] || fail "the upgrade lost the baselines"
expect_stat /var/lib/owlet "700 owlet:owlet"
expect_stat /var/lib/owlet/spool "700 owlet:owlet"
expect_stat /etc/owlet "750 root:owlet"
expect_stat /etc/owlet/owlet.toml "640 root:owlet"
expect_stat /etc/owlet/agent.key "600 owlet:owlet"
[ "$(in_root id -u owlet)" = "$OWLET_UID" ] || fail "the upgrade changed the owlet uid"
VERSION=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
grep -q "$VERSION" <<<"$(in_root owlet --version)" || fail "owlet --version after the upgrade is not $VERSION"

step "owlet: remove keeps state and config, purge deletes them"
dpkg_in_root "$WORK/remove.log" -r owlet
expect_absent /usr/bin/owlet
expect_file /etc/owlet/owlet.toml
expect_file /var/lib/owlet/spool/00000001.seg
dpkg_in_root "$WORK/purge.log" -P owlet
expect_absent /var/lib/owlet
expect_absent /etc/owlet
in_root getent passwd owlet >/dev/null || fail "purge removed the owlet user (Debian keeps system users)"

step "owlet-soc: install, files and modes, purge"
dpkg_in_root "$WORK/soc-install.log" -i "/tmp/pkgs/$(basename "$SOC_DEB")"
check_system_user owlet-soc /var/lib/owlet-soc
expect_stat /etc/owlet-soc "750 root:owlet-soc"
expect_stat /etc/owlet-soc/soc.toml "640 root:owlet-soc"
expect_stat /var/lib/owlet-soc "700 owlet-soc:owlet-soc"
expect_file /usr/share/man/man1/owlet-soc.1.gz
expect_file /usr/share/bash-completion/completions/owlet-soc
grep -q serve <<<"$(in_root owlet-soc --help)" || fail "owlet-soc --help does not list serve"
expect_not_enabled owlet-soc
echo db > "$R/var/lib/owlet-soc/soc.db"
dpkg_in_root "$WORK/soc-purge.log" -P owlet-soc
expect_absent /var/lib/owlet-soc
expect_absent /usr/bin/owlet-soc

step "owlet: install where systemd-sysusers is missing (adduser creates the user)"
new_root nosysusers
rm -f "$R/usr/bin/systemd-sysusers" "$R/bin/systemd-sysusers"
dpkg_in_root "$WORK/install-adduser.log" -i "/tmp/pkgs/$(basename "$NEW_DEB")"
check_system_user owlet /var/lib/owlet
expect_stat /var/lib/owlet "700 owlet:owlet"
expect_stat /etc/owlet "750 root:owlet"
expect_not_enabled owlet

echo "PASS: packages built, installed, upgraded and purged"
