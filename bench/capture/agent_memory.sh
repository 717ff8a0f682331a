#!/usr/bin/env bash
# Agent memory with FLOWS active flows: the real `owlet` agent (capture on
# loopback, streaming to a real `owlet-soc`) sees FLOWS distinct UDP flows,
# one 60-byte frame each, replayed onto `lo` with tcpreplay. Timeouts are set
# long so every flow stays in the table. Prints the agent's resident memory
# before and after, the active flows its health reports, and the growth per
# flow (goal: <= 256 bytes per flow).
#
# The peer is softflowd, fed the same replay on the same interface in the
# same run (its flow table sized to hold every flow), measured the same way.
#
# Usage: [FLOWS=1000000] bench/capture/agent_memory.sh
# Needs root (AF_PACKET), tcpreplay, softflowd, python3. Uses only loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
FLOWS=${FLOWS:-1000000}
source dev/lib.sh
ensure_packages tcpreplay softflowd
cargo build --release -q -p owlet-agent -p owlet-soc
BIN=$PWD/target/release
OUT=$(mktemp -d /tmp/owlet-agentmem.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$OUT"' EXIT

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One UDP packet per flow: 10.x.y.z:port -> 10.255.0.1:53, no two alike.
python3 - "$OUT/flows.pcap" "$FLOWS" <<'PY'
import struct, sys
out, n = open(sys.argv[1], "wb"), int(sys.argv[2])
out.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
for i in range(n):
    src = bytes([10, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff])
    udp = struct.pack("!HHHH", 1024 + (i >> 24), 53, 26, 0) + bytes(18)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xffff, 0, 64, 17, 0, src, bytes([10, 255, 0, 1]))
    frame = eth + ip + udp
    out.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(frame), len(frame)) + frame)
PY

replay() { tcpreplay -q -i lo --mbps 200 "$OUT/flows.pcap" >/dev/null 2>&1; }

# ---------------------------------------------------------------- owlet
PORT=$(free_port)
$BIN/owlet-soc ca init --dir "$OUT/soc" --listen "127.0.0.1:$PORT" >/dev/null
$BIN/owlet-soc ca issue --dir "$OUT/soc" --tenant bench --agent mem --out "$OUT/agent" --soc "127.0.0.1:$PORT" >/dev/null
sed -i "s|/var/lib/owlet|$OUT/agent/state|; s|/run/owlet/owlet.sock|$OUT/agent/owlet.sock|" "$OUT/agent/owlet.toml"
# Each of the 2 workers holds up to max_flows; the flow hash splits the flows between them.
cat >>"$OUT/agent/owlet.toml" <<EOF

[capture]
interfaces = ["lo"]
workers = 2
idle_timeout = "1h"
active_timeout = "1h"
summary_interval = "1h"
max_flows = $FLOWS

[log]
level = "warn"
EOF
RUST_LOG=warn $BIN/owlet-soc serve --config "$OUT/soc/soc.toml" 2>>"$OUT/soc.log" &
SOC=$!
$BIN/owlet run --config "$OUT/agent/owlet.toml" 2>>"$OUT/agent.log" &
AGENT=$!
health() { $BIN/owlet health --socket "$OUT/agent/owlet.sock" --json 2>/dev/null || true; }
active_flows() {
  health | python3 -c '
import json, sys
try:
    h = json.load(sys.stdin)
except ValueError:
    print(-1); sys.exit()
capture = h.get("collectors", {}).get("capture")
print(sum(i.get("flows_active", 0) for i in capture["detail"]["interfaces"]) if capture else -1)'
}
for _ in $(seq 100); do [ "$(active_flows)" = 0 ] && break; sleep 0.2; done
[ "$(active_flows)" = 0 ] || { echo "agent capture did not start:"; cat "$OUT/agent.log"; exit 1; }
sleep 2
A0=$(rss_kib $AGENT)
replay
sleep 3
A1=$(rss_kib $AGENT)
AF=$(active_flows)
kill $AGENT; wait $AGENT 2>/dev/null || true
kill $SOC; wait $SOC 2>/dev/null || true

# ---------------------------------------------------------------- softflowd
softflowd -d -D -i lo -m $((FLOWS + FLOWS / 4)) -t maxlife=1h -t general=1h -t udp=1h \
  -n 127.0.0.1:9 -c "$OUT/softflowd.ctl" >/dev/null 2>&1 &
SF=$!
sleep 2
S0=$(rss_kib $SF)
replay
sleep 3
S1=$(rss_kib $SF)
SFF=$(softflowctl -c "$OUT/softflowd.ctl" statistics 2>/dev/null | awk '/active flows/ {print $NF; exit}' || true)
kill $SF; wait $SF 2>/dev/null || true

python3 - "$FLOWS" "$A0" "$A1" "$AF" "$S0" "$S1" "${SFF:-0}" <<'PY'
import sys
flows, a0, a1, af, s0, s1, sf = map(int, sys.argv[1:])
def per(b, a, n): return (a - b) * 1024 / n if n > 0 else float("nan")
ao, so = per(a0, a1, af), per(s0, s1, sf or flows)
print(f"{flows} flows replayed onto lo")
print(f"owlet agent: RSS {a0/1024:.1f} -> {a1/1024:.1f} MB, {af} active flows, {ao:.0f} bytes per flow (goal <= 256)")
print(f"softflowd:   RSS {s0/1024:.1f} -> {s1/1024:.1f} MB, {sf or 'n/a'} active flows, {so:.0f} bytes per flow")
print(f"ratio owlet/softflowd bytes per flow: {ao/so:.2f}")
PY
