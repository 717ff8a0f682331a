#!/usr/bin/env bash
# Portal benchmark (issue 16, Performance): a tenant with EVENTS stored
# events (default 10,000,000) from 50 sensors over 30 days, served by the
# real `owlet-soc portal` process (release build, default [portal] config):
#   - overview p95 (goal <= 150 ms), 100 requests one after another;
#   - each 30-day plot series (goal <= 300 ms), worst of 5;
#   - 100 concurrent viewers on the live stream: delay from the commit of a
#     new event to each viewer's update (goal: all 100, within 2 s).
# No peer from Debian's packages serves this page; the goals are the
# issue's. Prints one JSON line and the portal's CPU and peak RSS.
#
# Usage: bench/portal/run.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/../.."
EVENTS=${1:-10000000}
SENSORS=50
DAYS=30
OUT=$(mktemp -d /var/tmp/owlet-portalbench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$OUT"' EXIT
cargo build --release -q -p owlet-soc
cargo build --release -q -p owlet-soc-portal --example portal_bench
BIN=${CARGO_TARGET_DIR:-target}/release
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

$BIN/owlet-soc ca init --dir "$OUT/soc" --listen "127.0.0.1:$(free_port)" >/dev/null
PORT=$(free_port)
printf '\n[portal]\nlisten = "127.0.0.1:%s"\n' "$PORT" >> "$OUT/soc/soc.toml"
COOKIE=$($BIN/examples/portal_bench fill "$OUT/soc" "$EVENTS" "$SENSORS" "$DAYS")
du -sh "$OUT/soc/tenants/bench" | awk '{print "tenant store: " $1}'

RUST_LOG=warn $BIN/owlet-soc portal --config "$OUT/soc/soc.toml" 2>"$OUT/portal.log" &
PORTAL=$!
for _ in $(seq 100); do
  curl -skf -o /dev/null "https://127.0.0.1:$PORT/login" && break
  sleep 0.1
done
python3 bench/portal/load.py localhost "$PORT" "$OUT/soc/ca.pem" "$COOKIE" \
  $BIN/examples/portal_bench poke "$OUT/soc"
awk -v t="$(getconf CLK_TCK)" '{printf "portal CPU %.1f s\n", ($14+$15)/t}' "/proc/$PORTAL/stat"
grep VmHWM "/proc/$PORTAL/status" | awk '{printf "portal peak RSS %.1f MB\n", $2/1024}'
