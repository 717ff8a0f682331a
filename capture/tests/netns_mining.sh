#!/usr/bin/env bash
# Record crypto-mining evidence and its look-alike between network
# namespaces this script creates. A server namespace holds a bridge with a
# resolver (dnsmasq, 10.215.0.2) that answers the pool name xmr.pool.test
# with a shared address, 10.215.0.9 — a CDN's, which serves everyone — and
# TCP services on 10.215.0.9:3333 and 10.215.0.10:10128. Three clients:
#   A (10.215.0.1) asks the resolver for xmr.pool.test, then connects to
#     10.215.0.9:3333 and sends bytes that are not Stratum;
#   B (10.215.0.3) connects to the same 10.215.0.9:3333 without asking
#     (a neighbour on the CDN);
#   C (10.215.0.4) sends an XMRig Stratum login to 10.215.0.10:10128, an
#     address no name in the traffic points at.
# Before tcpdump starts, the pool name is also resolved inside the server
# namespace (the sensor's own view); that lookup goes over lo, is not in the
# capture, and its answer is written to WORKDIR/sensor_resolved.txt.
#
# Usage: netns_mining.sh OUT.pcap WORKDIR
# Nothing is added to the root namespace; the namespaces and every process
# started here are removed on exit.
set -euo pipefail
out=$1
work=$2
tag=owm$$
srv=${tag}s
pids=()
clients=(a b c)
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for c in "${clients[@]}"; do ip netns del "${tag}$c" 2>/dev/null || true; done
  ip netns del "$srv" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$srv"
ip netns exec "$srv" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
ip -n "$srv" link set lo up
ip -n "$srv" link add br0 type bridge
ip -n "$srv" link set br0 up
ip -n "$srv" addr add 10.215.0.2/24 dev br0
ip -n "$srv" addr add 10.215.0.9/24 dev br0
ip -n "$srv" addr add 10.215.0.10/24 dev br0
declare -A addr=([a]=10.215.0.1 [b]=10.215.0.3 [c]=10.215.0.4)
for c in "${clients[@]}"; do
  ns=${tag}$c
  ip netns add "$ns"
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip link add "${tag}${c}0" netns "$ns" type veth peer name "${tag}${c}1" netns "$srv"
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "${tag}${c}0" up
  ip -n "$ns" addr add "${addr[$c]}/24" dev "${tag}${c}0"
  ip -n "$srv" link set "${tag}${c}1" master br0 up
done

ip netns exec "$srv" dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts \
  --listen-address=10.215.0.2 --bind-interfaces --pid-file= --user=root \
  --address=/xmr.pool.test/10.215.0.9 >"$work/dnsmasq.log" 2>&1 & pids+=($!)
# The services: read what a client says, answer one line, for every client.
ip netns exec "$srv" python3 -c '
import socket, threading
def serve(addr):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr); s.listen(8)
    while True:
        c, _ = s.accept()
        c.recv(4096)
        c.sendall(b"{\"id\":1,\"result\":{\"status\":\"OK\"}}\n")
        c.close()
for a in [("10.215.0.9", 3333), ("10.215.0.10", 10128)]:
    threading.Thread(target=serve, args=(a,), daemon=True).start()
threading.Event().wait()
' >"$work/services.log" 2>&1 & pids+=($!)

for _ in $(seq 100); do
  ip netns exec "$srv" ss -ltn | grep -q '10.215.0.10:10128' \
    && ip netns exec "$srv" ss -lun | grep -q '10.215.0.2:53' && break
  sleep 0.1
done

cat >"$work/dns.py" <<'PY'
import socket, struct, sys
def query(name, server):
    m = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    for l in name.split("."):
        m += bytes([len(l)]) + l.encode()
    m += b"\0" + struct.pack(">HH", 1, 1)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
    u.sendto(m, (server, 53))
    r = u.recv(4096)
    return socket.inet_ntoa(r[-4:])
print(query(sys.argv[1], sys.argv[2]))
PY
# The sensor's own lookup, over the server namespace's lo: not captured.
ip netns exec "$srv" python3 "$work/dns.py" xmr.pool.test 10.215.0.2 >"$work/sensor_resolved.txt"

ip netns exec "$srv" tcpdump -i br0 -s 0 -U -w "$out" 2>"$work/tcpdump.log" & tcpdump_pid=$!
pids+=($tcpdump_pid)
for _ in $(seq 100); do
  grep -q "listening on" "$work/tcpdump.log" 2>/dev/null && break
  sleep 0.1
done

cat >"$work/talk.py" <<'PY'
import socket, sys
host, port, data = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.create_connection((host, port), timeout=3)
s.sendall(data)
s.recv(4096)
s.close()
PY
ip netns exec "${tag}a" python3 "$work/dns.py" xmr.pool.test 10.215.0.2 >/dev/null
ip netns exec "${tag}a" python3 "$work/talk.py" 10.215.0.9 3333 $'\x01\x02 not stratum\n'
ip netns exec "${tag}b" python3 "$work/talk.py" 10.215.0.9 3333 $'\x01\x02 not stratum\n'
ip netns exec "${tag}c" python3 "$work/talk.py" 10.215.0.10 10128 \
  '{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoD","pass":"x","agent":"XMRig/6.21.0 (Linux x86_64)","algo":["rx/0"]}}
'
sleep 1
kill -INT "$tcpdump_pid"
wait "$tcpdump_pid" 2>/dev/null || true
