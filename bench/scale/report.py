"""Prints bench/scale/run.sh's figures and the sizing for 10,000 sensors.

Arguments (positional, from run.sh): OUT AGENTS EVENTS LAT_AGENTS LAT_RATE RAW_BATCH
RAW_SEQ RAW_ATOMIC STREAM_BYTES PG_BYTES PG_RSS SQLITE_BYTES NATS_VERSION
PG_VERSION LOAD OTHERS NATS_RAW_CPU ROLLUP ("events seconds reports_cpu postgres_cpu")
CATCHUP ("events seconds writer_cpu nats_before pg_before nats_after pg_after").
The per-mode results are OUT/{bus,embedded}.result
and OUT/{bus,embedded}.latency.
"""

import math
import sys

(out, agents, events, lat_agents, lat_rate, raw_batch, raw_seq, raw_atomic, stream_bytes,
 pg_bytes, pg_rss, sqlite_bytes, nats_version, pg_version, load, others, nats_raw_cpu,
 rollup, catchup) = sys.argv[1:20]
agents, events, lat_rate, raw_batch = int(agents), int(events), int(lat_rate), int(raw_batch)
lat_agents = int(lat_agents)
ROLES = ["receivers", "writer", "nats-servers", "postgres", "agents"]


def result(mode):
    r = eval(open(f"{out}/{mode}.result").read().replace("\n", " "))  # run.sh wrote it
    r["cpu"] = [float(a) - float(b) for a, b in zip(r["cpu_after"], r["cpu_before"])]
    r["lat_cpu"] = [float(a) - float(b) for a, b in zip(r["lat_cpu_after"], r["lat_cpu_before"])]
    lat = sorted(float(x) for x in open(f"{out}/{mode}.latency") if x.strip())
    r["lat_n"] = len(lat)
    pick = lambda q: lat[min(len(lat) - 1, int(math.ceil(q * len(lat))) - 1)] if lat else float("nan")
    r["p50"], r["p99"], r["max"] = pick(0.50), pick(0.99), (lat[-1] if lat else float("nan"))
    r["rate"] = r["events"] / r["seconds"]
    r["steady"] = 0.8 * r["events"] / r["steady_seconds"]
    return r


bus, emb = result("bus"), result("embedded")


def published_rate():
    """The receivers' steady publish rate: 80 % of the phase's events / (time
    the stream held 90 % of them - time it held 10 %)."""
    try:
        rows = [tuple(map(float, l.split())) for l in open(f"{out}/bus.jsz") if l.strip()]
    except OSError:
        rows = []
    if not rows:
        return float("nan"), float("nan")
    base = rows[0][1]
    total = bus["events"]
    t10 = next((t for t, m in rows if m - base >= total * 0.1), None)
    t90 = next((t for t, m in rows if m - base >= total * 0.9), None)
    t100 = next((t for t, m in rows if m - base >= total), rows[-1][0])
    if t10 is None or t90 is None or t90 <= t10:
        return float("nan"), float("nan")
    return 0.8 * total / (t90 - t10), t100


published, published_all_at = published_rate()
raw, raw_retries = {}, {}
for line in (raw_seq, raw_atomic):
    mode, n, secs, rate, retries = line.split()
    raw[mode.lower()] = float(rate)
    raw_retries[mode.lower()] = int(retries)
s_bytes, s_msgs = (int(x) for x in stream_bytes.split())
p_bytes, p_rows = (int(x) for x in pg_bytes.split())

