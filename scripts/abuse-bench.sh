#!/usr/bin/env bash
# `dialtone-load abuse`, flood profiles side by side in one sitting: for each run and profile, a
# freshly started server (release, PostgreSQL with synchronous_commit on, TLS, default limits) on a
# fresh database, driven by one load generator. Profiles alternate so machine noise hits all alike.
# Only the per-user message and byte budgets are off: the generator publishes every channel as one
# user. Profiles are NAME=LOGIN/REGISTER/UPGRADE/SOURCES flooders (0/0/0/1: no flood).
#   usage: scripts/abuse-bench.sh TARGET_DIR [NAME=L/G/U/S ...]  (TARGET_DIR holds dialtone and dialtone-load)
#   env:   RATE=500 RUNS=3 MEMBERS=100 CHANNELS=20 DURATION=30 REST_USERS=50 REST_RATE=100 OUT=dir
#          SERVER_ENV="VAR=value ..." (extra server settings)
#          KEY=rsa|ec (the TLS key: RSA 2048, or ECDSA P-256 as certbot issues by default; refused
#          upgrades close their connection, so a flood pays one handshake per attempt)
set -uo pipefail
BIN="$1"; shift
[ $# -gt 0 ] || set -- none=0/0/0/1 flood16=100/50/50/16 flood200=100/50/50/200
RATE="${RATE:-500}"; RUNS="${RUNS:-3}"; MEMBERS="${MEMBERS:-100}"; CHANNELS="${CHANNELS:-20}"
DURATION="${DURATION:-30}"; REST_USERS="${REST_USERS:-50}"; REST_RATE="${REST_RATE:-100}"
OUT="${OUT:-$(mktemp -d -t abuse.XXXX)}"; mkdir -p "$OUT"
W=$(mktemp -d -t abusew.XXXX); DB=""; PID=""
stop() { [ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=""; }
         [ -n "$DB" ] && { psql -h 127.0.0.1 -U postgres -XAtqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1; DB=""; }; }
trap 'stop; rm -rf "$W"' EXIT
case "${KEY:-rsa}" in
  ec) NEWKEY=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
  *) NEWKEY=(-newkey rsa:2048) ;;
esac
openssl req -x509 "${NEWKEY[@]}" -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$W/key.pem" -out "$W/cert.pem" >/dev/null 2>&1
FP=$(openssl x509 -in "$W/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)
TOK=$(openssl rand -hex 24)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
start() {
  DB="dt_abuse_$(openssl rand -hex 4)"; psql -h 127.0.0.1 -U postgres -XAtqc "CREATE DATABASE $DB" >/dev/null
  rm -rf "$W/data"
  # shellcheck disable=SC2086
  ( cd "$W" && exec env DIALTONE_LISTEN_ADDR=127.0.0.1:$PORT DIALTONE_DB_URL="postgres://postgres@127.0.0.1:5432/$DB" \
    DIALTONE_USERNAME_PEPPER=$(openssl rand -hex 24) DIALTONE_ADMIN_TOKEN=$TOK DIALTONE_CHANNEL_KEY=$(openssl rand -base64 32) \
    DIALTONE_TLS_CERT="$W/cert.pem" DIALTONE_TLS_KEY="$W/key.pem" DIALTONE_DATA_DIR="$W/data" \
    DIALTONE_LIMIT_USER_MESSAGES=off DIALTONE_LIMIT_USER_BYTES=off RUST_LOG=warn ${SERVER_ENV:-} "$BIN/dialtone" serve ) >>"$OUT/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 120); do curl -sk "https://127.0.0.1:$PORT/health" | grep -q ok && return 0; sleep 0.5; done
  echo "server did not start"; return 1
}
report() { # json name run
  python3 - "$@" <<'PY'
import json,sys
try: j=json.load(open(sys.argv[1]))
except Exception as e: print(f"{sys.argv[2]:9} run {sys.argv[3]}: no report ({e})"); sys.exit()
l=j["latency"]; sf=j.get("server_figures") or {}; a=j.get("abuse") or {}; r=a.get("rest") or {}
want=j["sent"]*int(j["parameters"]["members"])
ok=100*r.get("succeeded",0)/max(r.get("attempted",0),1)
fl="; ".join(f"{k} {v['attempted_per_sec']:.0f}/s " + ",".join(f"{s}:{n}" for s,n in v["answers"].items())
             for k,v in (a.get("flood") or {}).items())
print(f"{sys.argv[2]:9} run {sys.argv[3]}: fanout {j['deliveries_per_sec']:>6.0f}/s ({100*j['delivered']/max(want,1):5.1f}%) "
      f"p50 {l['p50_us']/1000:6.1f} p99 {l['p99_us']/1000:6.1f} ms | REST {r.get('attempted',0)} calls {ok:6.2f}% ok "
      f"p50 {r.get('latency',{}).get('p50_us',0)/1000:5.1f} p99 {r.get('latency',{}).get('p99_us',0)/1000:6.1f} ms | "
      f"cpu {sf.get('cpu_percent',0):3.0f}% | {fl or 'no flood'}")
PY
}
for n in $(seq "$RUNS"); do
  for p in "$@"; do
    name="${p%%=*}"; IFS=/ read -r fl fg fu fs <<<"${p#*=}"
    start || continue
    "$BIN/dialtone-load" --server "https://127.0.0.1:$PORT" --fingerprint "$FP" --admin-token "$TOK" --server-pid "$PID" \
      --quiet --json "$OUT/$name-$n.json" abuse --channels "$CHANNELS" --members "$MEMBERS" --rate "$RATE" \
      --duration "$DURATION" --warmup 5 --rest-users "$REST_USERS" --rest-rate "$REST_RATE" \
      --flood-login "$fl" --flood-register "$fg" --flood-upgrade "$fu" --flood-sources "$fs" >"$OUT/$name-$n.txt" 2>&1
    report "$OUT/$name-$n.json" "$name" "$n"; stop
  done
done
echo "reports in $OUT"
