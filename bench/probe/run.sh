#!/usr/bin/env bash
# Uptime checks side by side, in one run, against the same local targets:
#   owlet-probe (run_check, 256 at a time)      -- probe/examples/bench.rs
#   prometheus-blackbox-exporter (/probe calls, 32 keep-alive clients)
#   monitoring-plugins check_tcp / check_http (one process per check)
# Prints CPU seconds per 10,000 checks of each type and the peer/owlet ratio,
# and checks per second (the check code at full speed).
#
# Then the real agent: `owlet run` (release build) with AGENT_CHECKS configured
# checks (a third each TCP, HTTP, ICMP, 10 s interval) streaming over mTLS to a
# real `owlet-soc` on loopback (set up with `owlet-soc ca init` / `ca issue`),
# for AGENT_SECS; its peak RSS (VmHWM) and CPU, beside blackbox_exporter given
# the same steady load (the same targets, AGENT_CHECKS probes per 10 s, round
# robin over its tcp_connect / http_2xx / icmp modules, as Prometheus would
# scrape them) over the same time. The agent's config is the one `ca issue`
# writes (the defaults: host health on, max_concurrency 256, log level info)
# plus the checks; its HTTP checks GET a page from `python3 -m http.server`
# (AGENT_HTTP=nginx: from the nginx above instead), its TCP checks connect to
# nginx.
#
# Needs root (ICMP); installs the peers (nginx-light prometheus-blackbox-exporter
# monitoring-plugins-basic) when missing.
# Usage: bench/probe/run.sh   (env N, PLUGIN_N, AGENT_CHECKS, AGENT_SECS, AGENT_HTTP, ONLY_AGENT=1)
set -euo pipefail

N=${N:-10000}              # checks per type for owlet and blackbox_exporter
PLUGIN_N=${PLUGIN_N:-2000} # check_tcp/check_http fork per check: run fewer, scale to 10k
AGENT_CHECKS=${AGENT_CHECKS:-10000}
AGENT_SECS=${AGENT_SECS:-60}
AGENT_HTTP=${AGENT_HTTP:-python} # python (python3 -m http.server) or nginx
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PLUGINS=/usr/lib/nagios/plugins

[ "$(id -u)" = 0 ] || { echo "run as root (ICMP raw sockets)" >&2; exit 1; }
# shellcheck source=../../dev/lib.sh
source "$ROOT/dev/lib.sh"
ensure_packages nginx-light prometheus-blackbox-exporter monitoring-plugins-basic

cd "$ROOT"
cargo build --release -p owlet-probe --example bench >&2
cargo build --release -p owlet-agent -p owlet-soc >&2
BENCH="$ROOT/target/release/examples/bench"
BIN="$ROOT/target/release"

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { "$BENCH" port; }
cpu_of() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }
rss_of() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# ---- targets: nginx serves HTTP and is the TCP listener too
WEB=$(free_port)
mkdir -p "$WORK/www" "$WORK/tmp"
echo '<html><body>owlet bench</body></html>' > "$WORK/www/index.html"
cat > "$WORK/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
error_log $WORK/nginx-error.log; pid $WORK/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off; keepalive_requests 1000000;
  client_body_temp_path $WORK/tmp/b; proxy_temp_path $WORK/tmp/p; fastcgi_temp_path $WORK/tmp/f;
  uwsgi_temp_path $WORK/tmp/u; scgi_temp_path $WORK/tmp/s;
  server { listen 127.0.0.1:$WEB backlog=4096; root $WORK/www; }
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)

# ---- blackbox_exporter
BB=$(free_port)
cat > "$WORK/blackbox.yml" <<CONF
modules:
  tcp_connect: { prober: tcp, timeout: 5s }
  http_2xx: { prober: http, timeout: 5s, http: { preferred_ip_protocol: ip4 } }
  icmp: { prober: icmp, timeout: 5s, icmp: { preferred_ip_protocol: ip4 } }
CONF
prometheus-blackbox-exporter --config.file="$WORK/blackbox.yml" --web.listen-address="127.0.0.1:$BB" \
    --log.level=error >"$WORK/bb.log" 2>&1 & BBPID=$!; PIDS+=($BBPID)
sleep 1.5

TCP_T="127.0.0.1:$WEB"
URL="http://127.0.0.1:$WEB/index.html"
declare -A OWLET_CPU OWLET_RATE BB_CPU BB_RATE PL_CPU PL_RATE

