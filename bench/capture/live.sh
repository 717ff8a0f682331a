#!/usr/bin/env bash
# Live capture benchmark: tcpreplay at increasing rates into a veth pair
# between two namespaces this script creates; on the capture side, in turn:
#   ring      owlet's capture (TPACKET_V3 rings, fanout, 2 workers, full engine)
#   pnet      pnet's datalink channel (one recvfrom per packet) + one engine
#   softflowd softflowd -i (libpcap)
# For each rate and tool: packets tcpreplay sent, packets the tool saw, and
# kernel drops (ring: PACKET_STATISTICS; softflowd: its pcap stats). Loss
# between sender and receiver that is not the capture's (the veth backlog)
# shows in /proc/net/softnet_stat's drop column, printed as "backlog";
# cpu_s is the user + system CPU time of the capture process during the
# replay (the kernel's copy into the ring runs in the sender's softirq and
# is not in it).
#
# Usage: [WORKERS=2] [SENDERS=1] bench/capture/live.sh [SECONDS_PER_RATE] [RATES...]
# Nothing is added to the root namespace. Needs root, tcpreplay, softflowd,
# python3, iproute2.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-3}
shift || true
rates=${*:-"100000 250000 500000 750000 1000000 1490000 max"}
cargo build --release -q -p owlet-capture --example live_bench
bin=$PWD/target/release/examples/live_bench
work=$(mktemp -d)
tag=olb$$
gen=${tag}g
cap=${tag}c
cleanup() {
  [ -n "${tool_pid:-}" ] && kill "$tool_pid" 2>/dev/null || true
  ip netns del "$gen" 2>/dev/null || true
  ip netns del "$cap" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$gen"
ip netns add "$cap"
ip link add g0 netns "$gen" type veth peer name c0 netns "$cap"
ip -n "$gen" link set g0 up
ip -n "$cap" link set c0 up
ip -n "$cap" link set lo up

# 64-byte frames on the wire (60 captured + FCS): Ethernet/IPv4/UDP, 4096 flows.
python3 - "$work/small.pcap" <<'PY'
import struct, sys
out = open(sys.argv[1], "wb")
out.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
for i in range(65536):
    f = i % 4096
    src = bytes([10, 1, f >> 8, f & 0xff]); dst = bytes([10, 2, 0, 1])
    udp = struct.pack("!HHHH", 1024 + f, 53, 26, 0) + bytes(18)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xffff, 0, 64, 17, 0, src, dst)
    frame = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + udp
    out.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(frame), len(frame)) + frame)
PY

softnet_drops() { local s=0 a b r; while read -r a b r; do s=$((s + 16#$b)); done </proc/net/softnet_stat; echo "$s"; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

run_tool() { # tool rate -> prints a result line
  local tool=$1 rate=$2 out=$work/out.$tool
  : >"$out"
  case $tool in
    ring|pnet) ip netns exec "$cap" "$bin" "$tool" c0 $((secs + 2)) "${WORKERS:-2}" >"$out" 2>&1 & tool_pid=$! ;;
    softflowd)
      ip netns exec "$cap" softflowd -i c0 -d -m 65536 -B 67108864 -c "$work/sf.ctl" -p "$work/sf.pid" -n 127.0.0.1:9 >"$out" 2>&1 & tool_pid=$! ;;
  esac
  for _ in $(seq 50); do
    case $tool in
      softflowd) [ -S "$work/sf.ctl" ] && break ;;
      *) grep -q ready "$out" 2>/dev/null && break ;;
    esac
    sleep 0.1
  done
  sleep 0.3
  local pps_arg=(--pps="$rate")
  [ "$rate" = max ] && pps_arg=(--topspeed)
  local loops
  if [ "$rate" = max ]; then loops=$((secs * 20)); else loops=$(( (rate * secs + 65535) / 65536 )); fi
  local d0; d0=$(softnet_drops)
  local c0; c0=$(cpu_ticks "$tool_pid")
  local tr
  # SENDERS tcpreplay processes in parallel, each at rate / SENDERS.
  local k ns=${SENDERS:-1}
  if [ "$rate" != max ]; then
    pps_arg=(--pps="$((rate / ns))")
    loops=$(( (rate / ns * secs + 65535) / 65536 ))
  fi
  for k in $(seq "$ns"); do
    ip netns exec "$gen" timeout $((secs * 3 + 10)) tcpreplay -q --preload-pcap -i g0 "${pps_arg[@]}" --loop="$loops" --duration="$secs" "$work/small.pcap" >"$work/tr.$k" 2>&1 &
  done
  wait $(jobs -p | grep -vx "$tool_pid") 2>/dev/null || true
  local sent=0 actual_pps=0 v
  for k in $(seq "$ns"); do
    v=$(sed -n 's/.*Actual: \([0-9]*\) packets.*/\1/p' "$work/tr.$k" | head -1)
    sent=$((sent + ${v:-0}))
    v=$(sed -n 's/.*Rated: [0-9.]* Bps, [0-9.]* Mbps, \([0-9]*\).* pps.*/\1/p' "$work/tr.$k" | head -1)
    actual_pps=$((actual_pps + ${v:-0}))
  done
  # CPU seconds the capture tool used during the replay.
  local c1; c1=$(cpu_ticks "$tool_pid")
  local cpu; cpu=$(awk -v a="$c0" -v b="$c1" -v t="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / t}')
  sleep 0.5
  local seen kdrops
  case $tool in
    softflowd)
      local st; st=$(softflowctl -c "$work/sf.ctl" statistics 2>&1 || true)
      # libpcap's "received" is the kernel's tp_packets (delivered + dropped).
      local recv; recv=$(sed -n 's/^Packets received by libpcap: *\([0-9]*\).*/\1/p' <<<"$st" | head -1)
      kdrops=$(sed -n 's/^Packets dropped by libpcap: *\([0-9]*\).*/\1/p' <<<"$st" | head -1)
      seen=$(( ${recv:-0} - ${kdrops:-0} ))
      echo "$st" >"$work/sf.stats"
      softflowctl -c "$work/sf.ctl" shutdown >/dev/null 2>&1 || kill "$tool_pid" 2>/dev/null || true
      wait "$tool_pid" 2>/dev/null || true
      rm -f "$work/sf.ctl"
      ;;
    *)
      wait "$tool_pid" || true
      seen=$(sed -n 's/.*"packets":\([0-9]*\).*/\1/p' "$out")
      kdrops=$(sed -n 's/.*"kernel_drops":\([0-9]*\).*/\1/p' "$out")
      ;;
  esac
  tool_pid=
  local d1; d1=$(softnet_drops)
  printf '%-10s %9s %10s %10s %10s %9s %8s %7s\n' "$tool" "$rate" "${actual_pps:-?}" "${sent:-?}" "${seen:-?}" "${kdrops:--}" "$((d1 - d0))" "$cpu"
}

printf '%-10s %9s %10s %10s %10s %9s %8s %7s\n' tool target sent_pps sent seen kdrops backlog cpu_s
for rate in $rates; do
  for tool in ring pnet softflowd; do
    run_tool "$tool" "$rate"
  done
done
