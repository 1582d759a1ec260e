#!/usr/bin/env bash
# Benchmarks `baton serve` against nginx and HAProxy in one run and records the figures in docs/BENCHMARKS.md
# (between `<!-- proxy:begin -->` and `<!-- proxy:end -->`):
#
#  1. throughput: `wrk -t1 -c64 -d10s --latency`, keep-alive POST /echo with a 1 KiB body (hello echoes it, so 1 KiB
#     goes each way), against hello itself (direct), baton, nginx and HAProxy, all in front of the same single hello,
#     each proxy with one worker thread and keep-alive upstream connections; ROUNDS rounds in a rotating order; median
#     requests/s and p99 per target, the ratios baton/nginx and baton/HAProxy, and each proxy's CPU time per request;
#  2. memory: VmRSS of baton, nginx and HAProxy after start, after the throughput runs, with IDLE_CONNS (10,000) idle
#     keep-alive client connections open (bench/proxy/conns.py: one GET / each, then silence), and after they closed;
#  3. reload: baton started with a one-route config is sent SIGHUP into a config with ROUTES (10,000) exact-path routes
#     and back, RELOADS times, under a light `baton-load` load (which counts failed requests); the duration comes from
#     baton's `config reloaded ... duration_ms=` log line.
#
# Usage: bench/proxy.sh   (ROUNDS=3 WRK_DURATION=10s WRK_CONNECTIONS=64 IDLE_CONNS=10000 ROUTES=10000 RELOADS=5;
#                          QUIET_LOAD=0.60 QUIET_WAIT=900 wait up to QUIET_WAIT s for the 1-minute load average to
#                          drop to QUIET_LOAD; PROFILE=1 also records a perf profile of baton under the wrk load,
#                          after the measurements; BATON_BIN=DIR measures the baton, hello and baton-load binaries
#                          in DIR instead of building them, and then BENCH_COMMIT=TEXT must say what they were built
#                          from; BENCH_COMMIT=TEXT also names the source outside a git checkout)
# Needs root to install nginx, haproxy and wrk from Debian's packages when they are missing (the system services are
# never started: nginx and HAProxy run in the foreground with configs written to a temp dir).
# Measurements run under `flock /tmp/baton-bench.lock` so that benchmarks never overlap.
# Raw outputs (wrk reports, configs, logs, JSON) are kept in target/bench/proxy/.
# Exits 1 if a request failed during the reloads or a check failed (the section is still written).
set -euo pipefail
BENCH=proxy
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
WRK_DURATION=${WRK_DURATION:-10s}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
IDLE_CONNS=${IDLE_CONNS:-10000}
ROUTES=${ROUTES:-10000}
RELOADS=${RELOADS:-5}
QUIET_WAIT=${QUIET_WAIT:-900}
PROFILE=${PROFILE:-0}
LIFETIME=2400
HERE=bench/proxy

if ! bench_locked; then
    bench_tools nginx haproxy wrk python3 curl
    bench_binaries -p baton -p hello -p loadgen -p benchmarks -- baton hello baton-load reload_stages
    bench_lock "$@"
fi

# --- under the lock ------------------------------------------------------------------------------------------------

bench_start
BATON=$BIN/baton
HELLO=$BIN/hello
LOADGEN=$BIN/baton-load
STAGES=$BIN/reload_stages
for b in "$BATON" "$HELLO" "$LOADGEN" "$STAGES"; do [[ -x $b ]] || die "$b is missing: cargo build --release"; done
FD_LIMIT=$(ulimit -n)
((FD_LIMIT > IDLE_CONNS + 1000)) || die "open-file limit $FD_LIMIT is too low for $IDLE_CONNS connections"

# run_wrk FILE ADDR DURATION: one wrk run (1 KiB POST /echo), its report in FILE. Runs in the foreground, so
# that wrk's CPU time ends up in this shell's children's times (see `own_children`).
run_wrk() {
    timeout -k 5 120 wrk -t1 -c"$WRK_CONNECTIONS" -d"$3" --latency -s "$HERE/post1k.lua" "http://$2/echo" >"$1"
}

wait_quiet

# --- servers -------------------------------------------------------------------------------------------------------

log "starting hello (backend)"
start hello "$HELLO" --listen 127.0.0.1:0 --app-version bench
HELLO_PID=$PID HELLO_REAL=$REAL
BACKEND=$(listening hello "$HELLO_PID")

