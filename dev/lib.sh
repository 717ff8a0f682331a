# Shared by dev/test and the bench runners (`source dev/lib.sh`).

# ensure_packages PKG...: installs the Debian packages that are missing (the
# real peers tests and benchmarks run against), through sudo when not root.
# Sets INSTALLED to what it installed.
INSTALLED=()
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing test peers: ${missing[*]}" >&2
  local sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  INSTALLED=("${missing[@]}")
}
