#!/usr/bin/env bash
# File integrity monitoring, side by side in one run:
#
# (a) detection: a scripted scenario on a small tree (vim-style save, sed -i,
#     echo >>, truncate, chmod, chown, mv in, mv out, rm, mkdir -p + file,
#     symlink swap, delete + re-create, append after the vim save), watched at
#     the same time by
#       owlet       the agent streaming to a real owlet-soc on loopback (mTLS);
#                   latency = FileChange event `time` - time the change ended
#                   (and, as a side note, until stored at the SOC)
#       inotifywait `inotifywait -m -r` (inotify-tools); latency = line read
#                   by the consumer - time the change ended
#       AIDE        `aide --init` before, `aide --check` after (no latency:
#                   it reports states, not events)
#     changes detected (of N), p50 / p99 latency. Goal: 100 %, p99 <= 100 ms.
# (b) baseline of a FILES-file tree (random sizes 0..8 KiB, 100 dirs):
#     `owlet fim baseline --config F --unlimited` (and with the default I/O
#     budget) vs `aide --init` with an equivalent rule (sha256 + metadata):
#     files/s, MB/s, CPU seconds and CPU share (CPU s / wall s), peak RSS.
#     Page cache warm for both (one untimed read first): this measures the
#     tools, not the disk.
# (c) agent RSS with FIM on the FILES-file tree, vs the same agent without
#     [fim], and `inotifywait -m -r` on the same tree: RSS per watched file
#     and the baseline file's size, beside AIDE's peak RSS (`aide --init`,
#     `aide --check`) and database size on the same tree. OWLET_ALT=PATH adds
#     the same rows for another build of `owlet` (e.g. the one before a
#     change), in the same run on the same tree.
#
# (d) cost of naming writers (fanotify marks the whole filesystem): agent CPU
#     while dd makes 250,000 4 KiB writes to a file outside the watched tree,
#     with fim.attribution = false and true.
#
# Usage: bench/fim/run.sh            (env FILES=100000, SKIP=a|b|c|d to skip parts,
#                                      OWLET_ALT=/path/to/other/owlet,
#                                      OWLET_SOC=/path/to/built/owlet-soc)
# Needs root (chown in the scenario, fanotify attribution). Installs aide and
# inotify-tools when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
FILES=${FILES:-100000}
SKIP=${SKIP:-}
OUT=$(mktemp -d /tmp/owlet-fim-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$OUT"' EXIT

source dev/lib.sh
ensure_packages aide inotify-tools
export CARGO_INCREMENTAL=0
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
# OWLET_SOC=PATH: an owlet-soc already built (the SOC is not what is measured).
if [[ -n ${OWLET_SOC:-} ]]; then
  cargo build --release -q -p owlet-agent --bin owlet
else
  cargo build --release -q -p owlet-agent --bin owlet
  cargo build --release -q -p owlet-soc --bin owlet-soc
  OWLET_SOC=$BIN/owlet-soc
fi
PY=$ROOT/bench/fim/fim_bench.py

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# SOC + an agent identity with its state under $OUT/agent (layout user).
PORT=$(free_port)
$OWLET_SOC ca init --dir "$OUT/soc" --listen "127.0.0.1:$PORT" >/dev/null
$OWLET_SOC ca issue --dir "$OUT/soc" --tenant bench --agent fim --out "$OUT/agent" \
  --soc "127.0.0.1:$PORT" --layout user >/dev/null
cp "$OUT/agent/owlet.toml" "$OUT/agent/base.toml"

# agent_config TREE [extra toml]: the issued config plus a [fim] watch on TREE.
agent_config() {
  { cat "$OUT/agent/base.toml"
    printf '\n[log]\nlevel = "warn"\n\n[fim]\n%s\n[[fim.watch]]\npath = "%s"\nrecursive = true\ntag = "bench"\n' "${2:-}" "$1"
  } > "$OUT/agent/owlet.toml"
}

# aide_conf CONF DB_IN DB_OUT TREE: AIDE with a rule equivalent to owlet's
# (sha256 + metadata) on TREE.
aide_conf() {
  cat > "$1" <<CONF
database_in=file:$2
database_out=file:$3
gzip_dbout=no
report_url=stdout
log_level=warning
Bench = p+i+n+u+g+s+m+c+l+sha256
$4 Bench
CONF
}

# ------------------------------------------------------------ (a) detection
if [[ $SKIP != *a* ]]; then
  TREE=$OUT/detect/tree
  python3 "$PY" prepare "$OUT/detect"
  agent_config "$TREE"
  rm -rf "$OUT/soc/soc.db"*
  RUST_LOG=warn $OWLET_SOC serve --config "$OUT/soc/soc.toml" >>"$OUT/soc.log" 2>&1 &
  SOC=$!
  sleep 0.5
  $BIN/owlet run --config "$OUT/agent/owlet.toml" >>"$OUT/agent.log" 2>&1 &
  AGENT=$!
  python3 "$PY" detect "$OUT/detect" "$OWLET_SOC" "$OUT/soc/soc.toml" || {
    echo "--- agent log"; tail -20 "$OUT/agent.log"; echo "--- soc log"; tail -20 "$OUT/soc.log"; exit 1; }
  kill $AGENT $SOC; wait $AGENT $SOC 2>/dev/null || true
  echo
fi

# ------------------------------------------------------------ (b) baseline
if [[ $SKIP != *b* || $SKIP != *c* ]]; then
  python3 "$PY" tree "$OUT/big" "$FILES"
fi
if [[ $SKIP != *b* ]]; then
  TREE=$OUT/big/tree
  agent_config "$TREE"
  aide_conf "$OUT/aide.conf" "$OUT/aide.db" "$OUT/aide.db.new" "$TREE"
  cat "$TREE"/*/* >/dev/null 2>&1 || find "$TREE" -type f -print0 | xargs -0 cat >/dev/null
  python3 "$PY" baseline "$FILES" "$TREE" \
    "owlet --unlimited=$BIN/owlet fim baseline --config $OUT/agent/owlet.toml --unlimited" \
    "owlet (64 MiB/s budget)=$BIN/owlet fim baseline --config $OUT/agent/owlet.toml" \
    "aide --init=aide --config $OUT/aide.conf --init"
  echo
fi

# ------------------------------------------------------------ (c) agent RSS
if [[ $SKIP != *c* ]]; then
  TREE=$OUT/big/tree
  rm -rf "$OUT/soc/soc.db"*
  RUST_LOG=warn $OWLET_SOC serve --config "$OUT/soc/soc.toml" >>"$OUT/soc.log" 2>&1 &
  SOC=$!
  sleep 0.5
  # Without [fim]: the same agent, idle.
  { cat "$OUT/agent/base.toml"; printf '\n[log]\nlevel = "warn"\n'; } > "$OUT/agent/owlet.toml"
  rm -rf "$OUT/agent/state"
  $BIN/owlet run --config "$OUT/agent/owlet.toml" >>"$OUT/agent.log" 2>&1 &
  A0=$!
  NOFIM=$(python3 "$PY" settle $A0)
  kill $A0; wait $A0 2>/dev/null || true
  # With [fim] on the big tree: first start builds the baseline, the second
  # start compares with it (the steady state of a restarted agent).
  agent_config "$TREE"
  # agent_rows NAME OWLET: "NAME|first|restart|baseline bytes" on stdout.
  agent_rows() {
    rm -rf "$OUT/agent/state"
    "$2" run --config "$OUT/agent/owlet.toml" >>"$OUT/agent.log" 2>&1 &
    local a=$! first second
    first=$(python3 "$PY" settle $a)
    kill $a; wait $a 2>/dev/null || true
    "$2" run --config "$OUT/agent/owlet.toml" >>"$OUT/agent.log" 2>&1 &
    a=$!
    second=$(python3 "$PY" settle $a)
    kill $a; wait $a 2>/dev/null || true
    echo "$1|$first|$second|$(stat -c %s "$OUT/agent/state/fim/baseline")"
  }
  ROWS=("$(agent_rows owlet "$BIN/owlet")")
  if [[ -n ${OWLET_ALT:-} ]]; then
    ROWS+=("$(agent_rows "owlet (OWLET_ALT)" "$OWLET_ALT")")
  fi
  aide_conf "$OUT/aide-c.conf" "$OUT/aide-c.db" "$OUT/aide-c.db" "$TREE"
  AIDE=$(python3 "$PY" aide "$OUT/aide-c.conf" "$OUT/aide-c.db")
  inotifywait -m -r -q -e modify,attrib,close_write,move,create,delete "$TREE" >/dev/null 2>&1 &
  IW=$!
  INOTIFY=$(python3 "$PY" settle $IW)
  kill $IW; wait $IW 2>/dev/null || true
  kill $SOC; wait $SOC 2>/dev/null || true
  python3 - "$FILES" "$NOFIM" "$INOTIFY" "$AIDE" "${ROWS[@]}" <<'PY'
import sys
files, nofim, inotify, aide = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
agents = [r.split("|") for r in sys.argv[5:]]
rows = [("agent without [fim]", nofim)]
for name, first, second, _ in agents:
    rows += [(f"{name}, fim on {files:,} files, first start (builds baseline)", first),
             (f"{name}, fim on {files:,} files, restart (compares)", second)]
rows.append(("inotifywait -m -r on the same tree", inotify))
print(f"(c) resident memory, MB                                                 {'RSS':>8} {'peak':>8}")
for name, v in rows:
    rss, hwm, _ = v.split()
    print(f"    {name:68} {float(rss):>8.1f} {float(hwm):>8.1f}")
base = float(nofim.split()[0])
a_init, a_check, a_db = (float(x) for x in aide.split()[:3])
print(f"    aide --init / --check on the same tree, peak RSS MB: {a_init:.1f} / {a_check:.1f}; database {a_db / 1e6:.1f} MB ({a_db / files:.0f} B/file)")
for name, first, second, size in agents:
    f, s = float(first.split()[0]), float(second.split()[0])
    print(f"    {name}: FIM costs {(f - base) * 1e6 / files:.0f} B/file (first start), {(s - base) * 1e6 / files:.0f} B/file (restart)"
          f" over the agent without [fim]; peak {float(second.split()[1]):.1f} MB;"
          f" baseline {int(size) / 1e6:.1f} MB ({int(size) / files:.0f} B/file; aide's database / this = {a_db / int(size):.2f})")
PY
fi

# ------------------------------------------------------------ (d) attribution cost
if [[ $SKIP != *d* ]]; then
  mkdir -p "$OUT/storm/tree"
  echo a > "$OUT/storm/tree/x"
  rm -rf "$OUT/soc/soc.db"*
  RUST_LOG=warn $OWLET_SOC serve --config "$OUT/soc/soc.toml" >>"$OUT/soc.log" 2>&1 &
  SOC=$!
  agent_cpu() { awk -v t="$(getconf CLK_TCK)" '{print ($14+$15)/t}' "/proc/$1/stat"; }
  echo "(d) agent CPU while dd makes 250,000 x 4 KiB writes outside the watched tree (same filesystem)"
  for att in false true; do
    agent_config "$OUT/storm/tree" "attribution = $att"
    rm -rf "$OUT/agent/state"
    $BIN/owlet run --config "$OUT/agent/owlet.toml" >>"$OUT/agent.log" 2>&1 &
    A=$!
    python3 "$PY" settle $A >/dev/null
    c0=$(agent_cpu $A)
    mkdir -p "$OUT/elsewhere"
    dd if=/dev/zero of="$OUT/elsewhere/big" bs=4k count=250000 status=none
    sleep 1
    c1=$(agent_cpu $A)
    kill $A; wait $A 2>/dev/null || true
    rm -f "$OUT/elsewhere/big"
    echo "    fim.attribution = $att: $(python3 -c "print(f'{$c1 - $c0:.2f}')") CPU s"
  done
  kill $SOC; wait $SOC 2>/dev/null || true
fi