# baton: one listener, one pool with the backend, one catch-all route.
small_config() {
    cat <<EOF
# bench/proxy.sh: one listener, one pool, one route.
[proxy]
workers = 1
drain_timeout = "5s"

[[listener]]
address = "127.0.0.1:0"
max_connections = 20000

[pool.app]
members = [{ address = "$BACKEND" }]

[[route]]
pool = "app"
EOF
}
# The reload target: the paths the load uses, then ROUTES - 3 exact paths /r/N (ROUTES routes in all), no catch-all.
big_config() {
    cat <<EOF
# bench/proxy.sh: one listener, one pool, $ROUTES routes.
[proxy]
workers = 1
drain_timeout = "5s"

[[listener]]
address = "127.0.0.1:0"
max_connections = 20000

[pool.app]
members = [{ address = "$BACKEND" }]

[[route]]
path = "/"
pool = "app"

[[route]]
path = "/echo"
pool = "app"

[[route]]
path = "/slow"
pool = "app"
EOF
    awk -v n="$((ROUTES - 3))" 'BEGIN { for (i = 0; i < n; i++) printf "\n[[route]]\npath = \"/r/%d\"\npool = \"app\"\n", i }'
}
small_config >"$OUT/baton-small.toml"
big_config >"$OUT/baton-big.toml"
CONFIG=$TMP/baton.toml
cp "$OUT/baton-small.toml" "$CONFIG"
"$BATON" check "$OUT/baton-big.toml" >"$OUT/check-big.txt" 2>&1 || die "baton check refused the big config: $OUT/check-big.txt"

log "starting baton serve"
start baton "$BATON" serve --config "$CONFIG"
BATON_PID=$PID BATON_REAL=$REAL
BATON_ADDR=$(listening baton "$BATON_PID")
wait_line "$OUT/baton.stderr" ': ready$' 30 "$BATON_PID"

log "starting nginx"
NGINX_PORT=$(free_port)
mkdir -p "$TMP/nginx"
cat >"$OUT/nginx.conf" <<EOF
# bench/proxy.sh: one worker, keep-alive to the upstream, no access log.
$(nginx_main nginx)
worker_rlimit_nofile $FD_LIMIT;
events {
    worker_connections 20480;
}
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
start nginx nginx -p "$TMP/nginx/" -c "$PWD/$OUT/nginx.conf" -e "$PWD/$OUT/nginx-error.log"
NGINX_PID=$PID NGINX_REAL=$REAL
NGINX_ADDR=127.0.0.1:$NGINX_PORT
wait_port "$NGINX_PORT" 30 "$NGINX_PID"

log "starting HAProxy"
HAPROXY_PORT=$(free_port)
HAPROXY_MAXCONN=$((IDLE_CONNS + 5000))
cat >"$OUT/haproxy.cfg" <<EOF
# bench/proxy.sh: one thread, keep-alive on both sides, connection reuse, no logging.
global
    nbthread 1
    # HAProxy reserves two fds per connection and refuses to start when the open-file limit ($FD_LIMIT here)
    # is below that; idle clients need one each, so a warning is enough.
    no strict-limits
    maxconn $HAPROXY_MAXCONN

defaults
    mode http
    option http-keep-alive
    http-reuse always
    maxconn $HAPROXY_MAXCONN
    timeout connect 2s
    timeout client 60s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    # The forwarding headers baton always sets, so that every proxy does the same work.
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Request-Id %[uuid]
    default_backend be

backend be
    server hello $BACKEND
EOF
start haproxy haproxy -db -f "$OUT/haproxy.cfg"
HAPROXY_PID=$PID HAPROXY_REAL=$REAL
HAPROXY_ADDR=127.0.0.1:$HAPROXY_PORT
wait_port "$HAPROXY_PORT" 30 "$HAPROXY_PID"

TARGETS=(direct baton nginx haproxy)
declare -A ADDR=([direct]=$BACKEND [baton]=$BATON_ADDR [nginx]=$NGINX_ADDR [haproxy]=$HAPROXY_ADDR)
declare -A REALPID=([direct]=$HELLO_REAL [baton]=$BATON_REAL [nginx]=$NGINX_REAL [haproxy]=$HAPROXY_REAL)
declare -A LABEL=([direct]="hello (direct)" [baton]=baton [nginx]=nginx [haproxy]=HAProxy)
PROXIES=(baton nginx haproxy)

# Every target must echo a 1 KiB body unchanged.
CHECK_FAILED=0
body=$(printf '0123456789abcdef%.0s' $(seq 64))
for t in "${TARGETS[@]}"; do
    got=$(curl -sS --max-time 5 -H 'Content-Type: application/octet-stream' --data-binary "$body" \
        "http://${ADDR[$t]}/echo" 2>&1 || true)
    if [[ $got != "$body" ]]; then
        log "check failed: ${LABEL[$t]} did not echo the body: ${got:0:200}"
        CHECK_FAILED=1
    fi
done
((CHECK_FAILED == 0)) || die "a target does not echo: see above and $OUT/"

declare -A RSS_START RSS_AFTER_WRK RSS_CONNS RSS_CLOSED CONNS_RESULT
sleep 1
for p in "${PROXIES[@]}"; do RSS_START[$p]=$(rss_kib "${REALPID[$p]}"); done
log "idle RSS after start: baton ${RSS_START[baton]} KiB, nginx ${RSS_START[nginx]} KiB, HAProxy ${RSS_START[haproxy]} KiB"

