#!/usr/bin/env bash
# The memory of idle keep-alive client connections, and whether it goes back to the system when they close; records
# the figures in docs/BENCHMARKS.md (between `<!-- idle:begin -->` and `<!-- idle:end -->`):
#
#  1. heap per idle connection of baton's proxy, counted by `proxy_allocs` (crates/benchmarks) with idle connections
#     parked (the default: after `proxy::PARK_IDLE`) and never parked (`--no-park`), over plain HTTP and over TLS;
#  2. VmRSS of `baton serve` and nginx (one worker each, the same hello backend) before, with IDLE_LIST idle keep-alive
#     client connections (bench/proxy/conns.py: one `GET /` each, then silence; read 4 s after the last answer, past
#     the park delay), and 3 s after the client closed them; over plain HTTP, then over TLS (a fresh process with an
#     HTTPS listener: a test CA's ECDSA P-256 certificate made with the openssl CLI, the client verifying it against
#     the CA); baton once more with jemalloc preloaded when Debian's libjemalloc2 is there (the same binary, another
#     allocator; plain HTTP).
#
# Usage: bench/idle.sh   (IDLE_LIST="10000 50000" QUIET_LOAD=0.60 QUIET_WAIT=120; BATON_BIN=DIR with BENCH_COMMIT=TEXT
#                         measures the binaries in DIR instead of building them)
# Needs root to install nginx from Debian's packages when it is missing (its service is never started). Measurements
# run under `flock /tmp/baton-bench.lock`. Raw outputs are kept in target/bench/idle/.
set -euo pipefail
BENCH=idle
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

IDLE_LIST=${IDLE_LIST:-10000 50000}
QUIET_LOAD=${QUIET_LOAD:-0.60}
QUIET_WAIT=${QUIET_WAIT:-120}
LIFETIME=1800
HERE=bench/proxy
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2

if ! bench_locked; then
    bench_tools nginx python3 openssl curl
    bench_binaries -p baton -p hello -p benchmarks -- baton hello proxy_allocs
    bench_lock "$@"
fi

bench_start
MAX_IDLE=$(printf '%s\n' $IDLE_LIST | sort -n | tail -1)
ulimit -n $((MAX_IDLE + 10000)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > MAX_IDLE + 1000)) || die "open-file limit $(ulimit -n) is too low for $MAX_IDLE connections"
wait_quiet
note_if_busy

# --- 1. heap per idle connection ------------------------------------------------------------------------------------

ALLOC_ROWS=""
for variant in "HTTP|parked|" "HTTP|never parked|--no-park" "TLS|parked|--tls" "TLS|never parked|--tls --no-park"; do
    IFS='|' read -r proto parked flags <<<"$variant"
    file="$OUT/allocs-${proto}-${parked// /-}.json"
    log "heap per idle connection: $proto, $parked"
    # shellcheck disable=SC2086 # flags are words
    "$BIN/proxy_allocs" --json --requests 2000 --warmup 200 --idle 2000 --settle 3s $flags >"$file" 2>"$file.stderr" ||
        die "proxy_allocs failed: $file.stderr"
    ALLOC_ROWS+=$(python3 - "$file" "$proto" "$parked" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {r['idle_bytes_per_conn_at_once']:,.0f} B | "
      f"{r['idle_bytes_per_conn_settled']:,.0f} B | {r['bytes_held_after_close']:,} B |")
EOF
    )$'\n'
done

# --- 2. RSS ---------------------------------------------------------------------------------------------------------

CERTS=$PWD/$OUT/certs
bench_test_cert "$CERTS"

start hello "$BIN/hello" --listen 127.0.0.1:0 --app-version bench
HELLO_PID=$PID
BACKEND=$(listening hello "$HELLO_PID")
mkdir -p "$TMP/nginx"

