#!/usr/bin/env bash
# Benchmarks what metrics cost the data plane and records the figures in docs/BENCHMARKS.md (between
# `<!-- metrics:begin -->` and `<!-- metrics:end -->`):
#
#  1. cost of scraping: `wrk -t1 -c64 -d10s --latency GET /` through `baton serve` (one worker thread) to one hello,
#     with and without a scraper fetching `GET /metrics` from the control socket every second, alternating in the
#     same run (ROUNDS rounds, the order swapped every round), and nginx (one worker, same backend) in the same
#     rounds as a reference for the run-to-run noise; median requests/s, p99 and baton's CPU per request of each;
#  2. cardinality: the series of one scrape of that baton, whose config has ROUTES (1,000) routes and MEMBERS (100)
#     pool members, after one request to every route; with the exposition's size and how long a scrape takes.
#
# Usage: bench/metrics.sh   (ROUNDS=4 WRK_DURATION=10s WRK_CONNECTIONS=64 ROUTES=1000 MEMBERS=100; QUIET_LOAD=0.60
#                            QUIET_WAIT=900 wait up to QUIET_WAIT s for the 1-minute load average to drop to
#                            QUIET_LOAD; BATON_BIN=DIR measures the baton and hello binaries in DIR instead of building
#                            them, and then BENCH_COMMIT=TEXT must say what they were built from)
# Needs root to install nginx, wrk and curl from Debian's packages when they are missing (nginx runs in the
# foreground with a config written to a temp dir). Measurements run under `flock /tmp/baton-bench.lock`.
# Raw outputs (wrk reports, the exposition, configs, logs) are kept in target/bench/metrics/.
set -euo pipefail
BENCH=metrics
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-4}
WRK_DURATION=${WRK_DURATION:-10s}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
ROUTES=${ROUTES:-1000}
MEMBERS=${MEMBERS:-100}
QUIET_WAIT=${QUIET_WAIT:-900}
LIFETIME=1800

if ! bench_locked; then
    bench_tools nginx wrk curl python3
    bench_binaries -p baton -p hello -- baton hello
    bench_lock "$@"
fi

# --- under the lock ------------------------------------------------------------------------------------------------

bench_start
BATON=$BIN/baton
HELLO=$BIN/hello
wait_quiet

log "starting hello (backend)"
start hello "$HELLO" --listen 127.0.0.1:0 --app-version bench
HELLO_PID=$PID HELLO_REAL=$REAL
BACKEND=$(listening hello "$HELLO_PID")

# baton: pool `app` (the backend) behind the catch-all route and ROUTES - 1 exact paths /r/N; MEMBERS - 1 more
# members in pools no route uses (addresses nothing listens on; no health checks, so nothing connects to them).
{
    echo "# bench/metrics.sh: $ROUTES routes, $MEMBERS members."
    echo '[proxy]'
    echo 'workers = 1'
    echo
    echo '[[listener]]'
    echo 'address = "127.0.0.1:0"'
    echo
    echo '[pool.app]'
    echo "members = [{ address = \"$BACKEND\" }]"
    for i in $(seq 1 $((MEMBERS - 1))); do
        printf '\n[pool.idle%d]\nmembers = [{ address = "127.0.0.2:%d" }]\n' "$i" $((20000 + i))
    done
    for i in $(seq 1 $((ROUTES - 1))); do
        printf '\n[[route]]\npath = "/r/%d"\npool = "app"\n' "$i"
    done
    printf '\n[[route]]\npool = "app"\n'
} >"$OUT/baton.toml"
CONTROL=$TMP/control.sock
log "starting baton serve ($ROUTES routes, $MEMBERS members)"
start baton "$BATON" serve --config "$OUT/baton.toml" --control "$CONTROL"
BATON_PID=$PID BATON_REAL=$REAL
BATON_ADDR=$(listening baton "$BATON_PID")
wait_line "$OUT/baton.stderr" 'ready' 30 "$BATON_PID"

log "starting nginx (reference)"
mkdir -p "$TMP/nginx"
NGINX_PORT=$(free_port)
cat >"$OUT/nginx.conf" <<EOF
# bench/metrics.sh: one worker, keep-alive on both sides, no access log.
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
events { worker_connections 4096; }
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
wait_port "$NGINX_PORT" 30 "$NGINX_PID"

