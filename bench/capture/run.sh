#!/usr/bin/env bash
# Offline flow metering on one core, side by side on the same files:
#   owlet     `replay --pcap FILE --summary-only` (capture/examples/replay.rs,
#             the same code as `owlet capture --pcap`): read + decode + flows + summaries
#   softflowd `softflowd -r FILE` (flows, NetFlow export to a closed local port)
#   tshark    `tshark -q -z conv,ip -r FILE`
# Every process is pinned to one CPU (taskset) and measured by its own CPU
# time (user + system, from wait4), which the noisy shared machine disturbs
# less than wall time. Also prints owlet's engine alone (decode + flow update
# from memory, no file reading), its decoder next to pnet_packet's views, and
# resident memory per flow with 1,000,000 flows.
#
# Files (made by capture/examples/gen_pcap.rs, bench-only):
#   small.pcap  64-byte frames (60 captured), TCP, FLOWS flows at random
#   imix.pcap   7:4:1 of 64 / 594 / 1518-byte frames, TCP and UDP
#
# Usage: bench/capture/run.sh   (env SMALL_PACKETS, IMIX_PACKETS, FLOWS, CPU)
set -euo pipefail

SMALL_PACKETS=${SMALL_PACKETS:-2000000}
IMIX_PACKETS=${IMIX_PACKETS:-1000000}
FLOWS=${FLOWS:-100000}
CPU=${CPU:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

# shellcheck source=../../dev/lib.sh
source "$ROOT/dev/lib.sh"
ensure_packages softflowd tshark

cd "$ROOT"
cargo build --release -p owlet-capture --examples >&2
EX="$ROOT/target/release/examples"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$EX/gen_pcap" small "$SMALL_PACKETS" "$FLOWS" "$WORK/small.pcap"
"$EX/gen_pcap" imix "$IMIX_PACKETS" "$((FLOWS / 5))" "$WORK/imix.pcap"

# cpu_seconds [--poke CTL] CMD...: run CMD pinned to $CPU, print its CPU seconds.
# softflowd 1.1.0 (Debian) blocks in accept() on its control socket before it
# reads a file given with -r; --poke connects once to let it go on.
cpu_seconds() {
  python3 - "$CPU" "$@" <<'PY'
import os, subprocess, sys, time
cpu, args = sys.argv[1], sys.argv[2:]
poke = None
if args[0] == "--poke":
    poke, args = args[1], args[2:]
p = subprocess.Popen(["taskset", "-c", cpu] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
done = None
while poke and done is None:
    # It also waits in accept() again after the end of the file: keep poking
    # (one cheap "statistics" at a time) until it exits.
    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
    if pid:
        done = (status, ru)
        break
    if os.path.exists(poke):
        subprocess.run(["softflowctl", "-c", poke, "statistics"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    time.sleep(0.1)
status, ru = done if done else os.wait4(p.pid, 0)[1:]
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit(f"{args[0]} failed: {status}")
print(f"{ru.ru_utime + ru.ru_stime:.3f}")
PY
}

mpps() { python3 -c "print(f'{$1 / $2 / 1e6:.2f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.1f}')"; }

printf "%-10s %10s | %9s %9s %9s | %14s %14s | %12s %12s %12s\n" \
  file packets owlet softflowd tshark owlet/softflowd owlet/tshark engine_alone decoder pnet_decoder
for f in small imix; do
  file="$WORK/$f.pcap"
  n=$([ "$f" = small ] && echo "$SMALL_PACKETS" || echo "$IMIX_PACKETS")
  t_owlet=$(cpu_seconds "$EX/replay" --pcap "$file" --summary-only --max-flows 1000000)
  t_sfd=$(cpu_seconds --poke "$WORK/sfd.ctl" softflowd -r "$file" -d -m 1000000 -n 127.0.0.1:9 \
    -c "$WORK/sfd.ctl" -p "$WORK/sfd.pid")
  t_tshark=$(cpu_seconds tshark -q -z conv,ip -r "$file")
  eng=$(taskset -c "$CPU" "$EX/capture_bench" "$file")
  e_mpps=$(sed 's/.* engine_mpps=\([0-9.]*\).*/\1/' <<<"$eng")
  d_mpps=$(sed 's/.* decode_mpps=\([0-9.]*\).*/\1/' <<<"$eng")
  p_mpps=$(sed 's/.* pnet_decode_mpps=\([0-9.]*\).*/\1/' <<<"$eng")
  printf "%-10s %10s | %9s %9s %9s | %14s %14s | %12s %12s %12s\n" \
    "$f" "$n" "$(mpps "$n" "$t_owlet")" "$(mpps "$n" "$t_sfd")" "$(mpps "$n" "$t_tshark")" \
    "$(ratio "$t_sfd" "$t_owlet")" "$(ratio "$t_tshark" "$t_owlet")" "$e_mpps" "$d_mpps" "$p_mpps"
done
echo "(Mpps = million packets per CPU-second on one core; ratios > 1: owlet is faster)"
echo
taskset -c "$CPU" "$EX/flow_memory" 1000000
