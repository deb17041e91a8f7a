#!/usr/bin/env bash
# Reconnect storm (issue 9: "a reconnect storm of 10 k sockets must not stall the hub"): a small
# fan-out probe runs for 40 s; 8 s in, 10,000 sockets connect at once, hold for 6 s, all drop at
# once, and 10,000 connect again. The probe's latency during the storms is compared with a run
# without them, in the same sitting, on fresh release servers (TLS, PostgreSQL) and databases.
#   usage: scripts/storm-bench.sh TARGET_DIR    (holds release `dialtone` and `dialtone-load`)
#   env:   RUNS=3 SOCKETS=10000 OUT=dir
set -uo pipefail
T="$1"; RUNS="${RUNS:-3}"; SOCKETS="${SOCKETS:-10000}"; OUT="${OUT:-$(mktemp -d -t storm.XXXX)}"
mkdir -p "$OUT"; W=$(mktemp -d -t stormw.XXXX); DB=""; PID=""
stop() { [ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=""; }
         [ -n "$DB" ] && { psql -h 127.0.0.1 -U postgres -XAtqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1; DB=""; }; }
trap 'stop; rm -rf "$W"' EXIT
ulimit -n "$(ulimit -Hn)"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$W/key.pem" -out "$W/cert.pem" >/dev/null 2>&1
FP=$(openssl x509 -in "$W/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)
TOK=$(openssl rand -hex 24)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
URL="https://127.0.0.1:$PORT"
start() {
  DB="dt_storm_$(openssl rand -hex 4)"; psql -h 127.0.0.1 -U postgres -XAtqc "CREATE DATABASE $DB" >/dev/null
  rm -rf "$W/data"
  ( cd "$W" && exec env DIALTONE_LISTEN_ADDR=127.0.0.1:$PORT DIALTONE_DB_URL="postgres://postgres@127.0.0.1:5432/$DB" \
    DIALTONE_USERNAME_PEPPER=$(openssl rand -hex 24) DIALTONE_ADMIN_TOKEN=$TOK DIALTONE_CHANNEL_KEY=$(openssl rand -base64 32) \
    DIALTONE_TLS_CERT="$W/cert.pem" DIALTONE_TLS_KEY="$W/key.pem" DIALTONE_DATA_DIR="$W/data" DIALTONE_WS_SEND_RATE=0 \
    DIALTONE_LIMIT_USER_MESSAGES=off DIALTONE_LIMIT_USER_BYTES=off DIALTONE_LIMIT_WS_UPGRADE_IP=off \
    DIALTONE_MAX_SOCKETS_PER_USER=0 RUST_LOG=warn "$T/dialtone" serve ) >>"$OUT/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 120); do curl -sk "$URL/ready" | grep -q ready && return 0; sleep 0.5; done
  echo "server did not start"; return 1
}
L() { "$T/dialtone-load" --server "$URL" --fingerprint "$FP" --admin-token "$TOK" --quiet "$@"; }
for run in $(seq "$RUNS"); do
  for mode in quiet storm; do
    start || { stop; continue; }
    L --json "$OUT/probe-$mode-$run.json" fanout --channels 2 --members 50 --rate 20 --duration 40 \
      --warmup 2 >"$OUT/probe-$mode-$run.txt" 2>&1 &
    probe=$!
    if [ "$mode" = storm ]; then
      sleep 8
      L --users 5 --json "$OUT/storm1-$run.json" connections --connections "$SOCKETS" --hold 6 >"$OUT/storm1-$run.txt" 2>&1
      L --users 5 --json "$OUT/storm2-$run.json" connections --connections "$SOCKETS" --hold 6 >"$OUT/storm2-$run.txt" 2>&1
    fi
    wait "$probe"
    hub=$(curl -sk -H "X-Admin-Token: $TOK" "$URL/metrics" | awk '/^dialtone_mailbox_depth_high_water\{actor="hub"\}/{print $2}')
    python3 - "$OUT/probe-$mode-$run.json" "$mode" "$run" "$hub" "$OUT/storm1-$run.json" "$OUT/storm2-$run.json" <<'PY'
import json,sys
def load(p):
    try: return json.load(open(p))
    except Exception: return None
j=load(sys.argv[1])
if j is None: print(f"{sys.argv[2]:5} run {sys.argv[3]}: no probe report"); sys.exit()
l=j["latency"]; want=j["sent"]*int(j["parameters"]["members"])
extra=""
if sys.argv[2]=="storm":
    for name,p in (("storm 1",sys.argv[5]),("storm 2",sys.argv[6])):
        s=load(p)
        if s: extra+=f"; {name}: {s['connections']} connected ({s['connect_failures']} failed) at {s['connect_rate_per_sec']:.0f}/s"
print(f"{sys.argv[2]:5} run {sys.argv[3]}: probe {100*j['delivered']/max(want,1):6.2f}% delivered, p50 {l['p50_us']/1000:6.1f} ms, "
      f"p99 {l['p99_us']/1000:7.1f} ms, max {l['max_us']/1000:7.1f} ms, hub mailbox high-water {sys.argv[4]}{extra}")
PY
    stop
  done
done
echo "reports in $OUT"
