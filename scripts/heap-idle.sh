#!/usr/bin/env bash
# Where an idle session's heap goes: run a server built on the system allocator
# (`cargo build --release --no-default-features --bin dialtone`) under heaptrack, open N idle TLS
# sessions with the load generator, SIGKILL the server during the hold (what is still allocated
# then is what the sessions hold), and print the live heap per session by allocation site.
#   usage: scripts/heap-idle.sh SERVER_BIN LOAD_BIN [N=2000]      env: OUT=file prefix
set -uo pipefail
BIN="$(realpath "$1")"; L="$(realpath "$2")"; N="${3:-2000}"; OUT="${OUT:-$(mktemp -u -t heap.XXXX)}"
command -v heaptrack >/dev/null || { echo "heaptrack is not installed (apt-get install heaptrack)"; exit 1; }
W=$(mktemp -d -t heapw.XXXX); DB="dt_heap_$(openssl rand -hex 4)"; SPID=""
trap '[ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null; psql -h 127.0.0.1 -U postgres -XAtqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1; rm -rf "$W"' EXIT
cd "$W"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout key.pem -out cert.pem >/dev/null 2>&1
FP=$(openssl x509 -in cert.pem -noout -fingerprint -sha256 | cut -d= -f2); TOK=$(openssl rand -hex 24)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
psql -h 127.0.0.1 -U postgres -XAtqc "CREATE DATABASE $DB" >/dev/null
env DIALTONE_LISTEN_ADDR=127.0.0.1:$PORT DIALTONE_DB_URL="postgres://postgres@127.0.0.1:5432/$DB" \
    DIALTONE_USERNAME_PEPPER=$(openssl rand -hex 24) DIALTONE_ADMIN_TOKEN=$TOK DIALTONE_CHANNEL_KEY=$(openssl rand -base64 32) \
    DIALTONE_TLS_CERT=cert.pem DIALTONE_TLS_KEY=key.pem DIALTONE_DATA_DIR=data DIALTONE_WS_SEND_RATE=0 \
    DIALTONE_MAX_SOCKETS_PER_USER=0 DIALTONE_LIMIT_WS_UPGRADE_IP=off RUST_LOG=warn \
    heaptrack -o "$OUT" "$BIN" serve > server.log 2>&1 &
for _ in $(seq 120); do curl -sk "https://127.0.0.1:$PORT/health" | grep -q ok && break; sleep 0.5; done
SPID=$(pgrep -f "^$BIN serve" | head -1)
"$L" --server "https://127.0.0.1:$PORT" --fingerprint "$FP" --admin-token "$TOK" --server-pid "$SPID" --quiet \
  connections --connections "$N" --hold 60 > load.txt 2>&1 &
for _ in $(seq 300); do
  sleep 1; c=$(ss -tn state established "( sport = :$PORT )" | tail -n +2 | wc -l); [ "$c" -ge "$N" ] && break
done
sleep 10; echo "$c sessions established; server $(grep VmRSS /proc/$SPID/status)"
kill -9 "$SPID"; SPID=""; sleep 5
heaptrack_print -f "$OUT.zst" --flamegraph-cost-type leaked -F "$OUT.leaked" >/dev/null 2>&1
python3 - "$OUT.leaked" "$N" <<'PY'
import sys
lines=open(sys.argv[1]).read().splitlines(); n=int(sys.argv[2])
tot=sum(int(l.rpartition(' ')[2]) for l in lines)
print(f"live heap {tot/2**20:.1f} MiB = {tot/n/1024:.2f} KiB per session (process-wide, divided by {n})")
skip=('alloc','allocate','box_new','with_capacity','try_allocate','finish_grow','grow','_RNv','realloc','reserve','do_reserve')
for l in sorted(lines, key=lambda l: -int(l.rpartition(' ')[2]))[:10]:
    s,_,v=l.rpartition(' ')
    fr=[f for f in s.split(';') if not f.startswith(skip)]
    print(f"{int(v)/n/1024:6.2f} KiB  " + ' < '.join(f.split(' (')[0][:40] for f in reversed(fr[-6:])))
PY
echo "heaptrack data: $OUT.zst"
