#!/usr/bin/env bash
# Fan-out on one node against the same load spread over N nodes (issue 11's benchmark), in one
# sitting, alternating. Every run gets fresh servers (release, TLS, PostgreSQL with
# synchronous_commit on) on a fresh database; the cluster runs use a private nats-server. The
# load generator spreads its sockets over every node's URL, so most deliveries cross the bus.
#   usage: scripts/cluster-bench.sh TARGET_DIR      (holds release `dialtone` and `dialtone-load`)
#   env:   NODES=3 RATE=500 RUNS=3 MEMBERS=100 CHANNELS=20 DURATION=20 OUT=dir
#          MODES="1 3"          node counts to alternate (default: 1 and $NODES)
#          SCENARIO=persist     durable commits/s instead (50 senders, window 64, spread over the
#                               nodes); PERSIST_CHANNELS=1 puts them all on one hot channel
#          ONE_URL=1            load only the first node while the others run (no deliveries cross
#                               the bus: separates the cost of running N processes from the hop)
# Server CPU per delivery: the load generator reads every node's CPU time (utime+stime, /proc) over
# the measured window (`--server-pid` with every node's pid), summed, divided by the deliveries.
set -uo pipefail
T="$1"; NODES="${NODES:-3}"; RATE="${RATE:-500}"; RUNS="${RUNS:-3}"; MEMBERS="${MEMBERS:-100}"
CHANNELS="${CHANNELS:-20}"; DURATION="${DURATION:-20}"; OUT="${OUT:-$(mktemp -d -t cluster.XXXX)}"
mkdir -p "$OUT"; W=$(mktemp -d -t clusterw.XXXX); DB=""; PIDS=(); NATS_PID=""
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
stop() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  PIDS=()
  [ -n "$NATS_PID" ] && { kill "$NATS_PID" 2>/dev/null; wait "$NATS_PID" 2>/dev/null; NATS_PID=""; }
  [ -n "$DB" ] && { psql -h 127.0.0.1 -U postgres -XAtqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1; DB=""; }
}
trap 'stop; rm -rf "$W"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$W/key.pem" -out "$W/cert.pem" >/dev/null 2>&1
FP=$(openssl x509 -in "$W/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)
TOK=$(openssl rand -hex 24); PEPPER=$(openssl rand -hex 24); KEY=$(openssl rand -base64 32)
URLS=""
start() { # number of nodes
  local n="$1" cluster=()
  DB="dt_clu_$(openssl rand -hex 4)"; psql -h 127.0.0.1 -U postgres -XAtqc "CREATE DATABASE $DB" >/dev/null
  if [ "$n" -gt 1 ]; then
    local np; np=$(free_port)
    nats-server -a 127.0.0.1 -p "$np" >>"$OUT/nats.log" 2>&1 & NATS_PID=$!
    cluster=(DIALTONE_NATS_URL="nats://127.0.0.1:$np" DIALTONE_CLUSTER_SUBJECT_PREFIX=bench)
    sleep 0.5
  fi
  URLS=""
  for i in $(seq 1 "$n"); do
    local port; port=$(free_port); rm -rf "$W/data$i"
    ( cd "$W" && exec env DIALTONE_LISTEN_ADDR=127.0.0.1:$port DIALTONE_DB_URL="postgres://postgres@127.0.0.1:5432/$DB" \
      DIALTONE_USERNAME_PEPPER=$PEPPER DIALTONE_ADMIN_TOKEN=$TOK DIALTONE_CHANNEL_KEY=$KEY \
      DIALTONE_TLS_CERT="$W/cert.pem" DIALTONE_TLS_KEY="$W/key.pem" DIALTONE_DATA_DIR="$W/data$i" \
      DIALTONE_WS_SEND_RATE=0 DIALTONE_LIMIT_USER_MESSAGES=off DIALTONE_LIMIT_USER_BYTES=off \
      DIALTONE_LIMIT_WS_UPGRADE_IP=off DIALTONE_NODE_ID="node$i" "${cluster[@]}" RUST_LOG=warn \
      "$T/dialtone" serve ) >>"$OUT/server.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 120); do curl -sk "https://127.0.0.1:$port/ready" | grep -q ready && break; sleep 0.5; done
    URLS="${URLS:+$URLS,}https://127.0.0.1:$port"
  done
}
report() { # json name run
  python3 - "$@" <<'PY'
import json,sys
try: j=json.load(open(sys.argv[1]))
except Exception as e: print(f"{sys.argv[2]:8} run {sys.argv[3]}: no report ({e})"); sys.exit()
l=j["latency"]; d=j.get("delivery") or {}; e=j["errors"]
want=j["sent"]*int(j["parameters"].get("members","1")); sf=j.get("server_figures") or {}
cpu=(sf.get("cpu_percent") or 0)/100
ratio=d.get("cross_node_delivery_ratio")
print(f"{sys.argv[2]:8} run {sys.argv[3]}: {j['deliveries_per_sec']:>8.0f} deliveries/s "
      f"({100*j['delivered']/max(want,1):6.2f}% arrived, cross-node {'n/a' if ratio is None else f'{100*ratio:.2f}%'}), "
      f"p50 {l['p50_us']/1000:6.1f} ms, p99 {l['p99_us']/1000:6.1f} ms, dup {d.get('duplicates','?')}, "
      f"order {d.get('order_violations','?')}, server cpu {100*cpu:4.0f}% = {1e6*cpu/max(j['deliveries_per_sec'],1):5.2f} us/delivery, "
      f"errors {e['send_failures']+e['error_events']+e['unexpected_closes']}, slow {e['slow_consumer_closes']}")
PY
}
MODES="${MODES:-1 $NODES}"
if [ "${SCENARIO:-fanout}" = persist ]; then
  LOAD=(persist --senders 50 --window 64 --channels "${PERSIST_CHANNELS:-0}" --duration "$DURATION" --warmup 3)
else
  LOAD=(fanout --channels "$CHANNELS" --members "$MEMBERS" --rate "$RATE" --duration "$DURATION" --warmup 5)
fi
for run in $(seq "$RUNS"); do
  for n in $MODES; do
    name="${n}node"; start "$n" || { stop; continue; }
    if [ "${ONE_URL:-0}" = 1 ] && [ "$n" -gt 1 ]; then URLS="${URLS%%,*}"; name="${n}node-1url"; fi
    pids=$(IFS=,; echo "${PIDS[*]}")
    "$T/dialtone-load" --server "$URLS" --fingerprint "$FP" --admin-token "$TOK" --server-pid "$pids" --quiet \
      --json "$OUT/$name-$run.json" "${LOAD[@]}" >"$OUT/$name-$run.txt" 2>&1
    report "$OUT/$name-$run.json" "$name" "$run"
    if [ "$n" -gt 1 ]; then # what crossed the bus, summed over the nodes, for the whole server run
      for u in ${URLS//,/ }; do curl -sk -H "X-Admin-Token: $TOK" "$u/metrics"; done | python3 -c '
import sys,collections
t=collections.Counter()
for l in sys.stdin:
    if l.startswith("dialtone_cluster_") and not l.startswith("#"):
        k,v=l.rsplit(" ",1); t[k]+=float(v)
n=len("dialtone_cluster_")
print("         bus: "+", ".join("%s=%d" % (k[n:], v) for k,v in sorted(t.items()) if k.endswith("_total")))'
    fi
    stop
  done
done
echo "reports in $OUT"
