#!/usr/bin/env bash
# Benchmarks baton's data plane against nginx and HAProxy in one run, for 1 worker each and for N workers each
# (N = the machine's cores), and records the figures in docs/BENCHMARKS.md (between `<!-- dataplane:begin -->` and
# `<!-- dataplane:end -->`):
#
#  1. throughput: `wrk -t1 -c64 --latency`, keep-alive `GET /1k` (a 1 KiB answer from an nginx backend) and keep-alive
#     `POST /echo` (1 KiB each way, echoed by hello), over plain HTTP and over HTTPS (TLS 1.3 as wrk negotiates it; the
#     same ECDSA P-256 certificate, made with the openssl CLI, on an HTTPS listener of each proxy: rustls on ring for
#     baton, OpenSSL for nginx and HAProxy; plain HTTP to the backends), through baton, nginx and HAProxy with WORKERS_LIST workers each
#     (default: 1 and then every power of two up to the cores, and the cores): median requests/s, p99 and the proxy's
#     CPU time per request, ROUNDS rounds with the order of the proxies rotating from round to round. With one worker
#     the proxy is pinned to the last core and wrk and the backends to the others (`taskset`); with more workers than
#     that leaves, nothing is pinned and wrk and the backends compete with the proxy for the cores. Requests/s by
#     worker count is the scaling curve;
#  2. allocations per request: `proxy_allocs` (crates/benchmarks) counts what baton's proxy allocates per keep-alive
#     GET and POST, and the heap it holds per idle connection;
#  3. the kernel's share, one worker each, keep-alive GET: system calls per request by kind (perf's syscall
#     tracepoints on the proxy), TCP segments per request (`nstat`, the whole machine) and rescheduling interrupts
#     per request (RES in /proc/interrupts: a woken process on the other core that had to be told), next to the
#     proxy's system CPU time per request — what its kernel time is made of, request for request;
#  4. memory: VmRSS of each one-worker proxy with IDLE_LIST (10,000 and 50,000) idle keep-alive client connections
#     (bench/proxy/conns.py: one `GET /1k` each, then silence; spread over several source addresses), and 3 s after
#     they closed; for HTTP/1.1 and HTTP/2 (h2c with prior knowledge), plain and over TLS, each in fresh proxy
#     processes (memory one kind freed would be reused by the next); and baton's heap per idle connection of each
#     kind, counted by proxy_allocs.
#
# Usage: bench/dataplane.sh   (ROUNDS=3 WRK_DURATION=8s WRK_CONNECTIONS=64 IDLE_LIST="10000 50000" WORKERS_LIST=...;
#                              QUIET_LOAD=0.60 QUIET_WAIT=300; BATON_BIN=DIR with BENCH_COMMIT=TEXT measures the
#                              binaries in DIR instead of building them)
# Needs root to install nginx, haproxy and wrk from Debian's packages when they are missing (their services are never
# started). Measurements run under `flock /tmp/baton-bench.lock`. Raw outputs are kept in target/bench/dataplane/.
set -euo pipefail
BENCH=dataplane
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
WRK_DURATION=${WRK_DURATION:-8s}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
IDLE_LIST=${IDLE_LIST:-10000 50000}
QUIET_WAIT=${QUIET_WAIT:-300}
CORES=$(nproc)
if [[ -z ${WORKERS_LIST:-} ]]; then
    WORKERS_LIST=1
    for ((w = 2; w < CORES; w *= 2)); do WORKERS_LIST+=" $w"; done
    ((CORES > 1)) && WORKERS_LIST+=" $CORES"
fi
LIFETIME=3000
HERE=bench/proxy

if ! bench_locked; then
    bench_tools nginx haproxy wrk python3 curl openssl taskset:util-linux perf:linux-perf nstat:iproute2
    bench_binaries -p baton -p hello -p benchmarks -- baton hello proxy_allocs
    bench_lock "$@"
fi

