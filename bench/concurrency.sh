#!/usr/bin/env bash
# Benchmarks `baton serve` against nginx at high concurrency on ONE upstream member, with baton's default config, and
# records the figures in docs/BENCHMARKS.md (between `<!-- concurrency:begin -->` and `<!-- concurrency:end -->`):
#
#  1. HTTP/1.1: `wrk -t2 -c1000 -d10s --latency` (GET /, 1,000 keep-alive connections: four times baton's default
#     `max_connections_per_member` of 256, so most requests wait in the pool's queue);
#  2. HTTP/2: `h2load -c32 -m10 -t2 -D10` (32 connections × 10 concurrent streams, cleartext h2 with prior knowledge,
#     which baton's front door and nginx's `listen ... http2` both speak); p99 from h2load's per-request log.
#
# Both in front of the same single `hello`; ROUNDS rounds with the sides alternated. Reports per side the non-2xx
# responses and socket errors (must be 0 for baton: the script exits 1 otherwise), the median requests/s and p99 with
# their ranges, and baton's queue refusals (its "requests refused with 503" log lines).
#
# nginx runs with `worker_processes auto` and keep-alive upstream connections (`keepalive 64`); its out-of-the-box
# `worker_connections 512` would refuse half of the 1,000 clients, so it gets 4096 (baton's default listener
# `max_connections` is 10,000: baton needs no such change).
#
# Usage: bench/concurrency.sh   (ROUNDS=3 DURATION=10 CONNECTIONS=1000 H2_CONNECTIONS=32 H2_STREAMS=10;
#                                QUIET_LOAD=0.60 QUIET_WAIT=600; BATON_BIN=DIR with BENCH_COMMIT=TEXT measures the
#                                binaries in DIR instead of building them)
# Needs root to install wrk, h2load (nghttp2-client) and nginx from Debian's packages when they are missing.
# Measurements run under `flock /tmp/baton-bench.lock` so that benchmarks never overlap.
# Raw outputs (wrk and h2load reports, configs, logs) are kept in target/bench/concurrency/.
set -euo pipefail
BENCH=concurrency
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-1000}
H2_CONNECTIONS=${H2_CONNECTIONS:-32}
H2_STREAMS=${H2_STREAMS:-10}
QUIET_WAIT=${QUIET_WAIT:-600}

if ! bench_locked; then
    bench_tools wrk h2load:nghttp2-client nginx curl
    bench_binaries -p baton -p hello -- baton hello
    bench_lock "$@"
fi

# --- under the lock ------------------------------------------------------------------------------------------------

bench_start
BATON=$BIN/baton
HELLO=$BIN/hello
for b in "$BATON" "$HELLO"; do [[ -x $b ]] || die "$b is missing: cargo build --release"; done
FD_LIMIT=$(ulimit -n)
((FD_LIMIT > 3 * CONNECTIONS)) || die "open-file limit $FD_LIMIT is too low for $CONNECTIONS connections"

wait_quiet

log "starting hello (the one member)"
start hello "$HELLO" --listen 127.0.0.1:0 --app-version bench
HELLO_PID=$PID
BACKEND=$(listening hello "$HELLO_PID")

# baton: the defaults everywhere; one listener, one pool of one member, one route.
cat >"$OUT/baton.toml" <<EOF
# bench/concurrency.sh: baton's defaults (max_connections_per_member 256, queue_length 10000, queue_timeout 30s).
[[listener]]
address = "127.0.0.1:0"

[pool.app]
members = [{ address = "$BACKEND" }]

[[route]]
pool = "app"
EOF
log "starting baton serve"
start baton "$BATON" serve --config "$OUT/baton.toml"
BATON_PID=$PID
BATON_ADDR=$(listening baton "$BATON_PID")
wait_line "$OUT/baton.stderr" ': ready$' 30 "$BATON_PID"

log "starting nginx"
NGINX_PORT=$(free_port)
NGINX_H2_PORT=$(free_port)
mkdir -p "$TMP/nginx"
cat >"$OUT/nginx.conf" <<EOF
# bench/concurrency.sh: workers per core, keep-alive to the upstream, no access log; h2c on a second port.
worker_processes auto;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $PWD/$OUT/nginx-error.log warn;
worker_rlimit_nofile $FD_LIMIT;
events {
    worker_connections 4096;
}
http {
    access_log off;
$(nginx_http_common)
$(nginx_upstream_backend)
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        listen 127.0.0.1:$NGINX_H2_PORT http2 backlog=4096;
$(nginx_proxy_location)
    }
}
EOF
start nginx nginx -p "$TMP/nginx/" -c "$PWD/$OUT/nginx.conf" -e "$PWD/$OUT/nginx-error.log"
NGINX_PID=$PID
wait_port "$NGINX_PORT" 30 "$NGINX_PID"
wait_port "$NGINX_H2_PORT" 30 "$NGINX_PID"

