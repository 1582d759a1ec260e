#!/usr/bin/env bash
# Counts the user-space instructions each proxy executes per request — baton, nginx and HAProxy, one worker each,
# each under valgrind's callgrind — and records them in docs/BENCHMARKS.md (between `<!-- instructions:begin -->`
# and `<!-- instructions:end -->`). Unlike requests/s on a shared machine, the count hardly moves from run to run: it
# is what the CPU-per-request target is steered by. The kernel's share (the same socket calls for every proxy, about
# two thirds of a request's CPU time here) is not in it.
#
# For each proxy and each request kind — keep-alive `GET /1k` (a 1 KiB answer from an nginx backend) and keep-alive
# `POST /echo` (1 KiB each way, echoed by hello) — a `wrk -t1 -c16` warm-up, then a SHORT and a LONG run, the
# proxy's instruction count zeroed before and dumped after each (`callgrind_control`): instructions per request are
# the difference of the two counts over the difference of their requests, so what a run costs whatever its length
# (timers, the dump itself) cancels out. The backends run outside valgrind. Every proxy does the same work: keep-alive
# to the backends, `X-Forwarded-For/-Proto/-Host` and a request id set, no access log.
#
# Usage: bench/instructions.sh   (SHORT=3s LONG=10s; QUIET_LOAD=0.60 QUIET_WAIT=300; BATON_BIN=DIR with
#                                 BENCH_COMMIT=TEXT measures the binaries in DIR instead of building them)
# Needs root to install nginx, haproxy, wrk and valgrind from Debian's packages when they are missing. Measurements
# run under `flock /tmp/baton-bench.lock`. Raw outputs are kept in target/bench/instructions/.
set -euo pipefail
BENCH=instructions
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

SHORT=${SHORT:-3s}
LONG=${LONG:-10s}
QUIET_WAIT=${QUIET_WAIT:-300}
HERE=bench/proxy

if ! bench_locked; then
    bench_tools nginx haproxy wrk python3 valgrind callgrind_control:valgrind
    bench_binaries -p baton -p hello -- baton hello
    bench_lock "$@"
fi

bench_start
BATON=$BIN/baton
HELLO=$BIN/hello
wait_quiet

# --- backends -------------------------------------------------------------------------------------------------------

nginx_get_backend 1024
start backend nginx -p "$TMP/backend/" -c "$PWD/$OUT/backend.conf" -e "$PWD/$OUT/backend-error.log"
wait_port "$BACKEND_PORT" 30 "$PID"
start hello "$HELLO" --listen 127.0.0.1:0 --app-version bench
ECHO=$(listening hello "$PID")
BACKEND=127.0.0.1:$BACKEND_PORT

# --- one proxy at a time, under callgrind ---------------------------------------------------------------------------

CALLGRIND=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no)

# proxy_config NAME PORT: writes NAME's config listening on 127.0.0.1:PORT (baton's on port 0), one worker.
proxy_config() {
    local port=$2
    case $1 in
    baton)
        cat >"$OUT/baton.toml" <<EOF
# bench/instructions.sh: one worker, GET to the nginx backend, POST /echo to hello.
[proxy]
workers = 1

[[listener]]
address = "127.0.0.1:$port"

[pool.get]
members = [{ address = "$BACKEND" }]

[pool.echo]
members = [{ address = "$ECHO" }]

[[route]]
path = "/echo"
pool = "echo"

[[route]]
pool = "get"
EOF
        ;;
    nginx)
        cat >"$OUT/nginx.conf" <<EOF
# bench/instructions.sh: one worker, keep-alive to both backends, no access log.
$(nginx_main nginx)
events { worker_connections 1024; }
http {
    access_log off;
$(nginx_http_common)
$(nginx_upstream_backend)
    upstream echo { server $ECHO; keepalive 64; keepalive_requests 1000000; keepalive_timeout 60s; }
    server {
        listen 127.0.0.1:$port backlog=4096;
$(nginx_proxy_location)
$(nginx_proxy_location | sed 's|location / {|location = /echo {|; s|http://backend|http://echo|')
    }
}
EOF
        ;;
    haproxy)
        cat >"$OUT/haproxy.cfg" <<EOF
# bench/instructions.sh: one thread, keep-alive on both sides, connection reuse, no logging.
global
    nbthread 1
    maxconn 1024

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client 120s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 120s

frontend fe
    bind 127.0.0.1:$port
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Request-Id %[uuid]
    use_backend echo if { path /echo }
    default_backend get

backend get
    server nginx $BACKEND

backend echo
    server hello $ECHO
EOF
        ;;
    esac
}

# start_proxy NAME: starts NAME under callgrind; sets ADDR, VG (the valgrind process) and PROXY_PID.
start_proxy() {
    local port
    port=$(free_port)
    proxy_config "$1" "$port"
    case $1 in
    baton) start baton "${CALLGRIND[@]}" --callgrind-out-file="$PWD/$OUT/cg.baton" "$BATON" serve --config "$OUT/baton.toml" ;;
    nginx) start nginx "${CALLGRIND[@]}" --callgrind-out-file="$PWD/$OUT/cg.nginx" nginx -p "$TMP/nginx/" -c "$PWD/$OUT/nginx.conf" -e "$PWD/$OUT/nginx-error.log" ;;
    haproxy) start haproxy "${CALLGRIND[@]}" --callgrind-out-file="$PWD/$OUT/cg.haproxy" haproxy -db -f "$OUT/haproxy.cfg" ;;
    esac
    PROXY_PID=$PID VG=$REAL ADDR=127.0.0.1:$port
    wait_port "$port" 120 "$PID"
}