print(f"SOC scale-out benchmark (issue 17): {agents} agents (owlet-loadgen) x {events:,} events, tenant 'bench'")
print("  agents: owlet-loadgen with [host] enabled = false (50 sensors on one box would each scan the same /proc)")
print(f"  {nats_version}, 3 nodes, R3 file streams; {pg_version}, fsync on; all on loopback")
print()
print(f"{'':44} {'bus':>14} {'embedded':>14} {'bus/emb':>8}")
print(f"{'':44} {'2 recv+writer':>14} {'SQLite':>14}")
print(f"{'events/s stored, end to end':44} {bus['rate']:>14,.0f} {emb['rate']:>14,.0f} {bus['rate'] / emb['rate']:>8.2f}")
print(f"{'events/s on the stream (receivers), steady':44} {published:>14,.0f}")
print(f"{'events/s stored, steady (10 % -> 90 %)':44} {bus['steady']:>14,.0f} {emb['steady']:>14,.0f} {bus['steady'] / emb['steady']:>8.2f}")
lat_title = f"latency p50 / p99 ms at {lat_agents * lat_rate:,} ev/s offered"
print(f"{lat_title:44} {bus['p50']:>6.0f} / {bus['p99']:<5.0f} {emb['p50']:>6.0f} / {emb['p99']:<5.0f}")
print(f"{'  (rows sampled; max ms)':44} {bus['lat_n']:>7,} ;{bus['max']:>5.0f} {emb['lat_n']:>7,} ;{emb['max']:>5.0f}")
print()
print(f"CPU seconds per role, throughput phase ({agents * events:,} events)   [us per event]")
for i, role in enumerate(ROLES):
    b, e = bus["cpu"][i], emb["cpu"][i]
    e_txt = f"{e:>7.2f} [{e * 1e6 / emb['events']:>5.0f}]" if role not in ("writer", "nats-servers", "postgres") else f"{'-':>15}"
    print(f"  {role:42} {b:>7.2f} [{b * 1e6 / bus['events']:>5.0f}] {e_txt}")
tb = sum(bus["cpu"][:4])
te = emb["cpu"][0]
print(f"  {'SOC side total (all but agents)':42} {tb:>7.2f} [{tb * 1e6 / bus['events']:>5.0f}] {te:>7.2f} [{te * 1e6 / emb['events']:>5.0f}]")
print(f"CPU seconds per role, latency phase ({bus['lat_seconds']:.0f} s at {lat_agents * lat_rate:,} ev/s, {lat_agents} of {agents} agents sending)   [us per event]")
lat_events_b = bus["lat_offered"] * bus["lat_seconds"]
lat_events_e = emb["lat_offered"] * emb["lat_seconds"]
for i, role in enumerate(ROLES):
    b, e = bus["lat_cpu"][i], emb["lat_cpu"][i]
    e_txt = f"{e:>7.2f} [{e * 1e6 / lat_events_e:>5.0f}]" if role not in ("writer", "nats-servers", "postgres") else f"{'-':>15}"
    print(f"  {role:42} {b:>7.2f} [{b * 1e6 / lat_events_b:>5.0f}] {e_txt}")
print()
print(f"raw JetStream publish, {agents} publishers x {events:,} events of the same size and headers, batches of {raw_batch}:")
print(f"  {'sequential (each ack awaited before the next publish)':60} {raw['sequential']:>10,.0f} ev/s  ({raw_retries['sequential']} retried)")
print(f"  {'atomic batches (one ack per <= 1000 events; 2.12+)':60} {raw['atomic']:>10,.0f} ev/s  ({raw_retries['atomic']} retried)")
for what, rate in (("stored, end to end", bus["rate"]), ("stored, steady", bus["steady"]),
                   ("published by the receivers, steady", published)):
    print(f"{'events/s ' + what:46} / raw publish/s:  vs sequential {rate / raw['sequential']:.2f}   "
          f"vs atomic {rate / raw['atomic']:.2f}   goal >= 0.50")
nats_raw_us = float(nats_raw_cpu) * 1e6 / (agents * events)
nats_bus_us = bus["cpu"][ROLES.index("nats-servers")] * 1e6 / bus["events"]
print(f"JetStream servers' CPU per event: raw atomic publish {nats_raw_us:.1f} us, stored path (throughput phase) {nats_bus_us:.1f} us")
print(f"  the cluster is what every event and every role shares; on its own cores (the 3-node deployment) it caps")
print(f"  the stored rate at {nats_raw_us / nats_bus_us:.2f} of raw atomic publishing (goal >= 0.50); here all roles share 2 cores")
print()
r_events, r_seconds, r_cpu, r_pg = (float(x) for x in rollup.split())
print(f"rollup consumer (owlet-soc reports, no report due), {r_events:,.0f} stored events from position 0:")
print(f"  {r_events / r_seconds:,.0f} events/s; CPU {r_cpu * 1e6 / r_events:.1f} us/event in the process, "
      f"{r_pg * 1e6 / r_events:.1f} us/event in PostgreSQL")