owlet_run() { # type target
    local line; line=$("$BENCH" rate "$1" "$2" "$N" 256)
    echo "$line" >&2
    OWLET_CPU[$1]=$(sed -E 's/.*cpu_s_per_10k=([0-9.]+).*/\1/' <<<"$line")
    OWLET_RATE[$1]=$(sed -E 's/.*checks_per_s=([0-9.]+).*/\1/' <<<"$line")
}
bb_run() { # type module target
    "$BENCH" drive "http://127.0.0.1:$BB/probe?module=$2&target=$3" 200 8 >/dev/null # warm-up
    local c0 c1 t0 t1 line
    c0=$(cpu_of "$BBPID"); t0=$(date +%s.%N)
    line=$("$BENCH" drive "http://127.0.0.1:$BB/probe?module=$2&target=$3" "$N" 32)
    t1=$(date +%s.%N); c1=$(cpu_of "$BBPID")
    echo "blackbox $1: $line" >&2
    BB_CPU[$1]=$(awk -v a="$c0" -v b="$c1" -v n="$N" 'BEGIN{printf "%.2f", (b-a)/n*10000}')
    BB_RATE[$1]=$(awk -v a="$t0" -v b="$t1" -v n="$N" 'BEGIN{printf "%.0f", n/(b-a)}')
}
plugin_run() { # type command...
    local t="$1"; shift
    local out t0 t1
    t0=$(date +%s.%N)
    out=$( { TIMEFORMAT='%U %S'; time (seq "$PLUGIN_N" | xargs -P 4 -I{} "$@" >/dev/null 2>&1); } 2>&1 )
    t1=$(date +%s.%N)
    PL_CPU[$t]=$(awk -v u="${out% *}" -v s="${out#* }" -v n="$PLUGIN_N" 'BEGIN{printf "%.2f", (u+s)/n*10000}')
    PL_RATE[$t]=$(awk -v a="$t0" -v b="$t1" -v n="$PLUGIN_N" 'BEGIN{printf "%.0f", n/(b-a)}')
    echo "plugin $t: $PLUGIN_N runs, cpu ${out}" >&2
}

agent_run() {
    # ---- owlet-soc with its own CA, and an agent certificate + config for it
    local port soc agent c0 s0 bb0 t0 results url="$URL"
    if [ "$AGENT_HTTP" = python ]; then
        local py; py=$(free_port)
        (cd "$WORK/www" && exec python3 -m http.server --bind 127.0.0.1 "$py" >"$WORK/http.log" 2>&1) & PIDS+=($!)
        url="http://127.0.0.1:$py/index.html"
        sleep 1
    fi
    port=$(free_port)
    "$BIN/owlet-soc" ca init --dir "$WORK/soc" --listen "127.0.0.1:$port" >/dev/null
    "$BIN/owlet-soc" ca issue --dir "$WORK/soc" --tenant bench --agent probe1 --out "$WORK/agent" \
        --soc "127.0.0.1:$port" >/dev/null
    sed -i "s|/var/lib/owlet|$WORK/agent/state|; s|/run/owlet/owlet.sock|$WORK/agent/owlet.sock|" \
        "$WORK/agent/owlet.toml"
    grep -q '^\[probe\]' "$WORK/agent/owlet.toml" && { echo "owlet.toml from ca issue already has [probe]" >&2; exit 1; }
    {
        printf '\n[probe]\n'
        awk -v n="$AGENT_CHECKS" -v tcp="$TCP_T" -v url="$url" 'BEGIN {
            for (i = 0; i < n; i++) {
                if (i % 3 == 0)      { t = "tcp";  g = tcp }
                else if (i % 3 == 1) { t = "http"; g = url }
                else                 { t = "icmp"; g = "127.0.0.1" }
                printf "\n[[probe.check]]\nid = \"%s-%d\"\ntype = \"%s\"\ntarget = \"%s\"\ninterval = \"10s\"\ntimeout = \"5s\"\n", t, i, t, g
                if (t == "icmp") printf "count = 1\n"
            }
        }'
    } >>"$WORK/agent/owlet.toml"
    RUST_LOG=warn "$BIN/owlet-soc" serve --config "$WORK/soc/soc.toml" 2>>"$WORK/soc.log" & soc=$!; PIDS+=($soc)
    sleep 0.5
    "$BIN/owlet" run --config "$WORK/agent/owlet.toml" 2>>"$WORK/agent.log" & agent=$!; PIDS+=($agent)
    # ---- blackbox_exporter under the same steady load, at the same time
    local per_s bb_n
    per_s=$(awk -v n="$AGENT_CHECKS" 'BEGIN{printf "%.1f", n/10}')
    bb_n=$(awk -v r="$per_s" -v s="$AGENT_SECS" 'BEGIN{printf "%d", r*s}')
    c0=$(cpu_of "$agent"); s0=$(cpu_of "$soc"); bb0=$(cpu_of "$BBPID"); t0=$(date +%s.%N)
    local bbu="http://127.0.0.1:$BB/probe?module"
    "$BENCH" drive "$bbu=tcp_connect&target=$TCP_T,$bbu=http_2xx&target=$url,$bbu=icmp&target=127.0.0.1" \
        "$bb_n" 256 "$per_s" >"$WORK/bb-steady.txt" &
    local driver=$!
    sleep "$AGENT_SECS"
    AG_CPU=$(awk -v a="$c0" -v b="$(cpu_of "$agent")" 'BEGIN{printf "%.2f", b-a}')
    AG_RSS=$(rss_of "$agent"); SOC_RSS=$(rss_of "$soc")
    SOC_CPU=$(awk -v a="$s0" -v b="$(cpu_of "$soc")" 'BEGIN{printf "%.2f", b-a}')
    wait "$driver" || true
    BBS_CPU=$(awk -v a="$bb0" -v b="$(cpu_of "$BBPID")" 'BEGIN{printf "%.2f", b-a}')
    BBS_RSS=$(rss_of "$BBPID")
    BBS_LINE=$(cat "$WORK/bb-steady.txt")
    grep -E '^(VmHWM|VmRSS|RssAnon|RssFile)' "/proc/$agent/status" | tr -s ' ' | paste -sd' ' >&2
    kill "$agent"; wait "$agent" 2>/dev/null || true
    results=$(python3 - "$WORK/soc/soc.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
n = c.execute("SELECT COUNT(*) FROM events WHERE kind='check_result'").fetchone()[0]
alerts = c.execute("SELECT COUNT(*) FROM events WHERE kind='alert' AND seq IS NOT NULL").fetchone()[0]
print(n, alerts)
PY
) || results="? ?"
    AG_RESULTS=${results% *}; AG_ALERTS=${results#* }
    kill "$soc"; wait "$soc" 2>/dev/null || true
}