# --- 1. throughput -------------------------------------------------------------------------------------------------

log "warming up (2 s each)"
for t in "${TARGETS[@]}"; do run_wrk "$OUT/wrk-warmup-$t.txt" "${ADDR[$t]}" 2s; done

declare -A RPS P99 CPU_US CPU_PCT OTHER CPU_USER CPU_SYS
ROWS=""
WRK_ERRORS=0
SHORT_BODIES=""
for round in $(seq "$ROUNDS"); do
    order=()
    for i in 0 1 2 3; do order+=("${TARGETS[$(((i + round - 1) % 4))]}"); done
    for t in "${order[@]}"; do
        read -r cu0 cs0 < <(cpu_split "${REALPID[$t]}")
        c0=$((cu0 + cs0)) h0=$(cpu_ticks "$HELLO_REAL") w0=$(own_children) m0=$(machine_busy)
        t0=$(date +%s.%N)
        run_wrk "$OUT/wrk-$t-$round.txt" "${ADDR[$t]}" "$WRK_DURATION" || die "wrk failed against ${LABEL[$t]}; see $OUT/wrk-$t-$round.txt"
        t1=$(date +%s.%N)
        read -r cu1 cs1 < <(cpu_split "${REALPID[$t]}")
        c1=$((cu1 + cs1)) h1=$(cpu_ticks "$HELLO_REAL") w1=$(own_children) m1=$(machine_busy)
        read -r rps p99 errs reqs bpr < <(parse_wrk "$OUT/wrk-$t-$round.txt")
        us=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", n ? c / hz * 1e6 / n : 0 }')
        us_user=$(awk -v c=$((cu1 - cu0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", n ? c / hz * 1e6 / n : 0 }')
        us_sys=$(awk -v c=$((cs1 - cs0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", n ? c / hz * 1e6 / n : 0 }')
        pct=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", c / hz / (b - a) * 100 }')
        # CPU used by anything but wrk, the target and the backend (other people's work), in % of one core.
        ours=$((c1 - c0 + w1 - w0))
        [[ $t == direct ]] || ours=$((ours + h1 - h0))
        other=$(awk -v m=$((m1 - m0)) -v o="$ours" -v hz="$HZ" -v a="$t0" -v b="$t1" \
            'BEGIN { v = (m - o) / hz / (b - a) * 100; printf "%.0f", v < 0 ? 0 : v }')
        RPS[$t]+="$rps " P99[$t]+="$p99 " CPU_US[$t]+="$us " CPU_PCT[$t]+="$pct " OTHER[$t]+="$other "
        CPU_USER[$t]+="$us_user " CPU_SYS[$t]+="$us_sys "
        WRK_ERRORS=$((WRK_ERRORS + errs))
        ((bpr >= 1024)) || SHORT_BODIES+="${LABEL[$t]} round $round ($bpr B/request) "
        log "round $round: ${LABEL[$t]}: $rps req/s, p99 $p99 ms, errors $errs, ${bpr} B read/request, CPU $us µs/request ($us_user user + $us_sys system, $pct % of a core), other work on the machine ${other} %"
        ROWS+="| $round | ${LABEL[$t]} | $rps | $p99 ms | $us µs = $us_user + $us_sys ($pct %) | $other % |"$'\n'
    done
done
LOAD_AFTER_WRK=$(loadavg)

declare -A MED_RPS MED_P99 MED_CPU MED_USER MED_SYS
for t in "${TARGETS[@]}"; do
    # shellcheck disable=SC2086
    MED_RPS[$t]=$(printf '%s\n' ${RPS[$t]} | median)
    # shellcheck disable=SC2086
    MED_P99[$t]=$(printf '%s\n' ${P99[$t]} | median)
    # shellcheck disable=SC2086
    MED_CPU[$t]=$(printf '%s\n' ${CPU_US[$t]} | median)
    # shellcheck disable=SC2086
    MED_USER[$t]=$(printf '%s\n' ${CPU_USER[$t]} | median)
    # shellcheck disable=SC2086
    MED_SYS[$t]=$(printf '%s\n' ${CPU_SYS[$t]} | median)
done
ALL_OTHER=$(for t in "${TARGETS[@]}"; do echo ${OTHER[$t]}; done | tr ' ' '\n' | grep -v '^$' || true)
OTHER_MED=$(echo "$ALL_OTHER" | median)
OTHER_MAX=$(echo "$ALL_OTHER" | sort -g | tail -1)
OTHER_SUMMARY="median $OTHER_MED %, max $OTHER_MAX % of a core over the runs"
R_NGINX=$(ratio "${MED_RPS[baton]}" "${MED_RPS[nginx]}")
R_HAPROXY=$(ratio "${MED_RPS[baton]}" "${MED_RPS[haproxy]}")
P_NGINX=$(ratio "${MED_P99[baton]}" "${MED_P99[nginx]}")
P_HAPROXY=$(ratio "${MED_P99[baton]}" "${MED_P99[haproxy]}")
log "medians: direct ${MED_RPS[direct]}, baton ${MED_RPS[baton]}, nginx ${MED_RPS[nginx]}, HAProxy ${MED_RPS[haproxy]} req/s; baton/nginx $R_NGINX, baton/HAProxy $R_HAPROXY"

sleep 2
for p in "${PROXIES[@]}"; do RSS_AFTER_WRK[$p]=$(rss_kib "${REALPID[$p]}"); done

# --- 2. memory with IDLE_CONNS idle keep-alive client connections ---------------------------------------------------

CONNS_FAILED=0
for p in "${PROXIES[@]}"; do
    log "memory: $IDLE_CONNS idle keep-alive connections to ${LABEL[$p]}"
    file="$OUT/conns-$p.txt"
    timeout -k 5 150 python3 "$HERE/conns.py" "${ADDR[$p]%:*}" "${ADDR[$p]##*:}" --count "$IDLE_CONNS" --hold 10 \
        --open-timeout 90 >"$file" 2>&1 &
    cpid=$!
    PIDS+=("$cpid")
    wait_conns_ready "$file" "$cpid" 120
    sleep 3
    RSS_CONNS[$p]=$(rss_kib "${REALPID[$p]}")
    wait "$cpid" || CONNS_FAILED=1
    CONNS_RESULT[$p]="$(grep '^ready ' "$file" | sed 's/^ready //'); $(grep '^done ' "$file" | sed 's/^done //')"
    sleep 3
    RSS_CLOSED[$p]=$(rss_kib "${REALPID[$p]}")
    log "${LABEL[$p]}: RSS ${RSS_CONNS[$p]} KiB with the connections (${CONNS_RESULT[$p]}), ${RSS_CLOSED[$p]} KiB after they closed"
done

# --- 3. reload of ROUTES routes under load ------------------------------------------------------------------------

t0=$(date +%s%N)
"$BATON" check "$OUT/baton-big.toml" >/dev/null
CHECK_BIG_MS=$((($(date +%s%N) - t0) / 1000000))

reloaded_count() { grep -c 'config reloaded' "$OUT/baton.stderr" || true; }
# reload FILE: puts FILE in place, sends SIGHUP, waits for the `config reloaded` line; prints its duration_ms and
# its parse_ms (reading and parsing the file, on a blocking thread).
reload_into() {
    local before deadline line
    before=$(reloaded_count)
    cp "$1" "$CONFIG.new"
    mv "$CONFIG.new" "$CONFIG"
    kill -HUP "$BATON_REAL"
    deadline=$((SECONDS + 60))
    until (($(reloaded_count) > before)); do
        grep -q 'config refused' "$OUT/baton.stderr" && die "baton refused a config; see $OUT/baton.stderr"
        ((SECONDS < deadline)) || die "no 'config reloaded' line within 60 s; see $OUT/baton.stderr"
        sleep 0.02
    done
    line=$(grep 'config reloaded' "$OUT/baton.stderr" | tail -1)
    local total parse
    total=$(echo "$line" | grep -o 'duration_ms=[0-9.]*' | sed 's/duration_ms=//') || die "no duration_ms in: $line"
    parse=$(echo "$line" | grep -o 'parse_ms=[0-9.]*' | sed 's/parse_ms=//') || die "no parse_ms in: $line"
    echo "$total $parse"
}
# has_instance PATH: whether baton's answer to GET PATH came from hello (routed) rather than baton's own 404.
routed() { curl -sS --max-time 5 -o /dev/null -D - "http://$BATON_ADDR$1" | grep -qi '^x-instance:'; }

UP_MS=() DOWN_MS=() RELOAD_ROWS="" RELOAD_FAILURES=0 ROUTING_OK=1 RELOAD_REQS=0 LOAD_MAX_MS=() RSS_BIG=""
for i in $(seq "$RELOADS"); do
    json="$OUT/reload-load-$i.json"
    timeout -k 5 60 "$LOADGEN" --target "$BATON_ADDR" --duration 8s --json --keepalive 2 --fresh 1 --post 1 \
        --slow 0 --pace 1ms >"$json" 2>"$OUT/reload-load-$i.stderr" &
    lpid=$!
    PIDS+=("$lpid")
    sleep 2
    read -r up up_parse < <(reload_into "$OUT/baton-big.toml")
    routed "/r/$((ROUTES - 4))" || { ROUTING_OK=0; log "after the reload into $ROUTES routes, /r/$((ROUTES - 4)) was not routed"; }
    ! routed /not-a-route || { ROUTING_OK=0; log "after the reload into $ROUTES routes, /not-a-route was routed"; }
    [[ -n $RSS_BIG ]] || RSS_BIG=$(rss_kib "$BATON_REAL")
    sleep 2
    read -r down _ < <(reload_into "$OUT/baton-small.toml")
    routed /not-a-route || { ROUTING_OK=0; log "after the reload back into one route, /not-a-route was not routed"; }
    wait "$lpid" || true
    read -r reqs fails p99 maxl < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency"]["steady"]
print(r["requests"], r["failures"], l["p99_us"] / 1000, l["max_us"] / 1000)' "$json") ||
        die "could not read baton-load's report $json (stderr: $OUT/reload-load-$i.stderr)"
    UP_MS+=("$up") DOWN_MS+=("$down") LOAD_MAX_MS+=("$maxl")
    RELOAD_FAILURES=$((RELOAD_FAILURES + fails)) RELOAD_REQS=$((RELOAD_REQS + reqs))
    log "reload $i: 1 → $ROUTES routes ${up} ms (parsing ${up_parse} ms), back ${down} ms; load: $reqs requests, $fails failed, p99 ${p99} ms, max ${maxl} ms"
    RELOAD_ROWS+="| $i | $(printf '%.1f' "$up") ms | $(printf '%.1f' "$up_parse") ms | $(printf '%.1f' "$down") ms | $reqs | $fails | $(printf '%.2f' "$p99") ms | $(printf '%.1f' "$maxl") ms |"$'\n'
done
UP_MED=$(printf '%s\n' "${UP_MS[@]}" | median)
UP_MAX=$(printf '%s\n' "${UP_MS[@]}" | sort -g | tail -1)
DOWN_MED=$(printf '%s\n' "${DOWN_MS[@]}" | median)
DOWN_MAX=$(printf '%s\n' "${DOWN_MS[@]}" | sort -g | tail -1)
LOAD_MAX=$(printf '%s\n' "${LOAD_MAX_MS[@]}" | sort -g | tail -1)
RSS_END_BATON=$(rss_kib "$BATON_REAL")

# Where a reload's time goes, stage by stage, in one process without load (the same config as the reloads).
log "the stages of a reload of $ROUTES routes (reload_stages)"
timeout -k 5 300 "$STAGES" --routes "$ROUTES" --rounds 20 >"$OUT/reload-stages.txt" 2>&1 ||
    die "reload_stages failed: $OUT/reload-stages.txt"
LOAD_END=$(loadavg)

# --- optional: a CPU profile of baton under the wrk load (after every measurement) ---------------------------------

PROFILE_NOTE=""
if [[ $PROFILE == 1 ]]; then
    if command -v perf >/dev/null; then
        log "profiling baton under wrk (perf record, 8 s)"
        run_wrk "$OUT/wrk-profile.txt" "$BATON_ADDR" 10s &
        wpid=$!
        sleep 1
        if timeout -k 5 30 perf record -F 999 -g -o "$OUT/perf-baton.data" -p "$BATON_REAL" -- sleep 8 \
            >/dev/null 2>"$OUT/perf-record.stderr"; then
            perf report -i "$OUT/perf-baton.data" --stdio --no-children --percent-limit 0.5 \
                >"$OUT/perf-baton.txt" 2>/dev/null || true
            perf report -i "$OUT/perf-baton.data" --stdio --no-children --sort dso -g none \
                >"$OUT/perf-baton-dso.txt" 2>/dev/null || true
            PROFILE_NOTE="A perf profile of baton under the same wrk load is in \`$OUT/perf-baton.txt\` (by symbol) and \`$OUT/perf-baton-dso.txt\` (by library)."
        else
            log "perf record failed: $OUT/perf-record.stderr"
        fi
        wait "$wpid" || true
    else
        log "PROFILE=1 but perf is not installed (apt-get install linux-perf)"
    fi
fi

stop "$BATON_PID"
stop "$NGINX_PID"
stop "$HAPROXY_PID"
stop "$HELLO_PID"

# --- the section in docs/BENCHMARKS.md -------------------------------------------------------------------------------

per_conn() { awk -v a="$1" -v b="$2" -v n="$IDLE_CONNS" 'BEGIN { printf "%.1f", (a - b) / n }'; }
behind() { awk -v r="$1" 'BEGIN { exit !(r != "n/a" && r < 1) }'; }
above() { awk -v r="$1" 'BEGIN { exit !(r != "n/a" && r > 1) }'; }
behind "$R_NGINX" && note "**baton's throughput is behind nginx's** (ratio $R_NGINX) in this run."
behind "$R_HAPROXY" && note "**baton's throughput is behind HAProxy's** (ratio $R_HAPROXY) in this run."
above "$P_NGINX" && note "**baton's p99 is higher than nginx's** (${MED_P99[baton]} ms vs ${MED_P99[nginx]} ms)."
above "$P_HAPROXY" && note "**baton's p99 is higher than HAProxy's** (${MED_P99[baton]} ms vs ${MED_P99[haproxy]} ms)."
((RSS_START[baton] > RSS_START[nginx])) &&
    note "**baton's idle memory is above nginx's** ($(mib "${RSS_START[baton]}") MiB vs $(mib "${RSS_START[nginx]}") MiB after start)."
((RSS_CONNS[baton] > RSS_CONNS[nginx])) &&
    note "**With $IDLE_CONNS idle connections baton uses $(ratio "${RSS_CONNS[baton]}" "${RSS_CONNS[nginx]}") times nginx's memory** ($(mib "${RSS_CONNS[baton]}") MiB vs $(mib "${RSS_CONNS[nginx]}") MiB; $(per_conn "${RSS_CONNS[baton]}" "${RSS_AFTER_WRK[baton]}") KiB vs $(per_conn "${RSS_CONNS[nginx]}" "${RSS_AFTER_WRK[nginx]}") KiB per connection)."
awk -v c="${RSS_CLOSED[baton]}" -v w="${RSS_AFTER_WRK[baton]}" -v h="${RSS_CONNS[baton]}" 'BEGIN { exit !(h - w > 0 && c - w > (h - w) / 2) }' &&
    note "**baton keeps most of that memory after the connections closed** ($(mib "${RSS_CLOSED[baton]}") MiB, against $(mib "${RSS_AFTER_WRK[baton]}") MiB before they opened)."
awk -v o="${OTHER_MAX:-0}" 'BEGIN { exit !(o > 20) }' &&
    note "Other work used up to $OTHER_MAX % of a core during some throughput runs (median $OTHER_MED %): compare the rounds before reading much into small differences."
awk -v m="$UP_MED" 'BEGIN { exit !(m > 50) }' &&
    note "**The reload into $ROUTES routes takes longer than the 50 ms target** (median $(printf '%.1f' "$UP_MED") ms)."
((RELOAD_FAILURES > 0)) && note "**$RELOAD_FAILURES requests failed during the reloads** (see \`$OUT/reload-load-*.json\`); this is a bug, not noise."
((ROUTING_OK == 1)) || note "**Routing after a reload was not as configured** (see the run's stderr)."
((CONNS_FAILED == 0)) || note "Not every one of the $IDLE_CONNS idle connections was opened, answered and held (see \`$OUT/conns-*.txt\`)."
((WRK_ERRORS == 0)) || note "wrk counted $WRK_ERRORS socket errors or non-2xx responses (see \`$OUT/wrk-*.txt\`)."
[[ -z $SHORT_BODIES ]] || note "wrk read less than 1 KiB per request from: $SHORT_BODIES— the echo did not come back whole."
note_if_busy
[[ -z $PROFILE_NOTE ]] || note "$PROFILE_NOTE"

NGINX_V=$(nginx -v 2>&1 | sed 's/^nginx version: nginx\///')
HAPROXY_V=$(haproxy -v 2>&1 | head -1 | awk '{ print $3 }')
WRK_V=$(wrk -v 2>&1 | head -1 | awk '{ print $2 }' || true)
rssrow() { echo "| $1 | $(mib "$2") MiB | $(mib "$3") MiB | $(mib "$4") MiB |"; }

SECTION="$OUT/section.md"
{
    echo "$BEGIN"
    echo "## \`baton serve\` against nginx and HAProxy: throughput, memory, reload"
    echo
    written_by
    echo "$(machine_line); load average $LOAD_BEFORE_WAIT when the script"
    echo "got the benchmark lock, $LOAD_START when measuring started (after waiting ${waited} s for ≤ $QUIET_LOAD), $LOAD_AFTER_WRK after"
    echo "the throughput runs, $LOAD_END at the end. nginx $NGINX_V, HAProxy $HAPROXY_V, wrk $WRK_V (Debian's packages)."
    echo "Nothing is pinned: the load generator, the proxy and the backend share the same cores."
    echo
    echo "Command: \`ROUNDS=$ROUNDS WRK_DURATION=$WRK_DURATION WRK_CONNECTIONS=$WRK_CONNECTIONS IDLE_CONNS=$IDLE_CONNS ROUTES=$ROUTES RELOADS=$RELOADS PROFILE=$PROFILE bench/proxy.sh\`"
    echo "(defaults: 3, 10s, 64, 10000, 10000, 5, 0; with \`PROFILE=1\` a perf profile is taken after every measurement)."
    echo
    echo "Setup: one backend, \`target/release/hello --listen 127.0.0.1:0\`, which echoes \`POST /echo\`. In front of it,"
    echo "each with one worker thread and keep-alive connections to the backend (configs in \`$OUT/\`):"
    echo
    echo "- baton: \`target/release/baton serve --config baton.toml\` (\`[proxy] workers = 1\`: a single-threaded runtime; one listener with"
    echo "  \`max_connections = 20000\`, one pool, one catch-all route; otherwise defaults);"
    echo "- nginx: \`nginx -c nginx.conf\` with \`worker_processes 1; daemon off; master_process off;\`, \`upstream\` with"
    echo "  \`keepalive 64\`, \`proxy_http_version 1.1\`, \`proxy_set_header Connection \"\"\`, \`access_log off\`,"
    echo "  \`keepalive_requests 1000000\` on both sides, \`worker_connections 20480\`;"
    echo "- HAProxy: \`haproxy -db -f haproxy.cfg\` with \`nbthread 1\`, \`mode http\`, \`option http-keep-alive\`,"
    echo "  \`http-reuse always\`, no logging."
    echo
    echo "baton always sets \`X-Forwarded-For\`, \`X-Forwarded-Proto\`, \`X-Forwarded-Host\` and a generated \`X-Request-Id\`"
    echo "on the way upstream; nginx and HAProxy are configured to do the same, so all three do the same work."
    echo
    echo "### Throughput and latency"
    echo
    echo "\`wrk -t1 -c$WRK_CONNECTIONS -d$WRK_DURATION --latency -s bench/proxy/post1k.lua http://ADDR/echo\`: keep-alive"
    echo "\`POST /echo\` with a 1 KiB body, echoed back (1 KiB each way). $ROUNDS round(s); the order of the four targets"
    echo "rotates from round to round, after a 2 s warm-up of each. \`wrk -t1\` is one thread, so the load generator"
    echo "takes up to one of the $(nproc) cores, and the proxy and the backend share the rest. CPU is the CPU time the"
    echo "target process itself used (user + system, from \`/proc/PID/stat\`) per request, and as a share of one core"
    echo "during the run; for the proxies it excludes the backend's. \"Other work\" (in the table of every run) is the CPU"
    echo "time the machine spent on anything but wrk, the target and the backend during the run (\`/proc/stat\` minus"
    echo "those three), in % of one core: other people's builds and benchmarks ($OTHER_SUMMARY)."
    echo
    echo "| target | req/s (median) | p99 (median) | CPU per request (median) | of which user / system | req/s in each round |"
    echo "|---|---:|---:|---:|---:|---|"
    for t in "${TARGETS[@]}"; do
        # shellcheck disable=SC2086
        echo "| ${LABEL[$t]} | **${MED_RPS[$t]}** | ${MED_P99[$t]} ms | ${MED_CPU[$t]} µs | ${MED_USER[$t]} / ${MED_SYS[$t]} µs | $(echo ${RPS[$t]} | sed 's/ /, /g') |"
    done
    echo
    echo "**baton/nginx: $R_NGINX** in requests/s (p99 ratio $P_NGINX); **baton/HAProxy: $R_HAPROXY** (p99 ratio $P_HAPROXY)."
    echo "CPU per request, the figure that other work on the machine disturbs least: baton/nginx"
    echo "$(ratio "${MED_CPU[baton]}" "${MED_CPU[nginx]}"), baton/HAProxy $(ratio "${MED_CPU[baton]}" "${MED_CPU[haproxy]}") (user time alone: $(ratio "${MED_USER[baton]}" "${MED_USER[nginx]}") and $(ratio "${MED_USER[baton]}" "${MED_USER[haproxy]}"))."
    echo "Rounds ranged $(spread ${RPS[baton]}) req/s for baton, $(spread ${RPS[nginx]}) for nginx,"
    echo "$(spread ${RPS[haproxy]}) for HAProxy and $(spread ${RPS[direct]}) direct."
    echo
    echo "<details><summary>Every run, in order</summary>"
    echo
    echo "| round | target | req/s | p99 | CPU per request = user + system (share of a core) | other work on the machine |"
    echo "|---|---|---:|---:|---:|---:|"
    printf '%s' "$ROWS"
    echo
    echo "</details>"
    echo
    echo "### Memory"
    echo
    echo "VmRSS from \`/proc/PID/status\` (nginx runs without a master, HAProxy as one process; children would be added)."
    echo "\"With $IDLE_CONNS connections\": \`bench/proxy/conns.py\` opens $IDLE_CONNS TCP connections to the proxy, sends one"
    echo "\`GET /\` on each and reads the answer, then holds them all open without sending anything; RSS is read 3 s"
    echo "after the last one was answered, and again 3 s after the client closed them all."
    echo
    echo "| | baton | nginx | HAProxy |"
    echo "|---|---:|---:|---:|"
    rssrow "idle, after start and one request" "${RSS_START[baton]}" "${RSS_START[nginx]}" "${RSS_START[haproxy]}"
    rssrow "idle, after the throughput runs" "${RSS_AFTER_WRK[baton]}" "${RSS_AFTER_WRK[nginx]}" "${RSS_AFTER_WRK[haproxy]}"
    rssrow "**with $IDLE_CONNS idle keep-alive connections**" "${RSS_CONNS[baton]}" "${RSS_CONNS[nginx]}" "${RSS_CONNS[haproxy]}"
    echo "| per connection (vs. after the throughput runs) | $(per_conn "${RSS_CONNS[baton]}" "${RSS_AFTER_WRK[baton]}") KiB | $(per_conn "${RSS_CONNS[nginx]}" "${RSS_AFTER_WRK[nginx]}") KiB | $(per_conn "${RSS_CONNS[haproxy]}" "${RSS_AFTER_WRK[haproxy]}") KiB |"
    rssrow "after those connections closed" "${RSS_CLOSED[baton]}" "${RSS_CLOSED[nginx]}" "${RSS_CLOSED[haproxy]}"
    echo
    echo "The client's own account (\`open\`: answered and held; \`closed_by_peer\`: closed by the proxy while held):"
    echo "baton: ${CONNS_RESULT[baton]}; nginx: ${CONNS_RESULT[nginx]}; HAProxy: ${CONNS_RESULT[haproxy]}."
    echo
    echo "### Reloading $ROUTES routes"
    echo
    echo "baton starts with the one-route config; the script puts a config with $ROUTES routes in its place (\`path\` ="
    echo "\`/\`, \`/echo\`, \`/slow\` and $((ROUTES - 3)) exact paths \`/r/N\`, all to the same pool; no catch-all) and sends"
    echo "SIGHUP, then puts the one-route config back and sends SIGHUP again; $RELOADS cycle(s). The duration is baton's own"
    echo "\`config reloaded ... duration_ms=\` (from the signal being handled to the new snapshot being swapped in: reading"
    echo "and validating the file, building the router); \`parse_ms=\` on the same line is its first part, reading and parsing the"
    echo "file on a blocking thread (the thread hop included). After each reload the script checks that \`/r/$((ROUTES - 4))\`"
    echo "reaches the backend and \`/not-a-route\` gets baton's own 404 (and the reverse after the reload back)."
    echo "Each cycle runs under \`target/release/baton-load --target ADDR --duration 8s --json --keepalive 2 --fresh 1"
    echo "--post 1 --slow 0 --pace 1ms\`, which counts every failed request; its max latency shows any stall of the"
    echo "single-threaded data plane during a reload. For comparison, \`baton check\` of the $ROUTES-route file takes"
    echo "$CHECK_BIG_MS ms as a process of its own (start-up included)."
    echo
    echo "| cycle | 1 → $ROUTES routes | of which reading and parsing | $ROUTES → 1 route | requests during the cycle | failed | p99 | max latency |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s' "$RELOAD_ROWS"
    echo
    echo "**Reload into $ROUTES routes: median $(printf '%.1f' "$UP_MED") ms, max $(printf '%.1f' "$UP_MAX") ms** (back to one"
    echo "route: median $(printf '%.1f' "$DOWN_MED") ms, max $(printf '%.1f' "$DOWN_MAX") ms); **$RELOAD_FAILURES failed requests** of"
    echo "$RELOAD_REQS; slowest request $(printf '%.1f' "$LOAD_MAX") ms. baton's RSS with the $ROUTES-route config:"
    echo "$(mib "$RSS_BIG") MiB; after the last reload back to one route: $(mib "$RSS_END_BATON") MiB (both include the memory"
    echo "baton kept from the connection test above)."
    echo
    echo "Where that time goes: \`target/release/reload_stages --routes $ROUTES --rounds 20\` builds the same config and"
    echo "times each stage of a reload in one process with no load (parsing and validating the text; the deploy engine's"
    echo "copies of the config; the proxy's new snapshot with its router, swapped in), median and max of 20 rounds:"
    echo
    echo '```text'
    cat "$OUT/reload-stages.txt"
    echo '```'
    echo
    notes_section
    echo "$END"
} >"$SECTION"

# The section replaces its previous version, or is appended; the table of sections gets its row once.
ROW='| [`baton serve` against nginx and HAProxy: throughput, memory, reload](#baton-serve-against-nginx-and-haproxy-throughput-memory-reload) | `bench/proxy.sh` | requests/s, p99 and CPU per request of `baton serve` against nginx and HAProxy (one worker each, same backend, `wrk` with a 1 KiB keep-alive POST) and the backend alone; RSS idle and with 10,000 idle keep-alive client connections; time to reload a 10,000-route config under load, with the failure count |'
write_section "$SECTION" "$ROW"

((RELOAD_FAILURES == 0 && ROUTING_OK == 1)) || exit 1
exit 0
