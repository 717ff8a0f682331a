"""Reads tenant bench's query store for bench/scale/run.sh.

  poll.py position MODE PG_CONN SQLITE_DB
      prints the store's log position (PostgreSQL: max(id); SQLite:
      meta.last_id; 0 before the first row).
  poll.py wait MODE PG_CONN SQLITE_DB BASE TOTAL TIMEOUT_S
      waits until the position reaches BASE + TOTAL; prints the wall times
      (s) it saw BASE + 10 %, + 90 % and + 100 % of TOTAL.
  poll.py latency MODE PG_CONN SQLITE_DB OUT
      until SIGINT: every 50 ms reads the check results that became visible
      since the last read (id > last id seen: one writer per tenant commits
      in id order) and writes, per row, now - time_us in ms to OUT (one a
      line). `now` is taken when the read returned: an upper bound of the
      row's agent->queryable latency by at most the period plus the read.

  poll.py jsz URL STREAM OUT
      until SIGINT: every 200 ms writes "time messages" of STREAM from
      nats-server's monitoring endpoint URL (/jsz) to OUT: how fast the
      receivers publish, apart from how fast the writer stores.

MODE is "bus" (PostgreSQL, schema "tenant_bench") or "embedded" (SQLite
tenant log). Cheap reads only (an index on id), so the poller's own cost in
the server stays small.
"""

import signal
import sqlite3
import sys
import time


def connect(mode, pg_conn, db):
    if mode == "bus":
        import psycopg2

        c = psycopg2.connect(pg_conn)
        c.autocommit = True
        cur = c.cursor()

        def query(sql, *args):
            cur.execute(sql.replace("?", "%s").replace("events", '"tenant_bench".events'), args)
            return cur.fetchall()

        return query, "SELECT COALESCE(max(id), 0) FROM events"
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)

    def query(sql, *args):
        return c.execute(sql, args).fetchall()

    return query, "SELECT value FROM meta WHERE key = 'last_id'"


def retrying_connect(mode, pg_conn, db):
    while True:
        try:
            query, position = connect(mode, pg_conn, db)
            query(position)
            return query, position
        except Exception:
            time.sleep(0.1)


def position_of(query, position):
    rows = query(position)
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def wait(mode, pg_conn, db, base, total, timeout):
    deadline = time.time() + timeout
    query, position = retrying_connect(mode, pg_conn, db)
    marks = [base + total // 10, base + total * 9 // 10, base + total]
    seen = []
    while len(seen) < len(marks):
        at = position_of(query, position)
        now = time.time()
        while len(seen) < len(marks) and at >= marks[len(seen)]:
            seen.append(now)
        if now > deadline:
            print(f"only {at - base} of {total} stored after {timeout} s", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(" ".join(f"{t:.3f}" for t in seen))
    return 0


def latency(mode, pg_conn, db, out):
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    query, position = retrying_connect(mode, pg_conn, db)
    if mode == "bus":
        # Its PostgreSQL backend: run.sh leaves its CPU out of the SOC's.
        with open(f"{out}.pgpid", "w") as f:
            f.write(f"{query('SELECT pg_backend_pid()')[0][0]}\n")
    last = int(query(position)[0][0] or 0)
    with open(out, "w") as f:
        while not stop:
            # Read as the SOC's own readers read (id > cursor, in id order,
            # bounded), the kind told here: with a filter on kind, the plan
            # for a fresh day partition (no statistics yet) scans all of it.
            rows = query(
                "SELECT id, time_us, kind FROM events WHERE id > ? ORDER BY id LIMIT 5000",
                last,
            )
            now_us = time.time() * 1e6
            for id_, time_us, kind in rows:
                if kind == "check_result":
                    f.write(f"{(now_us - time_us) / 1000:.1f}\n")
                last = max(last, id_)
            if len(rows) < 5000:
                time.sleep(0.05)
    return 0


def jsz(url, stream, out):
    import json
    import urllib.request

    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    with open(out, "w") as f:
        while not stop:
            try:
                j = json.load(urllib.request.urlopen(f"{url}/jsz?streams=true", timeout=2))
                for a in j.get("account_details", []):
                    for s in a.get("stream_detail", []):
                        if s["name"] == stream:
                            f.write(f"{time.time():.3f} {s['state']['messages']}\n")
                            f.flush()
            except Exception:
                pass
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "jsz":
        sys.exit(jsz(*sys.argv[2:5]))
    cmd, mode, pg_conn, db = sys.argv[1:5]
    if cmd == "position":
        try:
            print(position_of(*connect(mode, pg_conn, db)))
        except Exception:
            print(0)
        sys.exit(0)
    if cmd == "wait":
        sys.exit(wait(mode, pg_conn, db, int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])))
    sys.exit(latency(mode, pg_conn, db, sys.argv[5]))
