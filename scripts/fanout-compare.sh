#!/usr/bin/env bash
# Fan-out, two dialtone builds side by side in one sitting: for each rate and run, a freshly started
# server (release, PostgreSQL with synchronous_commit on, TLS) on a fresh database, driven by one
# load generator. Runs alternate between the builds so machine noise hits both alike. The per-user
# message and byte budgets are off: the generator publishes every channel as one user.
#   usage: scripts/fanout-compare.sh LOAD_BIN NAME=DIR [NAME=DIR ...]   (DIR holds a `dialtone` binary)
#   env:   RATES="1000 2000" RUNS=3 MEMBERS=100 CHANNELS=20 DURATION=20 OUT=dir
#          SERVER_CPUS=0 LOAD_CPUS=1: pin the server and the generator (taskset) to those CPUs
#          LO_STEER=rfs: receive flow steering on loopback (root; restored on exit): the kernel's
#            receive work for a socket moves to the CPU of the process reading it, as over a real
#            network, at the price of a cross-CPU hand-off per packet (BENCHMARKS.md, "Batch size,
#            loopback steering and the shared frame")
#          SCENARIO=connections CONNECTIONS=19000 HOLD=30: idle sessions instead (RATES is ignored)
#          SCENARIO=persist SENDERS=50 WINDOW=64: durable commits/s instead (RATES is ignored; each
#            sender on its own channel, a message counted when its post-commit echo arrives)
set -uo pipefail
L="$1"; shift
RATES="${RATES:-1000 2000}"; RUNS="${RUNS:-3}"; MEMBERS="${MEMBERS:-100}"; CHANNELS="${CHANNELS:-20}"
DURATION="${DURATION:-20}"; OUT="${OUT:-$(mktemp -d -t fanout.XXXX)}"; mkdir -p "$OUT"
SCENARIO="${SCENARIO:-fanout}"; CONNECTIONS="${CONNECTIONS:-19000}"; HOLD="${HOLD:-30}"
SENDERS="${SENDERS:-50}"; WINDOW="${WINDOW:-64}"; [ "$SCENARIO" = persist ] && RATES=durable
SPIN=(); [ -n "${SERVER_CPUS:-}" ] && SPIN=(taskset -c "$SERVER_CPUS")
LPIN=(); [ -n "${LOAD_CPUS:-}" ] && LPIN=(taskset -c "$LOAD_CPUS")
# The generator's 50 users would meet the default per-user socket cap (100) at 5,000 sessions,
# and one address would meet the per-IP upgrade bucket: neither is what an idle run measures.
IDLE_ENV=(); [ "$SCENARIO" = connections ] && { RATES=idle
  IDLE_ENV=(DIALTONE_MAX_SOCKETS_PER_USER=0 DIALTONE_LIMIT_WS_UPGRADE_IP=off); }
W=$(mktemp -d -t fanoutw.XXXX); DB=""; PID=""
LO=/sys/class/net/lo/queues/rx-0; STEER_SAVED=""
steer_restore() { [ -n "$STEER_SAVED" ] && { read -r a b c <<<"$STEER_SAVED"
  echo "$a" >"$LO/rps_cpus"; echo "$b" >"$LO/rps_flow_cnt"; echo "$c" >/proc/sys/net/core/rps_sock_flow_entries; }; }
case "${LO_STEER:-off}" in
  off) ;;
  rfs) STEER_SAVED="$(cat "$LO/rps_cpus") $(cat "$LO/rps_flow_cnt") $(cat /proc/sys/net/core/rps_sock_flow_entries)"
       printf '%x' $(( (1 << $(nproc)) - 1 )) >"$LO/rps_cpus" && echo 32768 >"$LO/rps_flow_cnt" \
         && echo 32768 >/proc/sys/net/core/rps_sock_flow_entries || { echo "LO_STEER=rfs needs root"; exit 1; } ;;
  *) echo "LO_STEER is off or rfs"; exit 1 ;;
esac
# Each CPU's split over a run (user, system, softirq and idle, as shares of its ticks), from /proc/stat.
cpu_snap() { grep -E '^cpu[0-9]' /proc/stat; }
cpu_delta() { # before after
  python3 - "$1" "$2" <<'PY'
import sys
def rd(s): return {l.split()[0]: [int(x) for x in l.split()[1:]] for l in s.strip().splitlines()}
a, b = rd(sys.argv[1]), rd(sys.argv[2])
out = []
for cpu in sorted(b):
    d = [y - x for x, y in zip(a[cpu], b[cpu])]
    tot = sum(d[:8]) or 1
    out.append(f"{cpu} user {100*d[0]/tot:.0f}% sys {100*d[2]/tot:.0f}% softirq {100*d[6]/tot:.0f}% idle {100*d[3]/tot:.0f}%")
print("  " + "; ".join(out))
PY
}
stop() { [ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=""; }
         [ -n "$DB" ] && { psql -h 127.0.0.1 -U postgres -XAtqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1; DB=""; }; }