bench_start
BATON=$BIN/baton
HELLO=$BIN/hello
ALLOCS=$BIN/proxy_allocs
MAX_IDLE=$(printf '%s\n' $IDLE_LIST | sort -n | tail -1)
ulimit -n $((MAX_IDLE + 10000)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -n)
((FD_LIMIT > MAX_IDLE + 1000)) || die "open-file limit $FD_LIMIT is too low for $MAX_IDLE connections"
LAST=$((CORES - 1))
OTHERS=0
((CORES > 1)) && OTHERS=0-$((CORES - 2))

wait_quiet

# --- the certificate of the HTTPS listeners: a test CA's ECDSA P-256 certificate for bench.test -------------------

CERTS=$PWD/$OUT/certs
bench_test_cert "$CERTS"

# --- backends, pinned away from the one-worker proxies ----------------------------------------------------------

nginx_get_backend 4096
start backend taskset -c "$OTHERS" nginx -p "$TMP/backend/" -c "$PWD/$OUT/backend.conf" -e "$PWD/$OUT/backend-error.log"
BACKEND_PID=$PID
wait_port "$BACKEND_PORT" 30 "$BACKEND_PID"
start hello taskset -c "$OTHERS" "$HELLO" --listen 127.0.0.1:0 --app-version bench
HELLO_PID=$PID
ECHO=$(listening hello "$HELLO_PID")
BACKEND=127.0.0.1:$BACKEND_PORT

# --- the proxies, W workers each ------------------------------------------------------------------------------------

# start_proxies W: baton, nginx and HAProxy with W workers (pinned to the last core when W is 1); sets ADDR (plain
# HTTP), TADDR (HTTPS), REALPID.
declare -A ADDR TADDR REALPID PROXYPID
start_proxies() {
    local w=$1 pin=() port
    ((w == 1 && CORES > 1)) && pin=(taskset -c "$LAST")
    cat >"$OUT/baton-$w.toml" <<EOF
# bench/dataplane.sh: $w worker(s), GET to the nginx backend, POST /echo to hello.
[proxy]
workers = $w
drain_timeout = "5s"

[[listener]]
address = "127.0.0.1:0"
max_connections = $((MAX_IDLE + 5000))

[[listener]]
name = "https"
address = "127.0.0.1:0"
max_connections = $((MAX_IDLE + 5000))
[listener.tls]
certificates = [{ cert = "$CERTS/server.pem", key = "$CERTS/server.key" }]

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
    start "baton-$w" "${pin[@]}" "$BATON" serve --config "$OUT/baton-$w.toml"
    PROXYPID[baton]=$PID REALPID[baton]=$REAL
    ADDR[baton]=$(listening "baton-$w" "$PID")
    wait_line "$OUT/baton-$w.stderr" ': ready$' 30 "$PID"
    TADDR[baton]=$(grep '^listening on ' "$OUT/baton-$w.stdout" | sed -n '2s/^listening on //p')
    [[ -n ${TADDR[baton]} ]] || die "baton printed no second listening line; see $OUT/baton-$w.stdout"
    # A plain listener of baton's serves HTTP/2 with prior knowledge as well.
    H2ADDR[baton]=${ADDR[baton]}

    port=$(free_port) tport=$(free_port) hport=$(free_port)
    cat >"$OUT/nginx-$w.conf" <<EOF
# bench/dataplane.sh: $w worker(s), keep-alive to both backends, no access log.
$(nginx_main nginx "$w")
worker_rlimit_nofile $FD_LIMIT;
events { worker_connections $((MAX_IDLE + 5000)); }
http {
    access_log off;
$(nginx_http_common)
$(nginx_upstream_backend)
    upstream echo { server $ECHO; keepalive 64; keepalive_requests 1000000; keepalive_timeout 60s; }
    server {
        listen 127.0.0.1:$port backlog=4096;
        listen 127.0.0.1:$tport ssl http2 backlog=4096;
        listen 127.0.0.1:$hport http2 backlog=4096;
        ssl_certificate $CERTS/server.pem;
        ssl_certificate_key $CERTS/server.key;
$(nginx_proxy_location)
$(nginx_proxy_location | sed 's|location / {|location = /echo {|; s|http://backend|http://echo|')
    }
}
EOF
    start "nginx-$w" "${pin[@]}" nginx -p "$TMP/nginx/" -c "$PWD/$OUT/nginx-$w.conf" -e "$PWD/$OUT/nginx-error.log"
    PROXYPID[nginx]=$PID REALPID[nginx]=$REAL ADDR[nginx]=127.0.0.1:$port TADDR[nginx]=127.0.0.1:$tport
    H2ADDR[nginx]=127.0.0.1:$hport
    wait_port "$port" 30 "$PID"

    port=$(free_port) tport=$(free_port) hport=$(free_port)
    cat >"$OUT/haproxy-$w.cfg" <<EOF
# bench/dataplane.sh: $w thread(s), keep-alive on both sides, connection reuse, no logging.
global
    nbthread $w
    no strict-limits
    maxconn $((MAX_IDLE + 5000))

defaults
    mode http
    option http-keep-alive
    http-reuse always
    maxconn $((MAX_IDLE + 5000))
    timeout connect 2s
    timeout client 120s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 120s

frontend fe
    bind 127.0.0.1:$port
    bind 127.0.0.1:$tport ssl crt $CERTS/haproxy.pem alpn h2,http/1.1
    bind 127.0.0.1:$hport proto h2
    option forwardfor
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Request-Id %[uuid]
    use_backend echo if { path /echo }
    default_backend get

backend get
    server nginx $BACKEND

backend echo
    server hello $ECHO
EOF
    start "haproxy-$w" "${pin[@]}" haproxy -db -f "$OUT/haproxy-$w.cfg"
    PROXYPID[haproxy]=$PID REALPID[haproxy]=$REAL ADDR[haproxy]=127.0.0.1:$port TADDR[haproxy]=127.0.0.1:$tport
    H2ADDR[haproxy]=127.0.0.1:$hport
    wait_port "$port" 30 "$PID"
    wait_port "$tport" 30 "$PID"
}

