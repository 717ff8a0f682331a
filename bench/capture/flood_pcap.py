#!/usr/bin/env python3
"""Writes a pcap of FLOWS distinct UDP flows, one 60-byte frame each:
10.x.y.z:port -> 10.255.0.1:53, no two alike (the capture benchmarks' flow
flood, replayed onto `lo` with tcpreplay).

Usage: flood_pcap.py OUT.pcap FLOWS
"""
import struct
import sys

out, n = open(sys.argv[1], "wb"), int(sys.argv[2])
out.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
for i in range(n):
    src = bytes([10, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff])
    udp = struct.pack("!HHHH", 1024 + (i >> 24), 53, 26, 0) + bytes(18)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xffff, 0, 64, 17, 0, src, bytes([10, 255, 0, 1]))
    frame = eth + ip + udp
    out.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(frame), len(frame)) + frame)
