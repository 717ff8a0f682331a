#!/usr/bin/env bash
# Record real traffic between two network namespaces this script creates:
# HTTP (curl -> python3 http.server), DNS over UDP and TCP (python3 client ->
# dnsmasq), pings (one fragmented), TLS with SNI (openssl s_client ->
# s_server) over a small MTU so the ClientHello spans two TCP segments, a
# fragmented UDP datagram, and a SYN scan (nmap -sS). tcpdump records it in
# the client namespace.
#
# Usage: netns_traffic.sh OUT.pcap WORKDIR
# Nothing is added to the root namespace; both namespaces and every process
# started here are removed on exit.
set -euo pipefail
out=$1
work=$2
tag=owc$$
cli=${tag}c
srv=${tag}s
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
  ip netns del "$srv" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$cli"
ip netns add "$srv"
ip link add "${tag}a" netns "$cli" type veth peer name "${tag}b" netns "$srv"
# MTU 280 (MSS 240): the ~340-byte TLS ClientHello needs two segments.
ip -n "$cli" link set "${tag}a" mtu 280 up
ip -n "$srv" link set "${tag}b" mtu 280 up
# Segmentation offload would hand tcpdump 64 KiB "super-segments": switch it
# off so the capture holds what a mirror port would see on the wire.
ip netns exec "$cli" ethtool -K "${tag}a" tso off gso off gro off tx off >/dev/null 2>&1
ip netns exec "$srv" ethtool -K "${tag}b" tso off gso off gro off tx off >/dev/null 2>&1
ip -n "$cli" link set lo up
ip -n "$srv" link set lo up
ip -n "$cli" addr add 10.213.0.1/24 dev "${tag}a"
ip -n "$srv" addr add 10.213.0.2/24 dev "${tag}b"
# No IPv6 duplicate address detection / router solicitations in the capture.
ip netns exec "$cli" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
ip netns exec "$srv" sysctl -qw net.ipv6.conf.all.disable_ipv6=1

mkdir -p "$work/www"
echo "hello from owlet's test server" > "$work/www/index.html"
openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=tls.example.test" -days 1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

ip netns exec "$srv" python3 -m http.server 8080 --bind 10.213.0.2 --directory "$work/www" \
  >"$work/http.log" 2>&1 & pids+=($!)
ip netns exec "$srv" dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts \
  --listen-address=10.213.0.2 --bind-interfaces --pid-file= --user=root \
  --address=/www.example.test/10.213.0.2 --address=/pool.minexmr.example/10.213.0.2 \
  >"$work/dnsmasq.log" 2>&1 & pids+=($!)
ip netns exec "$srv" openssl s_server -accept 8443 -cert "$work/cert.pem" -key "$work/key.pem" \
  -quiet -naccept 1 >"$work/s_server.log" 2>&1 & pids+=($!)
# A Stratum "pool": accepts one connection and reads what the miner says.
ip netns exec "$srv" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.213.0.2", 3333)); s.listen(1)
c, _ = s.accept()
c.recv(4096)
c.sendall(b"{\"id\":1,\"result\":[[],\"08000002\",4],\"error\":null}\n")
c.recv(4096)
c.close()
' >"$work/stratum.log" 2>&1 & pids+=($!)

ip netns exec "$cli" tcpdump -i "${tag}a" -s 0 -U -w "$out" 2>"$work/tcpdump.log" & tcpdump_pid=$!
pids+=($tcpdump_pid)
for _ in $(seq 100); do
  grep -q "listening on" "$work/tcpdump.log" 2>/dev/null && break
  sleep 0.1
done
for _ in $(seq 100); do
  ip netns exec "$srv" ss -ltn | grep -q ':8443' && ip netns exec "$srv" ss -ltn | grep -q ':8080' && break
  sleep 0.1
done

in_cli() { ip netns exec "$cli" "$@"; }
in_cli ping -c 3 -i 0.2 10.213.0.2 >/dev/null
in_cli ping -c 1 -s 1000 10.213.0.2 >/dev/null
in_cli python3 - <<'PY'
import socket, struct
def q(name, qid, qtype=1):
    m = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for l in name.split("."):
        m += bytes([len(l)]) + l.encode()
    return m + b"\0" + struct.pack(">HH", qtype, 1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
for i, n in enumerate(["www.example.test", "pool.minexmr.example", "www.example.test"]):
    u.sendto(q(n, 0x100 + i), ("10.213.0.2", 53)); u.recv(4096)
t = socket.create_connection(("10.213.0.2", 53), timeout=3)
m = q("tcp.example.test", 0x222, 28)
t.sendall(struct.pack(">H", len(m)) + m); t.recv(4096); t.close()
# One UDP datagram larger than the MTU: three IP fragments.
f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
f.sendto(b"x" * 900, ("10.213.0.2", 9999))
PY
in_cli curl -s -o /dev/null "http://10.213.0.2:8080/index.html?token=secret" -H "Host: www.example.test"
in_cli openssl s_client -connect 10.213.0.2:8443 -servername tls.example.test -alpn h2,http/1.1 \
  </dev/null >/dev/null 2>&1 || true
in_cli python3 - <<'PY'
import socket, time
s = socket.create_connection(("10.213.0.2", 3333), timeout=3)
s.sendall(b'{"id": 1, "method": "mining.subscribe", "params": ["xmrig/6.21"]}\n')
s.recv(4096)
s.sendall(b'{"id": 2, "method": "mining.authorize", "params": ["wallet.rig1", "x"]}\n')
time.sleep(0.2)
s.close()
PY
in_cli nmap -sS -n -Pn -p 1-200 --max-retries 0 -T4 10.213.0.2 >/dev/null
sleep 1
kill -INT "$tcpdump_pid"
wait "$tcpdump_pid" 2>/dev/null || true
