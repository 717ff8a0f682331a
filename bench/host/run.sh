#!/usr/bin/env bash
# Host metrics: CPU cost of one collection, side by side on the same host
#   owlet          host/examples/collect.rs: owlet-host's Monitor (the code the
#                  agent's host collector runs) with the default [host]: CPU
#                  total and per core, load, memory / swap, disks, disk I/O,
#                  interfaces, process count, top 5 by CPU and by memory, own
#                  CPU / RSS, default thresholds, hour-of-week learning, and
#                  the HostMetrics protobuf encoded
#   node_exporter  prometheus-node-exporter (Debian) answering a curl scrape,
#                  limited to the collectors of the same data: cpu, loadavg,
#                  meminfo, filesystem, diskstats, netdev, netclass
#                  (operstate), stat (boot time), processes (walks /proc
#                  like owlet's process table)
# Each does N collections / scrapes, INTERVAL_MS apart. CPU time is user +
# system of the process itself from /proc/PID/stat (curl's own CPU is not
# counted for the exporter; owlet's start-up is not counted either). Also
# prints node_exporter with its default collectors as a side note.
#
# Usage: bench/host/run.sh   (env N=200, INTERVAL_MS=100)
set -euo pipefail
N=${N:-200}
INTERVAL_MS=${INTERVAL_MS:-100}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

# shellcheck source=../../dev/lib.sh
source "$ROOT/dev/lib.sh"
ensure_packages prometheus-node-exporter curl
# The package starts a system service on :9100; the bench runs its own.
systemctl stop prometheus-node-exporter >/dev/null 2>&1 || true

cd "$ROOT"
cargo build --release -q -p owlet-host --example collect
EX="$ROOT/target/release/examples"
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_seconds() { awk -v t="$(getconf CLK_TCK)" '{print ($14+$15)/t}' "/proc/$1/stat"; }
per() { python3 -c "print(f'{$1 / $2 * 1000:.2f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

# exporter_ms_per_scrape [COLLECTOR FLAGS...]: CPU ms per scrape, and bytes.
exporter_ms_per_scrape() {
  local port pid before after bytes
  port=$(free_port)
  prometheus-node-exporter --web.listen-address="127.0.0.1:$port" "$@" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/metrics" -o /dev/null && break; sleep 0.1; done
  bytes=$(curl -fs "http://127.0.0.1:$port/metrics" | wc -c)
  before=$(cpu_seconds "$pid")
  for _ in $(seq "$N"); do
    curl -fs "http://127.0.0.1:$port/metrics" -o /dev/null
    sleep "$(python3 -c "print($INTERVAL_MS / 1000)")"
  done
  after=$(cpu_seconds "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$(per "$(python3 -c "print($after - $before)")" "$N") $bytes"
}

SAME=(--collector.disable-defaults --collector.cpu --collector.loadavg --collector.meminfo
      --collector.filesystem --collector.diskstats --collector.netdev --collector.netclass
      --collector.stat --collector.processes)

read -r owlet_s owlet_bytes < <("$EX/collect" "$N" "$INTERVAL_MS")
owlet_ms=$(per "$owlet_s" "$N")
read -r same_ms same_bytes < <(exporter_ms_per_scrape "${SAME[@]}")
read -r all_ms all_bytes < <(exporter_ms_per_scrape)

echo "host: $(nproc) cores, $(ls -d /proc/[0-9]* | wc -l) processes; N=$N, ${INTERVAL_MS} ms apart"
printf "%-34s %14s %12s\n" "" "CPU ms / coll." "bytes"
printf "%-34s %14s %12s\n" "owlet (HostMetrics protobuf)" "$owlet_ms" "$owlet_bytes"
printf "%-34s %14s %12s\n" "node_exporter, same data" "$same_ms" "$same_bytes"
printf "%-34s %14s %12s\n" "node_exporter, default collectors" "$all_ms" "$all_bytes"
echo "owlet / node_exporter (same data): $(ratio "$owlet_ms" "$same_ms")"
echo "owlet / node_exporter (default collectors, no process walk): $(ratio "$owlet_ms" "$all_ms")"