trap 'stop; steer_restore; rm -rf "$W"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$W/key.pem" -out "$W/cert.pem" >/dev/null 2>&1
FP=$(openssl x509 -in "$W/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)
TOK=$(openssl rand -hex 24)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
start() { # DIR
  DB="dt_fan_$(openssl rand -hex 4)"; psql -h 127.0.0.1 -U postgres -XAtqc "CREATE DATABASE $DB" >/dev/null
  rm -rf "$W/data"
  ( cd "$W" && exec env DIALTONE_LISTEN_ADDR=127.0.0.1:$PORT DIALTONE_DB_URL="postgres://postgres@127.0.0.1:5432/$DB" \
    DIALTONE_USERNAME_PEPPER=$(openssl rand -hex 24) DIALTONE_ADMIN_TOKEN=$TOK DIALTONE_CHANNEL_KEY=$(openssl rand -base64 32) \
    DIALTONE_TLS_CERT="$W/cert.pem" DIALTONE_TLS_KEY="$W/key.pem" DIALTONE_DATA_DIR="$W/data" DIALTONE_WS_SEND_RATE=0 \
    DIALTONE_LIMIT_USER_MESSAGES=off DIALTONE_LIMIT_USER_BYTES=off RUST_LOG=warn "${IDLE_ENV[@]}" "${SPIN[@]}" "$1/dialtone" serve ) >>"$OUT/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 120); do curl -sk "https://127.0.0.1:$PORT/health" | grep -q ok && return 0; sleep 0.5; done
  echo "server in $1 did not start"; return 1
}
report() { # json name rate run
  python3 - "$@" <<'PY'
import json,sys
try: j=json.load(open(sys.argv[1]))
except Exception as e: print(f"{sys.argv[2]:6} rate {sys.argv[3]:>5}/s run {sys.argv[4]}: no report ({e})"); sys.exit()
sf=j.get("server_figures") or {}
if j.get("scenario")=="persist" or sys.argv[3]=="durable":
    l=j["latency"]
    m={}
    try:
        for line in open(sys.argv[1][:-len(".json")]+".metrics"):
            k,_,v=line.rpartition(" ")
            if k.startswith(("dialtone_db_batch_size_","dialtone_db_commit_seconds_")) and "{" not in k: m[k]=float(v)
    except Exception: pass
    n=m.get("dialtone_db_batch_size_count") or 0
    batch=f", {n:.0f} commits of {m.get('dialtone_db_batch_size_sum',0)/n:.0f} rows, {1000*m.get('dialtone_db_commit_seconds_sum',0)/n:.2f} ms each" if n else ""
    print(f"{sys.argv[2]:6} persist run {sys.argv[4]}: {j['deliveries_per_sec']:>8.0f} committed msg/s, "
          f"p50 {l['p50_us']/1000:6.1f} ms, p99 {l['p99_us']/1000:6.1f} ms, server cpu {sf.get('cpu_percent',0):3.0f}%{batch}")
    sys.exit()
if sf.get("rss_per_connection_bytes"):
    per=sf["rss_per_connection_bytes"]
    print(f"{sys.argv[2]:6} idle run {sys.argv[4]}: {j['connections']} held, {j['connect_failures']} failed, "
          f"rss {(sf.get('rss_before_bytes') or 0)/2**20:.1f} -> {(sf.get('rss_peak_bytes') or 0)/2**20:.1f} MiB, "
          f"{per/1024:.1f} KiB per connection; end of hold {(sf.get('rss_held_bytes') or 0)/2**20:.1f} MiB, "
          f"{(sf.get('rss_per_connection_held_bytes') or 0)/1024:.1f} KiB per connection")
    sys.exit()
l=j["latency"]; e=j["errors"]
want=j["sent"]*int(j["parameters"]["members"])
print(f"{sys.argv[2]:6} rate {sys.argv[3]:>5}/s run {sys.argv[4]}: {j['deliveries_per_sec']:>8.0f} deliveries/s "
      f"({100*j['delivered']/max(want,1):5.1f}% arrived), p50 {l['p50_us']/1000:6.1f} ms, p99 {l['p99_us']/1000:6.1f} ms, "
      f"max {l['max_us']/1000:6.1f} ms, server cpu {sf.get('cpu_percent',0):3.0f}%, "
      f"errors {e['send_failures']+e['error_events']+e['unexpected_closes']}, slow {e['slow_consumer_closes']}")
PY
}
for r in $RATES; do
  for n in $(seq "$RUNS"); do
    for pair in "$@"; do
      name="${pair%%=*}"; dir="${pair#*=}"
      start "$dir" || continue
      if [ "$SCENARIO" = connections ]; then
        args=(connections --connections "$CONNECTIONS" --hold "$HOLD")
      elif [ "$SCENARIO" = persist ]; then
        args=(persist --senders "$SENDERS" --window "$WINDOW" --duration "$DURATION" --warmup 3)
      else
        args=(fanout --channels "$CHANNELS" --members "$MEMBERS" --rate "$r" --duration "$DURATION" --warmup 5)
      fi
      before=$(cpu_snap)
      "${LPIN[@]}" "$L" --server "https://127.0.0.1:$PORT" --fingerprint "$FP" --admin-token "$TOK" --server-pid "$PID" \
        --quiet --json "$OUT/$name-$r-$n.json" "${args[@]}" >"$OUT/$name-$r-$n.txt" 2>&1
      curl -sk -H "X-Admin-Token: $TOK" "https://127.0.0.1:$PORT/metrics" >"$OUT/$name-$r-$n.metrics"
      after=$(cpu_snap)
      report "$OUT/$name-$r-$n.json" "$name" "$r" "$n"; cpu_delta "$before" "$after"; stop
    done
  done
done
echo "reports in $OUT"