declare -A PID_OF ADDR_OF RSS_BASE RSS_HELD RSS_CLOSED RESULT
PROXIES=(baton nginx)
LABEL_baton="baton serve"
LABEL_nginx="nginx"
LABEL_jemalloc="baton serve, jemalloc preloaded"
LABEL_baton_tls="baton serve, TLS"
LABEL_nginx_tls="nginx, TLS"
[[ -r $JEMALLOC ]] && PROXIES+=(jemalloc)
PROXIES+=(baton_tls nginx_tls)

cat >"$OUT/baton.toml" <<EOF
[proxy]
workers = 1
drain_timeout = "5s"

[[listener]]
address = "127.0.0.1:0"
max_connections = $((MAX_IDLE + 5000))

[pool.app]
members = [{ address = "$BACKEND" }]

[[route]]
pool = "app"
EOF
# The same with an HTTPS listener only.
sed '/^\[pool.app\]/i [listener.tls]\ncertificates = [{ cert = "'"$CERTS"'/server.pem", key = "'"$CERTS"'/server.key" }]\n' \
    "$OUT/baton.toml" >"$OUT/baton-tls.toml"
NGINX_PORT=$(free_port)
cat >"$OUT/nginx.conf" <<EOF
$(nginx_main nginx)
worker_rlimit_nofile $(ulimit -n);
events { worker_connections $((MAX_IDLE + 5000)); }
http {
    access_log off;
$(nginx_http_common)
$(nginx_upstream_backend)
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
$(nginx_proxy_location)
    }
}
EOF

# The same with `listen ... ssl` and the certificate baton has.
NGINX_TLS_PORT=$(free_port)
sed "s|listen 127.0.0.1:$NGINX_PORT backlog=4096;|listen 127.0.0.1:$NGINX_TLS_PORT ssl backlog=4096;\n        ssl_certificate $CERTS/server.pem;\n        ssl_certificate_key $CERTS/server.key;|" \
    "$OUT/nginx.conf" >"$OUT/nginx-tls.conf"

start_proxy() {
    case $1 in
    baton)
        start baton "$BIN/baton" serve --config "$OUT/baton.toml"
        PID_OF[$1]=$REAL ADDR_OF[$1]=$(listening baton "$PID")
        ;;
    baton_tls)
        start baton-tls "$BIN/baton" serve --config "$OUT/baton-tls.toml"
        PID_OF[$1]=$REAL ADDR_OF[$1]=$(listening baton-tls "$PID")
        ;;
    nginx_tls)
        start nginx-tls nginx -p "$TMP/nginx/" -c "$PWD/$OUT/nginx-tls.conf" -e "$PWD/$OUT/nginx-error.log"
        PID_OF[$1]=$REAL ADDR_OF[$1]=127.0.0.1:$NGINX_TLS_PORT
        wait_port "$NGINX_TLS_PORT" 30 "$PID"
        ;;
    jemalloc)
        # `env` execs baton: the process under `timeout` is baton itself.
        start jemalloc env LD_PRELOAD="$JEMALLOC" "$BIN/baton" serve --config "$OUT/baton.toml"
        PID_OF[$1]=$REAL ADDR_OF[$1]=$(listening jemalloc "$PID")
        ;;
    nginx)
        start nginx nginx -p "$TMP/nginx/" -c "$PWD/$OUT/nginx.conf" -e "$PWD/$OUT/nginx-error.log"
        PID_OF[$1]=$REAL ADDR_OF[$1]=127.0.0.1:$NGINX_PORT
        wait_port "$NGINX_PORT" 30 "$PID"
        ;;
    esac
    WRAPPER=$PID
}

