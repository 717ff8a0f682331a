#!/usr/bin/env python3
"""The portal benchmark's client (bench/portal/run.sh): stdlib only.

  load.py HOST PORT CA COOKIE ROOT POKE_CMD...

1. overview: GET /t/bench 100 times, one after another -> p50/p95 ms;
2. 30-day plots: each series of the plots page over range=30d, 5 times -> max ms;
3. live: 100 viewers hold /t/bench/live open (server-sent events); POKE_CMD
   appends one event and prints when it was committed (µs); each viewer's
   delay from that commit to its first `data:` line -> p50/p95/max ms, and
   how many of the 100 got it.
"""
import http.client
import json
import ssl
import statistics
import subprocess
import sys
import threading
import time

host, port, ca, cookie = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
poke = sys.argv[5:]
ctx = ssl.create_default_context(cafile=ca)
HEADERS = {"Cookie": f"__Host-owlet_session={cookie}"}


def conn():
    return http.client.HTTPSConnection(host, port, context=ctx, timeout=60)


def get(c, path):
    t = time.perf_counter()
    c.request("GET", path, headers=HEADERS)
    r = c.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t) * 1000
    if r.status != 200:
        sys.exit(f"GET {path}: {r.status} {body[:200]!r}")
    return ms, body


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


c = conn()
get(c, "/t/bench")  # warm: open the tenant's reader once
overview = [get(c, "/t/bench")[0] for _ in range(100)]
plots = {}
for name in ["availability", "latency", "cpu", "memory", "disk", "capture", "alerts", "tops"]:
    plots[name] = max(get(c, f"/t/bench/series/{name}?range=30d")[0] for _ in range(5))
plot_page = get(c, "/t/bench/plots?range=30d")[0]

VIEWERS = 100
ready = threading.Barrier(VIEWERS + 1)
got = {}


def viewer(i):
    s = conn()
    s.request("GET", "/t/bench/live", headers={**HEADERS, "Accept": "text/event-stream"})
    r = s.getresponse()
    if r.status != 200:
        ready.wait()
        return
    ready.wait()
    while True:
        line = r.fp.readline()
        if not line:
            return
        if line.startswith(b"data:"):
            got[i] = time.time_ns() // 1000
            s.close()
            return


threads = [threading.Thread(target=viewer, args=(i,), daemon=True) for i in range(VIEWERS)]
for t in threads:
    t.start()
ready.wait()
time.sleep(1.0)  # every stream past its first poll
committed = int(subprocess.run(poke, check=True, capture_output=True, text=True).stdout.strip())
for t in threads:
    t.join(timeout=10)
delays = [(at - committed) / 1000 for at in got.values()]
print(json.dumps({
    "overview_p50_ms": statistics.median(overview),
    "overview_p95_ms": pct(overview, 95),
    "plot_30d_max_ms": plots,
    "plots_page_30d_ms": plot_page,
    "live_viewers": VIEWERS,
    "live_received": len(delays),
    "live_p50_ms": statistics.median(delays) if delays else None,
    "live_p95_ms": pct(delays, 95) if delays else None,
    "live_max_ms": max(delays) if delays else None,
}))