declare -A H1=([baton]=$BATON_ADDR [nginx]=127.0.0.1:$NGINX_PORT)
declare -A H2=([baton]=$BATON_ADDR [nginx]=127.0.0.1:$NGINX_H2_PORT)
declare -A LABEL=([baton]=baton [nginx]=nginx)
SIDES=(baton nginx)

# Both sides must answer over HTTP/1.1 and over h2c.
for s in "${SIDES[@]}"; do
    curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://${H1[$s]}/" | grep -q '^200$' ||
        die "${LABEL[$s]} does not answer GET / over HTTP/1.1"
    curl -sS --max-time 5 --http2-prior-knowledge -o /dev/null -w '%{http_version} %{http_code}' "http://${H2[$s]}/" |
        grep -q '^2 200$' || die "${LABEL[$s]} does not answer GET / over h2c"
done

# run_wrk FILE ADDR SECONDS
run_wrk() { timeout -k 5 120 wrk -t2 -c"$CONNECTIONS" -d"$3s" --latency "http://$2/" >"$1"; }
# run_h2load FILE ADDR SECONDS: the report in FILE, the per-request log in FILE.log.
run_h2load() {
    timeout -k 5 120 h2load -t2 -c"$H2_CONNECTIONS" -m"$H2_STREAMS" -D"$3" --log-file="$1.log" "http://$2/" >"$1"
}
# parse_h2load FILE: "req/s p99_ms failures requests" (failures: responses other than 2xx, and the requests h2load
# counts as failed, errored or timed out; requests: the ones done).
parse_h2load() {
    local p99
    p99=$(awk '{ print $3 / 1000 }' "$1.log" | sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", v[int(NR * 0.99 + 0.999)]; else print "n/a" }')
    awk -v p99="$p99" '
        /^finished in/ { rps = $4 }
        /^requests:/ { failed = $10 + $12 + $14; done = $6 }
        /^status codes:/ { non2xx = $5 + $7 + $9 }
        END { printf "%.0f %s %d %d\n", rps, p99, failed + non2xx, done }
    ' "$1"
}

log "warming up (2 s each)"
for s in "${SIDES[@]}"; do
    run_wrk "$OUT/wrk-warmup-$s.txt" "${H1[$s]}" 2
    run_h2load "$OUT/h2load-warmup-$s.txt" "${H2[$s]}" 2
done
REFUSED_BEFORE=$(grep -c 'requests refused with 503' "$OUT/baton.stderr" || true)

declare -A RPS P99 RPS2 P992
declare -A ERR=([baton]=0 [nginx]=0) ERR2=([baton]=0 [nginx]=0)
ROWS=""
for round in $(seq "$ROUNDS"); do
    if ((round % 2)); then order=(baton nginx); else order=(nginx baton); fi
    for s in "${order[@]}"; do
        run_wrk "$OUT/wrk-$s-$round.txt" "${H1[$s]}" "$DURATION" || die "wrk failed against ${LABEL[$s]}"
        read -r rps p99 errs reqs _ < <(parse_wrk "$OUT/wrk-$s-$round.txt")
        RPS[$s]+="$rps " P99[$s]+="$p99 "
        ERR[$s]=$((ERR[$s] + errs))
        log "round $round: ${LABEL[$s]} HTTP/1.1 c$CONNECTIONS: $rps req/s, p99 $p99 ms, non-2xx/errors $errs of $reqs"
        ROWS+="| $round | ${LABEL[$s]} | HTTP/1.1, $CONNECTIONS connections | $rps | $p99 ms | $errs of $reqs |"$'\n'
    done
    for s in "${order[@]}"; do
        run_h2load "$OUT/h2load-$s-$round.txt" "${H2[$s]}" "$DURATION" || die "h2load failed against ${LABEL[$s]}"
        read -r rps p99 errs reqs < <(parse_h2load "$OUT/h2load-$s-$round.txt")
        RPS2[$s]+="$rps " P992[$s]+="$p99 "
        ERR2[$s]=$((ERR2[$s] + errs))
        log "round $round: ${LABEL[$s]} h2 ${H2_CONNECTIONS}×$H2_STREAMS: $rps req/s, p99 $p99 ms, non-2xx/errors $errs of $reqs"
        ROWS+="| $round | ${LABEL[$s]} | h2c, $H2_CONNECTIONS × $H2_STREAMS streams | $rps | $p99 ms | $errs of $reqs |"$'\n'
    done
done
REFUSED=$(($(grep -c 'requests refused with 503' "$OUT/baton.stderr" || true) - REFUSED_BEFORE))

# summary SIDE: "median (range)" of req/s and p99 for both protocols, as table cells.
cells() {
    local s=$1
    # shellcheck disable=SC2086
    printf '%s (%s) | %s ms (%s) | %s | %s (%s) | %s ms (%s) | %s' \
        "$(printf '%s\n' ${RPS[$s]} | median)" "$(spread ${RPS[$s]})" \
        "$(printf '%s\n' ${P99[$s]} | median)" "$(spread ${P99[$s]})" "${ERR[$s]}" \
        "$(printf '%s\n' ${RPS2[$s]} | median)" "$(spread ${RPS2[$s]})" \
        "$(printf '%s\n' ${P992[$s]} | median)" "$(spread ${P992[$s]})" "${ERR2[$s]}"
}
# shellcheck disable=SC2086
R_H1=$(ratio "$(printf '%s\n' ${RPS[baton]} | median)" "$(printf '%s\n' ${RPS[nginx]} | median)")
# shellcheck disable=SC2086
R_H2=$(ratio "$(printf '%s\n' ${RPS2[baton]} | median)" "$(printf '%s\n' ${RPS2[nginx]} | median)")

{
    echo "$BEGIN"
    echo "## High concurrency on one member: 1,000 keep-alive clients and h2 32 × 10, baton against nginx"
    echo
    echo "\`bench/concurrency.sh\` (ROUNDS=$ROUNDS DURATION=${DURATION}s), commit $BENCH_COMMIT, $(date -u +%Y-%m-%d)."
    echo "$(machine_line); the machine was shared with other work (helpers compiling and testing), so the figures are"
    echo "noisy: the sides were alternated each round, and medians and ranges are quoted."
    quiet_note
    echo
    echo "One \`hello\` behind each proxy. baton runs its **default config** (one listener, one pool of one member: at most"
    echo "256 requests in flight to the member, the others wait in the pool's queue); nginx runs \`worker_processes auto\`"
    echo "with \`worker_connections 4096\` (its default, 512, would refuse half of the 1,000 clients) and \`keepalive 64\`"
    echo "upstream connections. HTTP/1.1: \`wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency http://ADDR/\`; HTTP/2:"
    echo "\`h2load -t2 -c$H2_CONNECTIONS -m$H2_STREAMS -D$DURATION http://ADDR/\` (cleartext h2 with prior knowledge: baton's front"
    echo "door speaks it on every plain listener, nginx on a \`listen ... http2\` port), p99 from h2load's per-request log."
    echo
    echo "| side | h1 req/s median (range) | h1 p99 median (range) | h1 non-2xx + errors | h2 req/s median (range) | h2 p99 median (range) | h2 non-2xx + errors |"
    echo "|---|---|---|---|---|---|---|"
    echo "| baton | $(cells baton) |"
    echo "| nginx | $(cells nginx) |"
    echo
    echo "baton/nginx requests/s: HTTP/1.1 $R_H1, h2 $R_H2. baton's queue refused $REFUSED times (log lines \"requests"
    echo "refused with 503\" during the measured runs; each line counts a second of refusals)."
    echo
    echo "<details><summary>Every run</summary>"
    echo
    echo "| round | side | load | req/s | p99 | non-2xx + errors |"
    echo "|---|---|---|---|---|---|"
    printf '%s' "$ROWS"
    echo
    echo "</details>"
    echo "$END"
} >"$OUT/section.md"
write_section "$OUT/section.md" "| [High concurrency on one member](#high-concurrency-on-one-member-1000-keep-alive-clients-and-h2-32--10-baton-against-nginx) | \`bench/concurrency.sh\` | 1,000 keep-alive clients and h2 32 × 10 streams on one member with the default config: failures, req/s, p99 against nginx |"

if ((ERR[baton] + ERR2[baton] + REFUSED > 0)); then
    log "baton failed requests: HTTP/1.1 ${ERR[baton]}, h2 ${ERR2[baton]}, queue refusal log lines $REFUSED"
    exit 1
fi
