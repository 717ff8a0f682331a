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
# event to spool and send). At the same time file integrity monitoring
# watches a tree of FIM_FILES files (1 KiB each, 100 a directory): its
# baseline is built (hashed at the profile's fim.baseline_io_budget) before
# the flood, and FIM_CHANGES of them are rewritten during it. Prints the
# agent's peak resident memory (VmHWM) against the profile's memory_max.
#
# The same run with no profile (the built-in defaults) shows what the profile
# changes, and softflowd (Debian's peer) with the small profile's flow-table
# size (2 workers x max_flows) is measured the same way.
#
# Exit status 1 when the small profile's agent peaks above its budget.
#
# Usage: [FLOWS=1000000] [LOOPS=3] [MBPS=200] [FIM_FILES=10000] [FIM_CHANGES=1000]
#        bench/profile/run.sh
# Needs root (AF_PACKET), tcpreplay, softflowd, python3. Uses only loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
FLOWS=${FLOWS:-1000000}
LOOPS=${LOOPS:-3}
MBPS=${MBPS:-200}
FIM_FILES=${FIM_FILES:-10000}
FIM_CHANGES=${FIM_CHANGES:-1000}
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
python3 - "$OUT/tree" "$FIM_FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 100:05}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:07}.conf"), "w") as f:
        f.write((f"setting_{i} = {i}\n" * 64)[:1024])
PY
# change_files: rewrites FIM_CHANGES files of the tree, spread over it.
change_files() {
  python3 - "$OUT/tree" "$FIM_FILES" "$FIM_CHANGES" <<'PY'
import os, sys
root, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for j in range(k):
    i = j * n // max(k, 1)
    with open(os.path.join(root, f"d{i // 100:05}", f"f{i:07}.conf"), "a") as f:
        f.write(f"changed = {j}\n")
PY
}

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
# "peak_kib start_kib flows_active kernel_drops flows_evicted fim_files fim_changes".
run_agent() {
  rm -rf "$OUT/agent/state"
  { echo "$BASE"; cat <<EOT

[capture]
interfaces = ["lo"]
idle_timeout = "1h"
active_timeout = "1h"
summary_interval = "1h"

[[fim.watch]]
path = "$OUT/tree"

[log]
level = "warn"
EOT
  } >"$OUT/agent/owlet.toml"
  sed -i "0,/^\[agent\]/s//[agent]\nhw_profile = \"$1\"/" "$OUT/agent/owlet.toml"
  $BIN/owlet run --config "$OUT/agent/owlet.toml" 2>>"$OUT/agent-$1.log" &
  local agent=$! stats="" start
  # Prints the counters once capture runs and the FIM baseline is ready.
  capture() {
    $BIN/owlet health --socket "$OUT/agent/owlet.sock" --json 2>/dev/null | python3 -c '
import json, sys
try:
    h = json.load(sys.stdin)["collectors"]
    c, f = h["capture"]["detail"]["interfaces"], h["fim"]["detail"]
except (ValueError, KeyError, TypeError):
    print(""); sys.exit()
if f.get("baseline_ready"):
    print(*(sum(i[k] for i in c) for k in ("flows_active", "kernel_drops", "flows_evicted")), f["files"], f["changes"])
else:
    print("")' || true
  }
  for _ in $(seq 600); do stats=$(capture); [ -n "$stats" ] && break; sleep 0.2; done
  [ -n "$stats" ] || { echo "agent ($1): capture or FIM baseline did not start:" >&2; cat "$OUT/agent-$1.log" >&2; exit 1; }
  sleep 2
  start=$(kib $agent VmRSS)
  flood &
  local flooding=$!
  change_files
  wait $flooding
  sleep 3
  stats=$(capture)
  echo "$(kib $agent VmHWM) $start $stats"
  kill $agent; wait $agent 2>/dev/null || true
  # The next run binds the same control socket: this agent must be gone.
  while kill -0 $agent 2>/dev/null; do sleep 0.2; done
}

read -r P_PEAK P_START P_FLOWS P_DROPS P_EVICT P_FILES P_CHANGES < <(run_agent small)
read -r D_PEAK D_START D_FLOWS D_DROPS D_EVICT D_FILES D_CHANGES < <(run_agent "")
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
  "$P_PEAK" "$P_START" "$P_FLOWS" "$P_DROPS" "$P_EVICT" "$P_FILES" "$P_CHANGES" \
  "$D_PEAK" "$D_START" "$D_FLOWS" "$D_DROPS" "$D_EVICT" "$D_FILES" "$D_CHANGES" \
  "$S_PEAK" "$S_START" "$FIM_FILES" "$FIM_CHANGES" <<'PY'
import sys
a = [int(x) for x in sys.argv[1:]]
flows, loops, mbps, budget, table = a[:5]
p, d, (s_peak, s_start, files, changes) = a[5:12], a[12:19], a[19:23]
mib = lambda kib: kib / 1024
print(f"flood: {flows} distinct flows x {loops} loops at {mbps} Mb/s onto lo; small table {table} flows;")
print(f"FIM: {files} files watched, {changes} rewritten during the flood")
print(f"{'':26}{'peak RSS':>10}{'start':>10}{'flows':>10}{'k.drops':>10}{'evicted':>10}{'fim files':>10}{'changes':>10}")
for name, (peak, start, fl, drops, ev, ff, fc) in [("owlet, hw_profile small", p), ("owlet, no profile", d)]:
    print(f"{name:26}{mib(peak):>7.1f}MiB{mib(start):>7.1f}MiB{fl:>10}{drops:>10}{ev:>10}{ff:>10}{fc:>10}")
print(f"{'softflowd -m ' + str(table):26}{mib(s_peak):>7.1f}MiB{mib(s_start):>7.1f}MiB")
verdict = "inside" if p[0] * 1024 <= budget else "OVER"
print(f"small profile budget (memory_max): {budget / 2**20:.0f} MiB; peak {mib(p[0]):.1f} MiB = "
      f"{p[0] * 1024 / budget:.0%} of it: {verdict}")
print(f"ratio peak owlet(small)/softflowd: {p[0] / s_peak:.2f}")
sys.exit(0 if verdict == "inside" else 1)
PY
