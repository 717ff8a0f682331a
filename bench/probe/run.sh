#!/usr/bin/env bash
# Uptime checks side by side, in one run, against the same local targets:
#   owlet-probe (run_check, 256 at a time)      -- probe/examples/bench.rs
#   prometheus-blackbox-exporter (/probe calls, 32 keep-alive clients)
#   monitoring-plugins check_tcp / check_http (one process per check)
# Prints CPU seconds per 10,000 checks of each type and the peer/owlet ratio,
# checks per second, and owlet's peak RSS with 10,000 configured checks.
#
# Needs root (ICMP); installs the peers (nginx-light prometheus-blackbox-exporter
# monitoring-plugins-basic) when missing. Usage: bench/probe/run.sh   (env N, PLUGIN_N, RSS_SECS)
set -euo pipefail

N=${N:-10000}              # checks per type for owlet and blackbox_exporter
PLUGIN_N=${PLUGIN_N:-2000} # check_tcp/check_http fork per check: run fewer, scale to 10k
RSS_SECS=${RSS_SECS:-25}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PLUGINS=/usr/lib/nagios/plugins

[ "$(id -u)" = 0 ] || { echo "run as root (ICMP raw sockets)" >&2; exit 1; }
# shellcheck source=../../dev/lib.sh
source "$ROOT/dev/lib.sh"
ensure_packages nginx-light prometheus-blackbox-exporter monitoring-plugins-basic

cd "$ROOT"
cargo build --release -p owlet-probe --example bench >&2
BENCH="$ROOT/target/release/examples/bench"

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

owlet_run tcp "$TCP_T";      bb_run tcp tcp_connect "$TCP_T"; plugin_run tcp "$PLUGINS/check_tcp" -H 127.0.0.1 -p "$WEB"
owlet_run http "$URL";       bb_run http http_2xx "$URL";     plugin_run http "$PLUGINS/check_http" -I 127.0.0.1 -p "$WEB" -u /index.html
owlet_run icmp 127.0.0.1;    bb_run icmp icmp 127.0.0.1
BB_RSS=$(rss_of "$BBPID")
RSS_LINE=$("$BENCH" rss 10000 "$RSS_SECS" "$TCP_T" "$URL")
echo "$RSS_LINE" >&2

ratio() { awk -v p="$1" -v o="$2" 'BEGIN{ if (o>0) printf "%.1fx", p/o; else print "n/a" }'; }
echo
echo "| type | owlet CPU s/10k | owlet checks/s | blackbox CPU s/10k | ratio | blackbox checks/s | plugin CPU s/10k | ratio | plugin checks/s |"
echo "|---|---|---|---|---|---|---|---|---|"
for t in tcp http icmp; do
    if [ "$t" = icmp ]; then pc="n/a"; pr="n/a"; prate="n/a"; else pc=${PL_CPU[$t]}; pr=$(ratio "${PL_CPU[$t]}" "${OWLET_CPU[$t]}"); prate=${PL_RATE[$t]}; fi
    echo "| $t | ${OWLET_CPU[$t]} | ${OWLET_RATE[$t]} | ${BB_CPU[$t]} | $(ratio "${BB_CPU[$t]}" "${OWLET_CPU[$t]}") | ${BB_RATE[$t]} | $pc | $pr | $prate |"
done
echo
echo "owlet with 10,000 configured checks (1/3 each TCP, HTTP, ICMP; 10s interval; ${RSS_SECS}s): $RSS_LINE"
echo "blackbox_exporter peak RSS after the runs above: ${BB_RSS} MB"
echo "(ICMP: 1 echo per check, so checks/s = echoes/s. Plugins ran $PLUGIN_N times, scaled to 10k.)"