# url KIND: where a request of KIND goes.
url() { if [[ $1 == get ]]; then echo "http://$ADDR/1k"; else echo "http://$ADDR/echo"; fi; }

# wrk_run FILE KIND DURATION
wrk_run() {
    local script=()
    [[ $2 == post ]] && script=(-s "$HERE/post1k.lua")
    timeout -k 5 300 wrk -t1 -c16 -d"$3" "${script[@]}" "$(url "$2")" >"$1"
}

# counted NAME KIND DURATION: runs wrk for DURATION with NAME's count zeroed before and dumped after; prints
# "instructions requests errors".
counted() {
    local before dump total requests errors
    callgrind_control -z "$VG" >/dev/null 2>&1
    wrk_run "$OUT/wrk-$1-$2-$3.txt" "$2" "$3"
    before=$(find "$OUT" -maxdepth 1 -name "cg.$1.*" | wc -l)
    callgrind_control -d "$VG" >/dev/null 2>&1
    for _ in $(seq 600); do
        (($(find "$OUT" -maxdepth 1 -name "cg.$1.*" | wc -l) > before)) && break
        sleep 0.1
    done
    dump=$(find "$OUT" -maxdepth 1 -name "cg.$1.*" | sort -t. -k3 -n | tail -1)
    # Written whole before the control command returns; the totals line closes it.
    for _ in $(seq 600); do grep -q '^totals:' "$dump" && break; sleep 0.1; done
    total=$(awk '/^totals:/ { print $2; exit }' "$dump")
    requests=$(awk '/requests in/ { print $1; exit }' "$OUT/wrk-$1-$2-$3.txt")
    errors=$(awk '/Non-2xx|Socket errors/ { n++ } END { print n + 0 }' "$OUT/wrk-$1-$2-$3.txt")
    echo "$total $requests $errors"
}

declare -A PER
for name in baton nginx haproxy; do
    log "$name under callgrind"
    start_proxy "$name"
    for kind in get post; do
        wrk_run "$OUT/warmup-$name-$kind.txt" "$kind" 2s
        read -r t1 r1 e1 < <(counted "$name" "$kind" "$SHORT")
        read -r t2 r2 e2 < <(counted "$name" "$kind" "$LONG")
        ((e1 + e2 == 0)) || die "$name $kind: wrk saw errors; see $OUT/wrk-$name-$kind-*.txt"
        ((r2 > r1)) || die "$name $kind: the long run made no more requests than the short one"
        PER[$name-$kind]=$(awk -v t1="$t1" -v t2="$t2" -v r1="$r1" -v r2="$r2" 'BEGIN { printf "%.0f", (t2 - t1) / (r2 - r1) }')
        log "$name $kind: ${PER[$name-$kind]} instructions per request ($r1 and $r2 requests)"
    done
    stop "$PROXY_PID"
done

# --- the section ----------------------------------------------------------------------------------------------------

# thousands N: N with a comma every three digits.
thousands() { echo "$1" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta'; }
{
    echo "$BEGIN"
    echo "## Instructions per request: baton, nginx and HAProxy under callgrind"
    echo
    written_by
    echo "$(machine_line). nginx $(nginx -v 2>&1 | sed 's|.*/||'), HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }'),"
    echo "$(valgrind --version), wrk (Debian's packages)."
    echo
    echo "User-space instructions per keep-alive request, one worker each, each proxy under callgrind in turn (the"
    echo "backends outside it): the difference between a $SHORT and a $LONG \`wrk -t1 -c16\` run over the difference of"
    echo "their requests. The kernel's share is not counted. Lower is better; baton / best is baton's count over the"
    echo "lower of nginx's and HAProxy's."
    echo
    echo "| request | baton | nginx | HAProxy | baton / best |"
    echo "|---|---:|---:|---:|---:|"
    for kind in get post; do
        best=${PER[nginx-$kind]}
        ((PER[haproxy-$kind] < best)) && best=${PER[haproxy-$kind]}
        label="GET 1 KiB"
        [[ $kind == post ]] && label="POST 1 KiB echo"
        echo "| $label | $(thousands "${PER[baton-$kind]}") | $(thousands "${PER[nginx-$kind]}") | $(thousands "${PER[haproxy-$kind]}") | $(ratio "${PER[baton-$kind]}" "$best") |"
    done
    echo
    notes_section
    echo "$END"
} >"$OUT/section.md"
write_section "$OUT/section.md" "| [Instructions per request](#instructions-per-request-baton-nginx-and-haproxy-under-callgrind) | \`bench/instructions.sh\` | user-space instructions per GET and POST: baton, nginx, HAProxy under callgrind |"
