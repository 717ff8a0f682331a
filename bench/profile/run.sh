#!/usr/bin/env bash
# Does the agent stay inside its hardware profile's memory budget under load?
#
# The real `owlet` agent runs with `hw_profile = "small"` and nothing else
# sized in its config (the profile sets capture workers, ring, flow table,
# spool and check limits), capturing `lo` and streaming to a real
# `owlet-soc`, while the capture benchmark's flow flood (FLOWS distinct UDP
# flows, one 60-byte frame each, see bench/capture/flood_pcap.py) is replayed
# onto `lo` LOOPS times with tcpreplay. Flow timeouts are long, so the flow
# table fills and stays full (every new flow evicts one, which becomes an
# event to spool and send). Prints the agent's peak resident memory (VmHWM)
# against the profile's memory_max.
#
# The same run with no profile (the built-in defaults) shows what the profile
# changes, and softflowd (Debian's peer) with the small profile's flow-table
# size (2 workers x max_flows) is measured the same way.
#
# Exit status 1 when the small profile's agent peaks above its budget.
#
# Usage: [FLOWS=1000000] [LOOPS=3] [MBPS=200] bench/profile/run.sh
# Needs root (AF_PACKET), tcpreplay, softflowd, python3. Uses only loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
FLOWS=${FLOWS:-1000000}
LOOPS=${LOOPS:-3}
MBPS=${MBPS:-200}
source dev/lib.sh
ensure_packages tcpreplay softflowd
cargo build --release -q -p owlet-agent -p owlet-soc
BIN=$PWD/target/release
OUT=$(mktemp -d /tmp/owlet-profilemem.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$OUT"' EXIT

kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
flood() { tcpreplay -q -i lo --mbps "$MBPS" --loop "$LOOPS" "$OUT/flows.pcap" >/dev/null 2>&1; }

python3 bench/capture/flood_pcap.py "$OUT/flows.pcap" "$FLOWS"

shown=$($BIN/owlet hw-profile show small --json)
BUDGET=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["memory_max"])' <<<"$shown")
TABLE=$(python3 -c '
import json, sys
s = {x["key"]: x["value"] for x in json.load(sys.stdin)["settings"]}
print(s["capture.workers"] * s["capture.max_flows"])' <<<"$shown")

PORT=$(free_port)
$BIN/owlet-soc ca init --dir "$OUT/soc" --listen "127.0.0.1:$PORT" >/dev/null
$BIN/owlet-soc ca issue --dir "$OUT/soc" --tenant bench --agent prof --out "$OUT/agent" --soc "127.0.0.1:$PORT" >/dev/null
sed -i "s|/var/lib/owlet|$OUT/agent/state|; s|/run/owlet/owlet.sock|$OUT/agent/owlet.sock|" "$OUT/agent/owlet.toml"
BASE=$(cat "$OUT/agent/owlet.toml")
RUST_LOG=warn $BIN/owlet-soc serve --config "$OUT/soc/soc.toml" 2>>"$OUT/soc.log" &
SOC=$!

# run_agent PROFILE: one agent run under the flood; prints
# "peak_kib start_kib flows_active kernel_drops flows_evicted".
run_agent() {
  rm -rf "$OUT/agent/state"
  { echo "$BASE"; cat <<EOT

[capture]
interfaces = ["lo"]
idle_timeout = "1h"
active_timeout = "1h"
summary_interval = "1h"

[log]
level = "warn"
EOT
  } >"$OUT/agent/owlet.toml"
  sed -i "0,/^\[agent\]/s//[agent]\nhw_profile = \"$1\"/" "$OUT/agent/owlet.toml"
  $BIN/owlet run --config "$OUT/agent/owlet.toml" 2>>"$OUT/agent-$1.log" &
  local agent=$! stats="" start
  capture() {
    $BIN/owlet health --socket "$OUT/agent/owlet.sock" --json 2>/dev/null | python3 -c '
import json, sys
try:
    c = json.load(sys.stdin)["collectors"]["capture"]["detail"]["interfaces"]
except (ValueError, KeyError, TypeError):
    print(""); sys.exit()
print(*(sum(i[k] for i in c) for k in ("flows_active", "kernel_drops", "flows_evicted")))' || true
  }
  for _ in $(seq 100); do stats=$(capture); [ -n "$stats" ] && break; sleep 0.2; done
  [ -n "$stats" ] || { echo "agent ($1) capture did not start:" >&2; cat "$OUT/agent-$1.log" >&2; exit 1; }
  sleep 2
  start=$(kib $agent VmRSS)
  flood
  sleep 3
  stats=$(capture)
  echo "$(kib $agent VmHWM) $start $stats"
  kill $agent; wait $agent 2>/dev/null || true
}

read -r P_PEAK P_START P_FLOWS P_DROPS P_EVICT < <(run_agent small)
read -r D_PEAK D_START D_FLOWS D_DROPS D_EVICT < <(run_agent "")
kill $SOC; wait $SOC 2>/dev/null || true

softflowd -d -D -i lo -m "$TABLE" -t maxlife=1h -t general=1h -t udp=1h \
  -n 127.0.0.1:9 -c "$OUT/softflowd.ctl" >/dev/null 2>&1 &
SF=$!
sleep 2
S_START=$(kib $SF VmRSS)
flood
sleep 3
S_PEAK=$(kib $SF VmHWM)
kill $SF; wait $SF 2>/dev/null || true

python3 - "$FLOWS" "$LOOPS" "$MBPS" "$BUDGET" "$TABLE" \
  "$P_PEAK" "$P_START" "$P_FLOWS" "$P_DROPS" "$P_EVICT" \
  "$D_PEAK" "$D_START" "$D_FLOWS" "$D_DROPS" "$D_EVICT" "$S_PEAK" "$S_START" <<'PY'
import sys
a = [int(x) for x in sys.argv[1:]]
flows, loops, mbps, budget, table = a[:5]
p, d, (s_peak, s_start) = a[5:10], a[10:15], a[15:17]
mib = lambda kib: kib / 1024
print(f"flood: {flows} distinct flows x {loops} loops at {mbps} Mb/s onto lo; small table {table} flows")
print(f"{'':26}{'peak RSS':>10}{'start':>10}{'flows':>10}{'k.drops':>10}{'evicted':>10}")
for name, (peak, start, fl, drops, ev) in [("owlet, hw_profile small", p), ("owlet, no profile", d)]:
    print(f"{name:26}{mib(peak):>8.1f}MB{mib(start):>8.1f}MB{fl:>10}{drops:>10}{ev:>10}")
print(f"{'softflowd -m ' + str(table):26}{mib(s_peak):>8.1f}MB{mib(s_start):>8.1f}MB")
verdict = "inside" if p[0] * 1024 <= budget else "OVER"
print(f"small profile budget (memory_max): {budget / 2**20:.0f} MiB; peak {mib(p[0]):.1f} MB = "
      f"{p[0] * 1024 / budget:.0%} of it: {verdict}")
print(f"ratio peak owlet(small)/softflowd: {p[0] / s_peak:.2f}")
sys.exit(0 if verdict == "inside" else 1)
PY