if [ "${ONLY_AGENT:-0}" = 1 ]; then
    agent_run
    echo "owlet run, $AGENT_CHECKS checks (1/3 each TCP, HTTP ($AGENT_HTTP), ICMP; 10 s interval), ${AGENT_SECS}s, streaming to owlet-soc:"
    echo "  agent peak RSS ${AG_RSS} MB, CPU ${AG_CPU} s; SOC stored ${AG_RESULTS} results and ${AG_ALERTS} alerts; owlet-soc peak RSS ${SOC_RSS} MB, CPU ${SOC_CPU} s"
    echo "  blackbox_exporter, same targets and rate: peak RSS ${BBS_RSS} MB, CPU ${BBS_CPU} s ($BBS_LINE)"
    exit 0
fi

owlet_run tcp "$TCP_T";      bb_run tcp tcp_connect "$TCP_T"; plugin_run tcp "$PLUGINS/check_tcp" -H 127.0.0.1 -p "$WEB"
owlet_run http "$URL";       bb_run http http_2xx "$URL";     plugin_run http "$PLUGINS/check_http" -I 127.0.0.1 -p "$WEB" -u /index.html
owlet_run icmp 127.0.0.1;    bb_run icmp icmp 127.0.0.1
agent_run

ratio() { awk -v p="$1" -v o="$2" 'BEGIN{ if (o>0) printf "%.1fx", p/o; else print "n/a" }'; }
echo
echo "| type | owlet CPU s/10k | owlet checks/s | blackbox CPU s/10k | ratio | blackbox checks/s | plugin CPU s/10k | ratio | plugin checks/s |"
echo "|---|---|---|---|---|---|---|---|---|"
for t in tcp http icmp; do
    if [ "$t" = icmp ]; then pc="n/a"; pr="n/a"; prate="n/a"; else pc=${PL_CPU[$t]}; pr=$(ratio "${PL_CPU[$t]}" "${OWLET_CPU[$t]}"); prate=${PL_RATE[$t]}; fi
    echo "| $t | ${OWLET_CPU[$t]} | ${OWLET_RATE[$t]} | ${BB_CPU[$t]} | $(ratio "${BB_CPU[$t]}" "${OWLET_CPU[$t]}") | ${BB_RATE[$t]} | $pc | $pr | $prate |"
done
echo
echo "owlet run, $AGENT_CHECKS checks (1/3 each TCP, HTTP ($AGENT_HTTP), ICMP; 10 s interval), ${AGENT_SECS}s, streaming to owlet-soc:"
echo "  agent peak RSS ${AG_RSS} MB, CPU ${AG_CPU} s; SOC stored ${AG_RESULTS} results and ${AG_ALERTS} alerts; owlet-soc peak RSS ${SOC_RSS} MB, CPU ${SOC_CPU} s"
echo "  blackbox_exporter, same targets and rate: peak RSS ${BBS_RSS} MB (after the throughput runs above), CPU ${BBS_CPU} s ($BBS_LINE)"
echo "(ICMP: 1 echo per check, so checks/s = echoes/s. Plugins ran $PLUGIN_N times, scaled to 10k.)"
