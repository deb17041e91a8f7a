#!/usr/bin/env bash
# What the per-channel seq counter row costs: durable commits/s with every sender on its own
# channel against every sender on one hot channel (each commit then updates the same counter row),
# alternating in one sitting, a fresh release server (TLS, PostgreSQL, synchronous_commit on) and a
# fresh database per run.
#   usage: scripts/persist-channels.sh TARGET_DIR     (holds release `dialtone` and `dialtone-load`)
#   env:   RUNS=3 SENDERS=50 WINDOW=64 DURATION=20 CHANNELS="0 1" OUT=dir   (0 = one per sender)
set -uo pipefail
T="$1"; RUNS="${RUNS:-3}"; SENDERS="${SENDERS:-50}"; WINDOW="${WINDOW:-64}"; DURATION="${DURATION:-20}"
CHANNELS="${CHANNELS:-0 1}"; OUT="${OUT:-$(mktemp -d -t persist.XXXX)}"; mkdir -p "$OUT"
W=$(mktemp -d -t persistw.XXXX); DB=""; PID=""
stop() { [ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=""; }
         [ -n "$DB" ] && { psql -h 127.0.0.1 -U postgres -XAtqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1; DB=""; }; }
trap 'stop; rm -rf "$W"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$W/key.pem" -out "$W/cert.pem" >/dev/null 2>&1
FP=$(openssl x509 -in "$W/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)
TOK=$(openssl rand -hex 24)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
start() {
  DB="dt_per_$(openssl rand -hex 4)"; psql -h 127.0.0.1 -U postgres -XAtqc "CREATE DATABASE $DB" >/dev/null
  rm -rf "$W/data"
  ( cd "$W" && exec env DIALTONE_LISTEN_ADDR=127.0.0.1:$PORT DIALTONE_DB_URL="postgres://postgres@127.0.0.1:5432/$DB" \
    DIALTONE_USERNAME_PEPPER=$(openssl rand -hex 24) DIALTONE_ADMIN_TOKEN=$TOK DIALTONE_CHANNEL_KEY=$(openssl rand -base64 32) \
    DIALTONE_TLS_CERT="$W/cert.pem" DIALTONE_TLS_KEY="$W/key.pem" DIALTONE_DATA_DIR="$W/data" DIALTONE_WS_SEND_RATE=0 \
    DIALTONE_LIMIT_USER_MESSAGES=off DIALTONE_LIMIT_USER_BYTES=off RUST_LOG=warn "$T/dialtone" serve ) >>"$OUT/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 120); do curl -sk "https://127.0.0.1:$PORT/ready" | grep -q ready && return 0; sleep 0.5; done
  echo "server did not start"; return 1
}
for run in $(seq "$RUNS"); do
  for c in $CHANNELS; do
    start || { stop; continue; }
    "$T/dialtone-load" --server "https://127.0.0.1:$PORT" --fingerprint "$FP" --admin-token "$TOK" --server-pid "$PID" \
      --quiet --json "$OUT/c$c-$run.json" persist --senders "$SENDERS" --window "$WINDOW" --channels "$c" \
      --duration "$DURATION" --warmup 3 >"$OUT/c$c-$run.txt" 2>&1
    python3 - "$OUT/c$c-$run.json" "$c" "$run" <<'PY'
import json,sys
try: j=json.load(open(sys.argv[1]))
except Exception as e: print(f"channels {sys.argv[2]} run {sys.argv[3]}: no report ({e})"); sys.exit()
l=j["latency"]; sf=j.get("server_figures") or {}
name="one per sender" if sys.argv[2]=="0" else sys.argv[2]
print(f"channels {name:>14} run {sys.argv[3]}: {j['deliveries_per_sec']:>8.0f} committed msg/s, "
      f"p50 {l['p50_us']/1000:6.1f} ms, p99 {l['p99_us']/1000:6.1f} ms, server cpu {sf.get('cpu_percent',0):3.0f}%")
PY
    stop
  done
done
echo "reports in $OUT"