c_events, c_seconds, c_writer, c_nats0, c_pg0, c_nats1, c_pg1 = (float(x) for x in catchup.split())
c_us = lambda cpu: cpu * 1e6 / c_events
print(f"writer catch-up (a fresh writer on the atomic raw run's stream, {c_events:,.0f} events waiting, alone):")
print(f"  {c_events / c_seconds:,.0f} events/s stored; CPU per event: writer {c_us(c_writer):.1f} us, "
      f"nats-servers {c_us(c_nats1 - c_nats0):.1f} us (delivery), postgres {c_us(c_pg1 - c_pg0):.1f} us")
print()

# ------------------------------------------------------------------ sizing
sensors = 10_000
heartbeat, host, checks, check_interval = 30, 30, 4, 60
per_sensor = 1 / heartbeat + 1 / host + checks / check_interval
steady = sensors * per_sensor
catchup = 6 * steady  # an hour's backlog drained in 10 minutes, on top of live traffic
bus_lat_us = [c * 1e6 / lat_events_b for c in bus["lat_cpu"]]
bus_thr_us = [c * 1e6 / bus["events"] for c in bus["cpu"]]
bytes_msg = s_bytes / max(s_msgs, 1)
bytes_row = p_bytes / max(p_rows, 1)
day = steady * 86400
print(f"Sizing for {sensors:,} sensors")
print(f"  assumption: per sensor 1 heartbeat / {heartbeat} s ([status] interval) + 1 host sample / {host} s ([host] interval)")
print(f"  + {checks} uptime checks at the default {check_interval} s = {per_sensor:.3f} events/s; no packet capture (flows vary by")
print(f"  site: add them to the rate). Steady {steady:,.0f} ev/s; catch-up after a 1 h SOC outage in 10 min: {catchup:,.0f} ev/s.")
print("  cores = steady x CPU/event of the paced phase (small batches, like real sensors), and catch-up x CPU/event of")
print("  the throughput phase, whichever is larger, x 2 for 50 % utilisation:")
for i, role in enumerate(ROLES[:4]):
    need = max(steady * bus_lat_us[i], catchup * bus_thr_us[i]) / 1e6 * 2
    print(f"    {role:16} {need:>5.1f} cores  ({bus_lat_us[i]:.0f} us/event paced, {bus_thr_us[i]:.0f} us/event at throughput)")
rss = bus["rss"]
print(f"  memory measured (throughput phase): receivers {rss['receivers']} MB for {agents} agents (both), writer {rss['writer']} MB,")
print(f"    nats-servers {rss['nats']} MB (3), postgres {pg_rss} MB PSS. Per receiver plan 1 GB per 2,500 connected sensors (assumed:")
print(f"    TLS + HTTP/2 state and a batch in flight each; not measured at 10,000 connections); nats 4 GB and postgres 8 GB per node.")
print(f"  disk: JetStream {bytes_msg:.0f} B/event per replica x 3 replicas; PostgreSQL {bytes_row:.0f} B/event (table + indexes);")
print(f"    SQLite (embedded) {int(sqlite_bytes) / max(emb['events'], 1):.0f} B/event. Per day at steady rate: JetStream "
      f"{day * bytes_msg * 3 / 1e9:.1f} GB (3 replicas), PostgreSQL {day * bytes_row / 1e9:.1f} GB.")
print(f"    JetStream keeps the default buffer (buffer_max_age, 7 days): {day * bytes_msg * 3 * 7 / 1e12:.2f} TB;"
      f" PostgreSQL the default tenant retention (400 days): {day * bytes_row * 400 / 1e12:.2f} TB.")
print(f"  stream limits: one stream per tenant, R3, max_age = 7 days (or the tenant's retention if shorter), max_bytes = the tenant's;")
print(f"    duplicate_window 120 s; subjects per stream = its sensors (10,000 in one tenant is fine for JetStream).")
print()
print(f"machine: 2 cores; load average at the end {load}; other processes above 5 % CPU then: {others}")