# kernel_counts PROXY: one keep-alive GET run of WRK_DURATION to PROXY (one worker, pinned) with its system calls
# counted by perf's tracepoints, the machine's TCP segments (nstat) and rescheduling interrupts (/proc/interrupts);
# prints "syscalls recv send epoll other segments res sys_us", each per request.
kernel_counts() {
    local pid=${REALPID[$1]} file="$OUT/kernel-$1" secs=${WRK_DURATION%s} reqs s0 s1 res0 res1
    read -r _ s0 < <(cpu_split "$pid")
    res0=$(awk '$1 == "RES:" { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; print n }' /proc/interrupts)
    nstat -n
    perf stat -x, -o "$file.perf" -p "$pid" \
        -e raw_syscalls:sys_enter -e 'syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_readv' \
        -e 'syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendmsg' \
        -e 'syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait' -- sleep "$((secs + 2))" &
    local perf=$!
    sleep 1 # perf attached before the first request
    run_wrk "$file.wrk" "$1" get 1 "$WRK_DURATION" || die "wrk failed"
    wait "$perf" || die "perf stat failed: $file.perf"
    nstat >"$file.nstat"
    res1=$(awk '$1 == "RES:" { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; print n }' /proc/interrupts)
    read -r _ s1 < <(cpu_split "$pid")
    read -r _ _ _ reqs _ < <(parse_wrk "$file.wrk")
    # perf counts from a second before wrk starts to a second after it stopped, when the proxy is idle: its counts
    # are those of wrk's requests.
    awk -F, -v n="$reqs" -v segs="$(awk '$1 == "TcpOutSegs" { print $2 }' "$file.nstat")" \
        -v res=$((res1 - res0)) -v sys=$((s1 - s0)) -v hz="$HZ" '
        $3 == "raw_syscalls:sys_enter" { all = $1 }
        $3 ~ /recvfrom|sys_enter_read/ { recv += $1 }
        $3 ~ /sendto|sys_enter_write|sendmsg/ { send += $1 }
        $3 ~ /epoll/ { ep += $1 }
        END {
            printf "%.2f %.2f %.2f %.2f %.2f %.2f %.3f %.1f\n", all / n, recv / n, send / n, ep / n,
                (all - recv - send - ep) / n, segs / n, res / n, sys / hz * 1e6 / n
        }' "$file.perf"
}