for p in "${PROXIES[@]}"; do
    start_proxy "$p"
    host=${ADDR_OF[$p]%:*} port=${ADDR_OF[$p]##*:}
    tls=()
    if [[ $p == *_tls ]]; then
        tls=(--tls "$CERTS/ca.pem")
        curl -sS -o /dev/null --max-time 5 --cacert "$CERTS/ca.pem" --resolve "bench.test:$port:$host" \
            "https://bench.test:$port/" || die "$p does not answer"
    else
        curl -sS -o /dev/null --max-time 5 "http://${ADDR_OF[$p]}/" || die "$p does not answer"
    fi
    sleep 2
    RSS_BASE[$p]=$(rss_kib "${PID_OF[$p]}")
    for n in $IDLE_LIST; do
        log "$p: $n idle connections"
        file="$OUT/conns-$p-$n.txt"
        timeout -k 5 300 python3 "$HERE/conns.py" "$host" "$port" --count "$n" --hold 8 \
            --open-timeout 200 --sources $(((n + 19999) / 20000)) "${tls[@]}" >"$file" 2>&1 &
        cpid=$!
        PIDS+=("$cpid")
        wait_conns_ready "$file" "$cpid" 240
        sleep 4
        RSS_HELD[$p $n]=$(rss_kib "${PID_OF[$p]}")
        wait "$cpid" || true
        RESULT[$p $n]="$(grep '^ready ' "$file" | sed 's/^ready //'); $(grep '^done ' "$file" | sed 's/^done //')"
        sleep 3
        RSS_CLOSED[$p $n]=$(rss_kib "${PID_OF[$p]}")
        log "$p: $n connections: RSS ${RSS_BASE[$p]} KiB before, ${RSS_HELD[$p $n]} KiB held, ${RSS_CLOSED[$p $n]} KiB after close"
    done
    stop "$WRAPPER"
done
LOAD_END=$(loadavg)

per_conn() { awk -v h="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.2f", (h - b) / n }'; }

SECTION="$OUT/section.md"
{
    echo "$BEGIN"
    echo "## Idle keep-alive connections: heap, RSS, and after they close"
    echo
    echo "$(written_by) $(machine_line); load average $LOAD_START at the start, $LOAD_END at the end: a shared 2-core"
    echo "machine, loaded by other work (builds and test runs) — the heap counts do not depend on it, the RSS figures a little."
    echo
    echo "Heap per idle connection, counted by \`proxy_allocs --requests 2000 --warmup 200 --idle 2000 --settle 3s\` on the"
    echo "proxy's thread (2,000 connections, each answered once): right after the answers, after 3 s of silence (past the"
    echo "1 s park delay), and what is left after the client closed them all."
    echo
    echo "| protocol | idle connections | at once | after 3 s | left after close (all) |"
    echo "|---|---|---:|---:|---:|"
    printf '%s' "$ALLOC_ROWS"
    echo
    echo "VmRSS with idle connections (\`bench/proxy/conns.py\`: one \`GET /\` each, then silence), one worker each, read"
    echo "4 s after the last answer and 3 s after the client closed them. TLS: a fresh process with an HTTPS listener"
    echo "only, the same test CA's ECDSA P-256 certificate for both (baton: \`[listener.tls]\`, rustls on ring; nginx:"
    echo "\`listen ... ssl\`, OpenSSL $(openssl version | awk '{ print $2 }')); the client (Python's \`ssl\`, ALPN http/1.1) verifies it"
    echo "against the CA:"
    echo
    echo "| server | connections | RSS before | RSS held | per connection | RSS after close | client's account |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    for p in "${PROXIES[@]}"; do
        label=LABEL_$p
        for n in $IDLE_LIST; do
            echo "| ${!label} | $n | $(mib "${RSS_BASE[$p]}") MiB | $(mib "${RSS_HELD[$p $n]}") MiB | $(per_conn "${RSS_HELD[$p $n]}" "${RSS_BASE[$p]}" "$n") KiB | $(mib "${RSS_CLOSED[$p $n]}") MiB | ${RESULT[$p $n]} |"
        done
    done
    echo
    notes_section
    echo "$END"
} >"$SECTION"

ROW='| [Idle keep-alive connections: heap, RSS, and after they close](#idle-keep-alive-connections-heap-rss-and-after-they-close) | `bench/idle.sh` | heap per idle client connection of baton'"'"'s proxy with and without parking, plain and TLS (`proxy_allocs`); RSS of `baton serve` and nginx with 10,000 (and 50,000 where the open-files limit allows) idle connections (plain and TLS), and after they close |'
write_section "$SECTION" "$ROW"
