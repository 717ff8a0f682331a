#!/usr/bin/env bash
# SOC store benchmark (issue 15 §3, §8): what typed columns, indexes and
# per-tenant logs cost the receiver, and how fast a tenant exports.
#
#   1. pipeline, side by side in one run: the same agent (owlet-loadgen,
#      fsync per batch) sends N events to
#        old : owlet-soc built from BASE (one soc.db, protobuf blobs, no index)
#        new : owlet-soc of this tree (tenant log: typed columns, 2 indexes)
#      -> end-to-end events/s and the SOC's CPU per stored event, new/old.
#      Goals: events/s >= 70 % of old; CPU per event <= 2.5x old.
#   2. flow-heavy: 100,000 flow records in one minute (owlet-loadgen --kind
#      flow, thousands of hosts, ports and names: the rollups' worst case)
#      to the new SOC: held if every flow is stored within 5 s of the last
#      one produced; prints the SOC's CPU share.
#   3. export of the N stored events: owlet-soc export --format ndjson|csv
#      (events/s, peak RSS) beside sqlite3 -json over the same rows (the
#      peer from Debian's packages). Goal: >= 100,000 events/s, RSS <= 100 MB.
#
# Usage: bench/soc/run.sh [EVENTS]   (default 1,000,000)   BASE=<commit> to
# compare with another old receiver (default: the commit before the store).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
BASE=${BASE:-5195603}
OUT=$(mktemp -d /tmp/owlet-socbench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; git worktree remove --force "$OUT/base" 2>/dev/null || true' EXIT

source dev/lib.sh
ensure_packages sqlite3 time
cargo build --release -q -p owlet-loadgen -p owlet-soc
BIN=${CARGO_TARGET_DIR:-target}/release
# The old receiver, built once per BASE into its own target directory.
OLD_TARGET=${OLD_TARGET:-/var/tmp/owlet-bench-base-target}
git worktree add -q --detach "$OUT/base" "$BASE"
CARGO_TARGET_DIR="$OLD_TARGET" cargo build --release -q --manifest-path "$OUT/base/Cargo.toml" -p owlet-soc
OLD_SOC="$OLD_TARGET/release/owlet-soc"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_seconds() { awk -v t="$(getconf CLK_TCK)" '{print ($14+$15)/t}' "/proc/$1/stat"; }

PORT=$(free_port)
$BIN/owlet-soc ca init --dir "$OUT/soc" --listen "127.0.0.1:$PORT" >/dev/null
$BIN/owlet-soc ca issue --dir "$OUT/soc" --tenant bench --agent a1 --out "$OUT/agent" --soc "127.0.0.1:$PORT" >/dev/null
sed -i "s|/var/lib/owlet|$OUT/agent/state|; s|/run/owlet/owlet.sock|$OUT/agent/owlet.sock|; s|interval = \"30s\"|interval = \"1s\"|" "$OUT/agent/owlet.toml"
printf '\n[log]\nlevel = "warn"\n' >> "$OUT/agent/owlet.toml"

# stored_count SOC_KIND -> events stored so far (cheap)
stored_count() {
  local n
  if [ "$1" = old ]; then
    n=$(sqlite3 -readonly "$OUT/soc/soc.db" "SELECT COALESCE(MAX(id), 0) FROM events" 2>/dev/null || true)
  else
    # No row before the first event is stored.
    n=$(sqlite3 -readonly "$OUT/soc/tenants/bench/events.db" "SELECT value FROM meta WHERE key = 'last_id'" 2>/dev/null || true)
  fi
  echo "${n:-0}"
}

# run SOC_KIND SOC_BIN [LOADGEN ARGS] -> "events_per_s soc_cpu_s"
run() {
  rm -rf "$OUT/agent/state" "$OUT/soc/soc.db"* "$OUT/soc/tenants" "$OUT/soc/cursors.db"* "$OUT/soc/receiver.json"
  RUST_LOG=warn "$2" serve --config "$OUT/soc/soc.toml" 2>>"$OUT/soc-$1.log" &
  local soc=$!
  sleep 0.5
  local start end
  start=$(date +%s.%N)
  $BIN/owlet-loadgen run --config "$OUT/agent/owlet.toml" ${3:---rate 10000000} --total "$N" 2>>"$OUT/agent.log" &
  local agent=$!
  local deadline=$((SECONDS + 900))
  # The agent's own heartbeats are stored too: wait for N plus a few.
  while [ "$(stored_count "$1")" -lt "$N" ]; do
    sleep 0.2
    [ "$SECONDS" -gt "$deadline" ] && { echo "$1: only $(stored_count "$1") of $N stored" >&2; exit 1; }
  done
  end=$(date +%s.%N)
  local cpu
  cpu=$(cpu_seconds $soc)
  kill $agent $soc; wait $agent $soc 2>/dev/null || true
  python3 -c "print(int($N / ($end - $start)), $cpu)"
}

read -r OLD_RATE OLD_CPU < <(run old "$OLD_SOC")
read -r NEW_RATE NEW_CPU < <(run new "$BIN/owlet-soc")
cp -a "$OUT/soc/tenants" "$OUT/tenants.checks"

# ---------------------------------------------------------------- flow-heavy
FLOWS=100000
FLOW_START=$(date +%s.%N)
read -r _ FLOW_CPU < <(N=$FLOWS run new "$BIN/owlet-soc" "--kind flow --rate $((FLOWS / 60))")
FLOW_SECONDS=$(python3 -c "print(round($(date +%s.%N) - $FLOW_START, 1))")
rm -rf "$OUT/soc/tenants"; mv "$OUT/tenants.checks" "$OUT/soc/tenants"

# ---------------------------------------------------------------- export
DB="$OUT/soc/tenants/bench/events.db"
STORED=$(sqlite3 -readonly "$DB" "SELECT COUNT(*) FROM events")
# export FORMAT -> "seconds peak_rss_mb"
export_run() {
  /usr/bin/time -f "%e %M" -o "$OUT/time.$1" $BIN/owlet-soc export --config "$OUT/soc/soc.toml" --tenant bench --format "$1" --output "$OUT/export.$1" 2>/dev/null
  awk '{printf "%s %.1f\n", $1, $2/1024}' "$OUT/time.$1"
}
read -r ND_S ND_MB < <(export_run ndjson)
read -r CSV_S CSV_MB < <(export_run csv)
/usr/bin/time -f "%e %M" -o "$OUT/time.peer" sqlite3 -readonly -json "$DB" \
  "SELECT id, agent, seq, kind, time_us, received_us, zone, check_id, state, result, latency_us, target, message FROM events" > "$OUT/export.peer"
read -r PEER_S PEER_MB < <(awk '{printf "%s %.1f\n", $1, $2/1024}' "$OUT/time.peer")

python3 - <<PY
n = $N
o_rate, n_rate = $OLD_RATE, $NEW_RATE
o_cpu, n_cpu = $OLD_CPU, $NEW_CPU
print(f"SOC store benchmark, {n:,} events from one agent (fsync per batch, ack after commit), old = $BASE")
print(f"{'':36} {'old SOC':>12} {'new SOC':>12} {'new/old':>8} goal")
print(f"{'events/s end to end':36} {o_rate:>12,} {n_rate:>12,} {n_rate/o_rate:>8.2f} >= 0.70")
print(f"{'SOC CPU us per stored event':36} {o_cpu*1e6/n:>12.2f} {n_cpu*1e6/n:>12.2f} {n_cpu/o_cpu:>8.2f} <= 2.50")
stored = $STORED
def rate(s): return int(stored / max(float(s), 1e-9))
flows, secs, fcpu = $FLOWS, $FLOW_SECONDS, $FLOW_CPU
print(f"flow-heavy: {flows:,} flow records offered in 60 s, all stored after {secs} s "
      f"({'held' if secs <= 65 else 'NOT held'}: goal all stored within 5 s of the last); SOC CPU {fcpu:.1f} s = {fcpu/secs*100:.0f} % of one core")
print(f"export of {stored:,} stored events       {'events/s':>12} {'peak RSS MB':>12}")
print(f"{'owlet-soc export --format ndjson':36} {rate($ND_S):>12,} {$ND_MB:>12}   goal >= 100,000/s, <= 100 MB")
print(f"{'owlet-soc export --format csv':36} {rate($CSV_S):>12,} {$CSV_MB:>12}")
print(f"{'sqlite3 -json (peer, 13 columns)':36} {rate($PEER_S):>12,} {$PEER_MB:>12}   ndjson/peer {rate($ND_S)/rate($PEER_S):.2f}")
PY
echo "work dir: $OUT"