stop_proxies() {
    local p
    for p in baton nginx haproxy; do stop "${PROXYPID[$p]}"; done
}

# run_wrk FILE PROXY KIND W DURATION: one wrk run of KIND (get, post, tls-get or tls-post) to PROXY, pinned away from
# a one-worker proxy.
run_wrk() {
    local pin=() url
    (($4 == 1 && CORES > 1)) && pin=(taskset -c "$OTHERS")
    url=$(kind_url "$2" "$3")
    if [[ $3 == *get ]]; then
        timeout -k 5 120 "${pin[@]}" wrk -t1 -c"$WRK_CONNECTIONS" -d"$5" --latency "$url" >"$1"
    else
        timeout -k 5 120 "${pin[@]}" wrk -t1 -c"$WRK_CONNECTIONS" -d"$5" --latency -s "$HERE/post1k.lua" "$url" >"$1"
    fi
}

# kind_url PROXY KIND: the URL a request of KIND goes to.
kind_url() {
    local path=/1k
    [[ $2 == *post ]] && path=/echo
    case $2 in
    tls-*) echo "https://${TADDR[$1]}$path" ;;
    *) echo "http://${ADDR[$1]}$path" ;;
    esac
}

KINDS=(get post tls-get tls-post)
declare -A KIND_LABEL=([get]='GET 1 KiB' [post]='POST echo 1 KiB' [tls-get]='HTTPS GET 1 KiB' [tls-post]='HTTPS POST echo 1 KiB')

PROXIES=(baton nginx haproxy)
declare -A LABEL=([baton]=baton [nginx]=nginx [haproxy]=HAProxy)
declare -A RPS P99 CPU USER
declare -A RSS_BASE RSS_HELD RSS_CLOSED CONNS_RESULT KERNEL H2ADDR
# Idle connections: what they speak, and where.
IDLE_KINDS=(http h2c https h2)
declare -A IDLE_LABEL=([http]='HTTP/1.1' [h2c]='HTTP/2 (h2c)' [https]='HTTP/1.1, TLS' [h2]='HTTP/2, TLS')
# idle_target PROXY KIND: the address and conns.py's options for idle connections of KIND to PROXY.
idle_target() {
    case $2 in
    http) echo "${ADDR[$1]}" ;;
    h2c) echo "${H2ADDR[$1]} --h2" ;;
    https) echo "${TADDR[$1]} --tls $CERTS/ca.pem" ;;
    h2) echo "${TADDR[$1]} --tls $CERTS/ca.pem --h2" ;;
    esac
}
ROWS=""
WRK_ERRORS=0