scrape() { curl -sS --max-time 10 --unix-socket "$CONTROL" http://baton/metrics; }
scrape >/dev/null || die "GET /metrics failed on $CONTROL"

# The scraper: GET /metrics every second until killed; counts its scrapes and their time in $OUT/scrapes.txt.
SCRAPER=""
scraper_start() {
    (
        while :; do
            curl -sS --max-time 10 --unix-socket "$CONTROL" -o /dev/null -w '%{time_total}\n' http://baton/metrics \
                >>"$OUT/scrapes.txt" 2>>"$OUT/scraper.stderr" || true
            sleep 1
        done
    ) &
    SCRAPER=$!
}
scraper_stop() {
    kill "$SCRAPER" 2>/dev/null || true
    wait "$SCRAPER" 2>/dev/null || true
    SCRAPER=""
}
bench_on_exit() { [[ -z $SCRAPER ]] || scraper_stop; }

run_wrk() { timeout -k 5 120 wrk -t1 -c"$WRK_CONNECTIONS" -d"$3" --latency "http://$2/" >"$1"; }

# --- 1. with and without scraping ----------------------------------------------------------------------------------

log "warming up (2 s each)"
run_wrk "$OUT/wrk-warmup-baton.txt" "$BATON_ADDR" 2s
run_wrk "$OUT/wrk-warmup-nginx.txt" "127.0.0.1:$NGINX_PORT" 2s

MODES=(off on nginx)
declare -A LABEL=([off]="baton, no scrape" [on]="baton, scraped every second" [nginx]="nginx (reference)")
declare -A RPS P99 CPU_US
ROWS=""
WRK_ERRORS=0
: >"$OUT/scrapes.txt"
for round in $(seq "$ROUNDS"); do
    if ((round % 2)); then order=(off on nginx); else order=(nginx on off); fi
    for m in "${order[@]}"; do
        addr=$BATON_ADDR pid=$BATON_REAL
        [[ $m != nginx ]] || addr=127.0.0.1:$NGINX_PORT pid=$NGINX_REAL
        [[ $m != on ]] || scraper_start
        c0=$(cpu_ticks "$pid")
        run_wrk "$OUT/wrk-$m-$round.txt" "$addr" "$WRK_DURATION" || die "wrk failed; see $OUT/wrk-$m-$round.txt"
        c1=$(cpu_ticks "$pid")
        [[ $m != on ]] || scraper_stop
        read -r rps p99 errs reqs _ < <(parse_wrk "$OUT/wrk-$m-$round.txt")
        us=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", n ? c / hz * 1e6 / n : 0 }')
        RPS[$m]+="$rps " P99[$m]+="$p99 " CPU_US[$m]+="$us "
        WRK_ERRORS=$((WRK_ERRORS + errs))
        log "round $round: ${LABEL[$m]}: $rps req/s, p99 $p99 ms, errors $errs, CPU $us µs/request"
        ROWS+="| $round | ${LABEL[$m]} | $rps | $p99 ms | $us µs |"$'\n'
    done
done
LOAD_END=$(loadavg)

med() { printf '%s\n' $1 | median; }
declare -A MED_RPS MED_P99 MED_CPU
for m in "${MODES[@]}"; do
    MED_RPS[$m]=$(med "${RPS[$m]}") MED_P99[$m]=$(med "${P99[$m]}") MED_CPU[$m]=$(med "${CPU_US[$m]}")
done
SCRAPES=$(wc -l <"$OUT/scrapes.txt")
SCRAPE_MS=$(awk '{ print $1 * 1000 }' "$OUT/scrapes.txt" | median)

# --- 2. cardinality ------------------------------------------------------------------------------------------------

log "one request to each of the $ROUTES routes (hello answers 404 to /r/N: a 4xx series each)"
python3 - "$BATON_ADDR" "$ROUTES" <<'EOF'
import http.client, sys
host, port = sys.argv[1].rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port), timeout=10)
for i in range(1, int(sys.argv[2])):
    conn.request("GET", f"/r/{i}")
    r = conn.getresponse()
    r.read()
    # hello answers 404 to a path it does not serve: the route matched all the same.
    assert r.status < 500, (i, r.status)
EOF
scrape >"$OUT/exposition.txt"
SERIES=$(grep -vc '^#' "$OUT/exposition.txt")
BYTES=$(wc -c <"$OUT/exposition.txt")
FAMILIES=$(grep -c '^# TYPE' "$OUT/exposition.txt")
series_of() { grep -E "^$1(\{| )" "$OUT/exposition.txt" | wc -l; }
ROUTE_COUNTS=$(series_of baton_route_requests_total)
ROUTE_HIST=$(grep -cE '^baton_route_request_duration_seconds_(bucket|sum|count)\{' "$OUT/exposition.txt")
MEMBER_SERIES=$(grep -cE '^baton_member_[a-z_]+\{' "$OUT/exposition.txt")
POOL_HIST=$(grep -cE '^baton_request_duration_seconds_(bucket|sum|count)\{' "$OUT/exposition.txt")
TIMES=$(for _ in 1 2 3 4 5; do
    curl -sS --unix-socket "$CONTROL" -o /dev/null -w '%{time_total}\n' http://baton/metrics
done | awk '{ print $1 * 1000 }')
BIG_SCRAPE_MS=$(printf '%s\n' "$TIMES" | median)
RSS=$(rss_kib "$BATON_REAL")

# --- the section ---------------------------------------------------------------------------------------------------

