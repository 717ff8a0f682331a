#!/usr/bin/env bash
# Detection-to-notification latency (issue 15 §5): the time from an alert's
# own event time to the SMTP server's receipt of its mail, the figure MSS
# customers compare providers on ("notified within 15 minutes").
#
# A real SMTP server (Debian's aiosmtpd, STARTTLS required, AUTH; the test
# suite's soc-notify/tests/smtp_server.py) runs on loopback. The example
# soc-notify/examples/latency.rs stores RATE alerts per second for SECS
# seconds into a fresh store (one fsync'd append per alert, as the receiver
# writes them) while owlet-soc-notify's notifier runs against that server,
# one mail per alert (group_by = "subject"), then prints p50 / p90 / p99 /
# max of (SMTP receipt - event time). Goal: p99 <= 5 s.
#
# The latency includes the grouping window on purpose: it is what a customer
# sees. The event time is taken when the alert is stored, so the agent's
# uplink is not included (bench/pipeline measures that).
#
# Usage: bench/notify/run.sh   (env RATE=5 SECS=60 WINDOW=2s POLL=100ms)
set -euo pipefail

RATE=${RATE:-5}
SECS=${SECS:-60}
WINDOW=${WINDOW:-2s}
POLL=${POLL:-100ms}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../dev/lib.sh
source "$ROOT/dev/lib.sh"
ensure_packages python3-aiosmtpd

cd "$ROOT"
cargo build --release -p owlet-soc-notify --example latency >&2
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/latency"

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" cert "$WORK"   # self-signed end-entity certificate for localhost
PASSWORD=bench-mail-password
(umask 077; echo "$PASSWORD" > "$WORK/password")
mkdir -p "$WORK/mail"
mkfifo "$WORK/smtp-stdin"
/usr/bin/python3 -W ignore "$ROOT/soc-notify/tests/smtp_server.py" "$PORT" "$WORK/cert.pem" "$WORK/key.pem" \
  "$WORK/mail" owlet "$PASSWORD" < "$WORK/smtp-stdin" > "$WORK/smtp.out" 2>&1 &
PIDS+=($!)
exec 3>"$WORK/smtp-stdin"   # keeps the server's stdin open until we exit
for _ in $(seq 100); do grep -q ready "$WORK/smtp.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/smtp.out" || { echo "aiosmtpd did not start:" >&2; cat "$WORK/smtp.out" >&2; exit 1; }

echo "== owlet-soc-notify: detection -> mail receipt, aiosmtpd on loopback (STARTTLS + AUTH)"
"$BIN" "$WORK/store" "$PORT" "$WORK/cert.pem" "$WORK/password" "$WORK/mail" "$RATE" "$SECS" "$WINDOW" "$POLL"