for w in $WORKERS_LIST; do
    log "== $w worker(s) each"
    start_proxies "$w"
    for p in "${PROXIES[@]}"; do
        for kind in "${KINDS[@]}"; do
            url=$(kind_url "$p" "$kind")
            code=$(curl -sS -k -o /dev/null -w '%{http_code}' --max-time 5 -d x "$url" 2>/dev/null || true)
            [[ $kind == *get ]] && code=$(curl -sS -k -o /dev/null -w '%{http_code}' --max-time 5 "$url" || true)
            [[ $code == 200 ]] || die "${LABEL[$p]} answered $code to $kind $url"
            run_wrk "$OUT/wrk-warmup-$w-$p-$kind.txt" "$p" "$kind" "$w" 2s
        done
    done
    for round in $(seq "$ROUNDS"); do
        for kind in "${KINDS[@]}"; do
            for i in 0 1 2; do
                p=${PROXIES[$(((i + round - 1) % 3))]}
                read -r u0 s0 < <(cpu_split "${REALPID[$p]}")
                run_wrk "$OUT/wrk-$w-$p-$kind-$round.txt" "$p" "$kind" "$w" "$WRK_DURATION" || die "wrk failed"
                read -r u1 s1 < <(cpu_split "${REALPID[$p]}")
                read -r rps p99 errs reqs _ < <(parse_wrk "$OUT/wrk-$w-$p-$kind-$round.txt")
                us=$(awk -v c=$((u1 - u0 + s1 - s0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", n ? c / hz * 1e6 / n : 0 }')
                usu=$(awk -v c=$((u1 - u0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", n ? c / hz * 1e6 / n : 0 }')
                key="$w $kind $p"
                RPS[$key]+="$rps " P99[$key]+="$p99 " CPU[$key]+="$us " USER[$key]+="$usu "
                WRK_ERRORS=$((WRK_ERRORS + errs))
                log "$w worker(s), $kind, round $round: ${LABEL[$p]} $rps req/s, p99 $p99 ms, $us µs CPU/request ($usu user), errors $errs"
                ROWS+="| $w | $kind | $round | ${LABEL[$p]} | $rps | $p99 ms | $us µs ($usu user) |"$'\n'
            done
        done
    done
    if [[ $w == 1 ]]; then
        for p in "${PROXIES[@]}"; do
            log "kernel: ${LABEL[$p]}"
            KERNEL[$p]=$(kernel_counts "$p")
        done
        for kind in "${IDLE_KINDS[@]}"; do
            # Fresh processes for each kind: what one kind's connections freed would be reused by the next.
            stop_proxies
            start_proxies 1
            for p in "${PROXIES[@]}"; do
                for n in $IDLE_LIST; do
                    read -ra opts <<<"$(idle_target "$p" "$kind")"
                    target=${opts[0]}
                    opts=("${opts[@]:1}")
                    # One request first, so that what a proxy makes once (its upstream connection) is in the base.
                    curl -sS -o /dev/null --max-time 5 "http://${ADDR[$p]}/1k" || die "${LABEL[$p]} did not answer"
                    sleep 2
                    RSS_BASE[$p $kind $n]=$(rss_kib "${REALPID[$p]}")
                    log "memory: $n idle ${IDLE_LABEL[$kind]} connections to ${LABEL[$p]}"
                    file="$OUT/conns-$p-$kind-$n.txt"
                    sources=$(((n + 19999) / 20000))
                    timeout -k 5 300 python3 "$HERE/conns.py" "${target%:*}" "${target##*:}" --count "$n" --hold 8 \
                        --open-timeout 200 --sources "$sources" "${opts[@]}" >"$file" 2>&1 &
                    cpid=$!
                    PIDS+=("$cpid")
                    wait_conns_ready "$file" "$cpid" 240
                    sleep 4
                    RSS_HELD[$p $kind $n]=$(rss_kib "${REALPID[$p]}")
                    wait "$cpid" || true
                    CONNS_RESULT[$p $kind $n]="$(grep '^ready ' "$file" | sed 's/^ready //'); $(grep '^done ' "$file" | sed 's/^done //')"
                    sleep 3
                    RSS_CLOSED[$p $kind $n]=$(rss_kib "${REALPID[$p]}")
                    log "${LABEL[$p]}: $n ${IDLE_LABEL[$kind]} connections: RSS ${RSS_HELD[$p $kind $n]} KiB held, ${RSS_CLOSED[$p $kind $n]} KiB after close (${CONNS_RESULT[$p $kind $n]})"
                done
            done
        done
    fi
    stop_proxies
done

log "allocations: proxy_allocs"
"$ALLOCS" --json --requests 20000 --idle 2000 --settle 2s >"$OUT/allocs.json" 2>"$OUT/allocs.stderr" || die "proxy_allocs failed: $OUT/allocs.stderr"
# The heap of idle connections of the other kinds (few requests: only their idle connections are read).
declare -A IDLE_OPTS=([h2c]=--h2 [https]=--tls [h2]='--tls --h2')
for kind in h2c https h2; do
    # shellcheck disable=SC2086 # the options
    "$ALLOCS" --json --requests 200 --warmup 20 --idle 2000 --settle 2s ${IDLE_OPTS[$kind]} >"$OUT/allocs-$kind.json" \
        2>"$OUT/allocs-$kind.stderr" || die "proxy_allocs ${IDLE_OPTS[$kind]} failed: $OUT/allocs-$kind.stderr"
done
stop "$HELLO_PID"
stop "$BACKEND_PID"

# --- the section ----------------------------------------------------------------------------------------------------

med() { printf '%s\n' $1 | median; }
allocs() { python3 -c 'import json,sys; print(eval(sys.argv[2], {}, json.load(open(sys.argv[1]))))' "${2:-$OUT/allocs.json}" "$1"; }
per_conn() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.2f", (a - b) / n }'; }

SECTION="$OUT/section.md"
{
    echo "$BEGIN"
    echo "## Data plane: baton against nginx and HAProxy, 1 to N workers, allocations, idle connections"
    echo
    written_by
    echo "$(machine_line); load average $LOAD_START when measuring started (after waiting ${waited} s for ≤ $QUIET_LOAD),"
    echo "$(loadavg) at the end. nginx $(nginx -v 2>&1 | sed 's|.*/||'), HAProxy $(haproxy -v 2>&1 | head -1 | awk '{ print $3 }'), wrk (Debian's packages)."
    echo
    echo "Command: \`ROUNDS=$ROUNDS WRK_DURATION=$WRK_DURATION WRK_CONNECTIONS=$WRK_CONNECTIONS IDLE_LIST=\"$IDLE_LIST\" WORKERS_LIST=\"$WORKERS_LIST\" bench/dataplane.sh\`."
    echo
    echo "Backends: nginx answering \`GET /1k\` with 1 KiB, and \`hello\` echoing \`POST /echo\`; both pinned with \`taskset\`"
    echo "to cores $OTHERS, as is wrk (\`wrk -t1 -c$WRK_CONNECTIONS -d$WRK_DURATION --latency\`). With **1 worker** each proxy is pinned to"
    echo "core $LAST, alone; with more workers nothing is pinned and wrk and the backends compete with the proxy for the"
    echo "$CORES cores (so the figures with $CORES workers show what the proxy gets on a shared machine, not its ceiling)."
    echo "baton: \`[proxy] workers = W\`; nginx: \`worker_processes W\`; HAProxy: \`nbthread W\`; each sets \`X-Forwarded-For\`,"
    echo "\`-Proto\`, \`-Host\` and a request id, keeps upstream connections alive, and logs nothing (configs in \`$OUT/\`)."
    echo "HTTPS: each proxy has a second listener with the same test CA's ECDSA P-256 certificate (baton: \`[listener.tls]\`,"
    echo "rustls on ring; nginx: \`listen ... ssl http2\`; HAProxy: \`bind ... ssl crt ... alpn h2,http/1.1\`; both OpenSSL $(openssl version | awk '{ print $2 }')), keep-alive"
    echo "TLS 1.3 as wrk negotiates it; plain HTTP to the backends."
    echo "CPU is the proxy's own user + system time per request (\`/proc/PID/stat\`). Medians of $ROUNDS rounds, the order"
    echo "of the proxies rotating each round."
    echo
    echo "| workers | request | proxy | req/s | p99 | CPU per request (user) | req/s in each round |"
    echo "|---:|---|---|---:|---:|---:|---|"
    for w in $WORKERS_LIST; do
        for kind in "${KINDS[@]}"; do
            for p in "${PROXIES[@]}"; do
                key="$w $kind $p"
                echo "| $w | ${KIND_LABEL[$kind]} | ${LABEL[$p]} | **$(med "${RPS[$key]}")** | $(med "${P99[$key]}") ms | $(med "${CPU[$key]}") µs ($(med "${USER[$key]}")) | $(echo ${RPS[$key]} | sed 's/ /, /g') |"
            done
        done
    done
    echo
    for w in $WORKERS_LIST; do
        for kind in "${KINDS[@]}"; do
            b=$(med "${RPS[$w $kind baton]}") n=$(med "${RPS[$w $kind nginx]}") h=$(med "${RPS[$w $kind haproxy]}")
            best=$(awk -v n="$n" -v h="$h" 'BEGIN { print (n > h ? n : h) }')
            bp=$(med "${P99[$w $kind baton]}") np=$(med "${P99[$w $kind nginx]}") hp=$(med "${P99[$w $kind haproxy]}")
            echo "- $w worker(s), ${KIND_LABEL[$kind]}: baton / the better of nginx and HAProxy = **$(ratio "$b" "$best")** (target ≥ 1.1); p99 baton $bp ms, nginx $np ms, HAProxy $hp ms."
        done
    done
    # How far a proxy's rounds were apart with one worker: a ratio above is only as good as this.
    spread=$(for kind in "${KINDS[@]}"; do for p in "${PROXIES[@]}"; do
        printf '%s\n' ${RPS[1 $kind $p]} | sort -n | awk -v l="${LABEL[$p]} ${KIND_LABEL[$kind]}" \
            'NR == 1 { lo = $1 } { hi = $1 } END { if (lo > 0) printf "%.3f %s\n", hi / lo, l }'
    done; done | sort -rn | head -1)
    if awk -v r="${spread%% *}" 'BEGIN { exit !(r > 1.10) }'; then
        note "With one worker, the rounds of ${spread#* } were up to $(awk -v r="${spread%% *}" 'BEGIN { printf "%.0f", (r - 1) * 100 }') % apart (fastest over slowest): other work on the host, which no load average inside this machine shows, moved the rounds more than the ratios above differ from 1; CPU per request is the steadier figure."
    fi
    echo
    echo "**Scaling** (GET, req/s by workers): $(for p in "${PROXIES[@]}"; do printf '%s ' "${LABEL[$p]}"; for w in $WORKERS_LIST; do printf '%s→%s ' "$w" "$(med "${RPS[$w get $p]}")"; done; printf '; '; done)"
    echo
    echo "<details><summary>Every run</summary>"
    echo
    echo "| workers | request | round | proxy | req/s | p99 | CPU per request |"
    echo "|---:|---|---:|---|---:|---:|---:|"
    printf '%s' "$ROWS"
    echo
    echo "</details>"
    echo
    echo "### Allocations per request (baton)"
    echo
    echo "\`target/release/proxy_allocs --requests 20000 --idle 2000 --settle 2s\` counts every allocation on the proxy's"
    echo "thread (a counting global allocator; single-threaded runtime; no access log): keep-alive GET 1 KiB"
    echo "**$(allocs 'get["allocations"]')** allocations ($(allocs 'round(get["bytes"])') bytes) per request, keep-alive POST echo 1 KiB"
    echo "**$(allocs 'post["allocations"]')** ($(allocs 'round(post["bytes"])') bytes). Heap held per idle keep-alive connection (answered once,"
    echo "then silent): $(allocs 'round(idle_bytes_per_conn_at_once)') bytes right after the answer, **$(allocs 'round(idle_bytes_per_conn_settled)') bytes** after 2 s;"
    echo "$(allocs 'bytes_held_after_close') bytes still held after all closed. Before this work: 24.06 allocations per GET and per POST"
    echo "(proxy_allocs at commit 0b45dee), 28,369 bytes per idle connection."
    echo
    echo "Heap per idle connection by what it speaks (\`proxy_allocs --idle 2000 --settle 2s\` with \`--h2\`, \`--tls\`,"
    echo "\`--tls --h2\`; an HTTP/1.1 connection is parked after a second idle, an HTTP/2 one is not):"
    echo
    echo "| connection | right after its answer | after 2 s |"
    echo "|---|---:|---:|"
    for kind in "${IDLE_KINDS[@]}"; do
        file=$OUT/allocs-$kind.json
        [[ $kind == http ]] && file=$OUT/allocs.json
        echo "| ${IDLE_LABEL[$kind]} | $(allocs 'round(idle_bytes_per_conn_at_once)' "$file") B | $(allocs 'round(idle_bytes_per_conn_settled)' "$file") B |"
    done
    echo
    echo "### The kernel's share (1 worker each, keep-alive GET 1 KiB)"
    echo
    echo "One \`wrk -t1 -c$WRK_CONNECTIONS -d$WRK_DURATION\` run per proxy: its system calls counted by perf's syscall tracepoints"
    echo "(\`perf stat -p\`), TCP segments sent on the whole machine (\`nstat\` TcpOutSegs: client, proxy and backend together),"
    echo "rescheduling interrupts on the whole machine (RES in /proc/interrupts: a process woken on a core that had to be"
    echo "interrupted for it), and the proxy's system CPU time; all per request."
    echo
    echo "| proxy | system calls | receives | sends | epoll waits | others | TCP segments | rescheduling interrupts | system CPU |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for p in "${PROXIES[@]}"; do
        read -r k_all k_recv k_send k_ep k_other k_segs k_res k_sys <<<"${KERNEL[$p]}"
        echo "| ${LABEL[$p]} | $k_all | $k_recv | $k_send | $k_ep | $k_other | $k_segs | $k_res | $k_sys µs |"
    done
    echo
    echo "### Memory with idle keep-alive connections (1 worker each)"
    echo
    echo "VmRSS of the proxy process; \`bench/proxy/conns.py\` opens the connections (one \`GET /\` each, then silence;"
    echo "HTTP/2: with prior knowledge on a plain port (nginx: \`listen ... http2\`, HAProxy: \`bind ... proto h2\`, baton: its"
    echo "plain listener), by ALPN over TLS; the client acknowledges the proxy's SETTINGS and sends nothing more, not even a"
    echo "PING). RSS is read 4 s after the last was answered, and again 3 s after the client closed them all; each kind in"
    echo "fresh proxy processes that answered one request first. Per connection: (held − before) / count, in KiB; ×"
    echo "nginx: baton's per connection over nginx's."
    echo
    echo "| proxy | connections | RSS before | RSS held | per connection | × nginx | RSS after close | client's account |"
    echo "|---|---|---:|---:|---:|---:|---:|---|"
    for kind in "${IDLE_KINDS[@]}"; do
        for n in $IDLE_LIST; do
            for p in "${PROXIES[@]}"; do
                key="$p $kind $n"
                mine=$(per_conn "${RSS_HELD[$key]}" "${RSS_BASE[$key]}" "$n")
                ratio=""
                if [[ $p == baton ]]; then
                    ratio=$(awk -v b="$mine" -v n="$(per_conn "${RSS_HELD[nginx $kind $n]}" "${RSS_BASE[nginx $kind $n]}" "$n")" \
                        'BEGIN { if (n > 0) printf "%.2f", b / n; else printf "–" }')
                fi
                echo "| ${LABEL[$p]} | $n ${IDLE_LABEL[$kind]} | $(mib "${RSS_BASE[$key]}") MiB | $(mib "${RSS_HELD[$key]}") MiB | $mine KiB | $ratio | $(mib "${RSS_CLOSED[$key]}") MiB | ${CONNS_RESULT[$key]} |"
            done
        done
    done
    echo
    ((WRK_ERRORS == 0)) || note "wrk counted $WRK_ERRORS socket errors or non-2xx responses (see \`$OUT/wrk-*.txt\`)."
    note_if_busy
    notes_section
    echo "$END"
} >"$SECTION"

ROW='| [Data plane: baton against nginx and HAProxy, 1 to N workers, allocations, idle connections](#data-plane-baton-against-nginx-and-haproxy-1-to-n-workers-allocations-idle-connections) | `bench/dataplane.sh` | keep-alive GET 1 KiB and POST echo through baton, nginx and HAProxy with 1 and N workers each (pinned with taskset for 1): req/s, p99, CPU per request, the scaling curve; baton'"'"'s allocations per request; the kernel'"'"'s share per request (system calls, TCP segments, rescheduling interrupts); RSS with 10,000 and 50,000 idle HTTP/1.1 and HTTP/2 connections, plain and over TLS, and after they close |'
write_section "$SECTION" "$ROW"