((WRK_ERRORS == 0)) || note "wrk counted $WRK_ERRORS socket errors or non-2xx responses (see \`$OUT/wrk-*.txt\`)."
note_if_busy
NGINX_V=$(nginx -v 2>&1 | sed 's/.*nginx\///')
WRK_V=$(wrk -v 2>&1 | head -1 | awk '{ print $2 }' || true)
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "n/a" || b == "n/a") print "n/a"; else printf "%+.1f %%", (a / b - 1) * 100 }'; }
SECTION="$OUT/section.md"
{
    echo "$BEGIN"
    echo "## The cost of metrics: scraping under load, and series for $ROUTES routes and $MEMBERS members"
    echo
    written_by
    echo "$(machine_line), load average $LOAD_START at the start (after waiting ${waited} s for ≤ $QUIET_LOAD), $LOAD_END"
    echo "at the end. nginx $NGINX_V, wrk $WRK_V (Debian's packages)."
    echo
    echo "Setup: one backend, \`target/release/hello --listen 127.0.0.1:0\`. In front of it \`baton serve\` (\`[proxy]"
    echo "workers = 1\`; wrk and the backend share the machine's cores) with a config of $ROUTES routes (\`/r/1\` … and a catch-all) and $MEMBERS pool members ($((MEMBERS - 1)) of them in pools"
    echo "no route uses), and nginx with one worker as a reference. \`wrk -t1 -c$WRK_CONNECTIONS -d$WRK_DURATION --latency http://ADDR/\`"
    echo "(keep-alive GET /), $ROUNDS rounds, the order swapped every round; \"scraped\" runs have a loop doing"
    echo "\`curl --unix-socket SOCK http://baton/metrics\` then \`sleep 1\` for the whole run ($SCRAPES scrapes, median"
    echo "$SCRAPE_MS ms each)."
    echo
    echo "| | requests/s (median) | p99 (median) | baton's or nginx's CPU per request |"
    echo "|---|---|---|---|"
    for m in "${MODES[@]}"; do
        echo "| ${LABEL[$m]} | ${MED_RPS[$m]} | ${MED_P99[$m]} ms | ${MED_CPU[$m]} µs |"
    done
    echo
    echo "Scraped against not scraped: requests/s $(pct "${MED_RPS[on]}" "${MED_RPS[off]}"), p99 $(pct "${MED_P99[on]}" "${MED_P99[off]}"),"
    echo "CPU per request $(pct "${MED_CPU[on]}" "${MED_CPU[off]}"). Run to run, the requests/s of each side spread over"
    echo "$(spread ${RPS[off]}) (not scraped), $(spread ${RPS[on]}) (scraped) and $(spread ${RPS[nginx]}) (nginx)."
    echo "Every number of the exposition is read at scrape time from counters the request path keeps anyway; a scrape"
    echo "is work on another task of the same runtime, which is what the difference measures."
    echo
    echo "<details><summary>Every run</summary>"
    echo
    echo "| round | | requests/s | p99 | CPU per request |"
    echo "|---|---|---|---|---|"
    printf '%s' "$ROWS"
    echo
    echo "</details>"
    echo
    echo "### Series for $ROUTES routes and $MEMBERS members"
    echo
    echo "One scrape of the same baton after one GET to each route (and the wrk runs on the catch-all): **$SERIES series**"
    echo "in $FAMILIES families, $BYTES bytes, median scrape $BIG_SCRAPE_MS ms over 5 (\`curl\` over the control socket);"
    echo "baton's RSS then $(mib "$RSS") MiB."
    echo
    echo "| of which | series |"
    echo "|---|---|"
    echo "| \`baton_route_requests_total\` (only method × status class combinations that happened) | $ROUTE_COUNTS |"
    echo "| \`baton_route_request_duration_seconds\` (buckets, \`_sum\` and \`_count\` of every route) | $ROUTE_HIST |"
    echo "| \`baton_member_*\` (up, in flight, requests, failures, connect failures, retries, ejections: 7 per member) | $MEMBER_SERIES |"
    echo "| \`baton_request_duration_seconds\` (per pool) | $POOL_HIST |"
    echo
    echo "The bound is set by the config alone: at most 40 route counters per route (8 methods × 5 status classes, only"
    echo "those seen), a fixed number of histogram series per route and per pool, 7 series per member; no label comes from"
    echo "a request (docs/metrics.md)."
    echo
    notes_section
    echo "$END"
} >"$SECTION"

# shellcheck disable=SC2016 # backquotes are Markdown
ROW='| [The cost of metrics](#the-cost-of-metrics-scraping-under-load-and-series-for-1000-routes-and-100-members) | `bench/metrics.sh` | requests/s, p99 and CPU per request of `baton serve` with and without a scrape of `/metrics` every second (alternating in one run, nginx as the noise reference), and the series count, size and scrape time of the exposition for 1,000 routes and 100 members |'
write_section "$SECTION" "$ROW"
