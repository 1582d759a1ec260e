#!/usr/bin/env bash
# Benchmarks `baton exec` in one run and records the figures in docs/BENCHMARKS.md:
#
#  1. throughput cost: `hello` alone against `hello` under `baton exec --instances 1` (no restarts), each loaded by
#     the same `wrk -t1 -c64 -d10s --latency` (keep-alive GET /), alternating A B A B A B; median requests/s of each,
#     the ratio baton/direct and wrk's p99;
#  2. failure counting: `baton exec --instances 2` restarted RESTARTS times (default 50) with SIGHUP under
#     keep-alive, new-connection, POST and slow-request load (crates/benchmarks/src/bin/exec_restarts/).
#
# Usage: bench/exec-restarts.sh   (RESTARTS=50 ROUNDS=3 WRK_DURATION=10s WRK_CONNECTIONS=64 to change;
#                                  QUIET_LOAD=0.60 QUIET_WAIT=180 wait up to QUIET_WAIT s for the 1-minute load
#                                  average to drop to QUIET_LOAD; BATON_BIN=DIR measures the binaries in DIR instead of
#                                  building them, and then BENCH_COMMIT=TEXT must say what they were built from;
#                                  BENCH_COMMIT=TEXT also names the source outside a git checkout)
# Needs root to install wrk from Debian's package when it is missing.
# Measurements run under `flock /tmp/baton-bench.lock` so that benchmarks never overlap (bench/lib.sh).
# Raw outputs (wrk reports, baton logs, the restart run's summary and stderr) are kept in target/bench/exec-restarts/.
# Exits 1 if a request failed during the restarts (the section is still written, with the failures).
set -euo pipefail
BENCH=exec-restarts
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RESTARTS=${RESTARTS:-50}
ROUNDS=${ROUNDS:-3}
WRK_DURATION=${WRK_DURATION:-10s}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
QUIET_WAIT=${QUIET_WAIT:-180}

if ! bench_locked; then
    bench_tools wrk
    bench_binaries -p baton -p hello -p benchmarks --bins -- baton hello exec_restarts
    bench_lock "$@"
fi

# --- under the lock ------------------------------------------------------------------------------------------------

bench_start
BATON=$BIN/baton
HELLO=$BIN/hello
EXAMPLE=$BIN/exec_restarts
for b in "$BATON" "$HELLO" "$EXAMPLE"; do [[ -x $b ]] || die "$b is missing: cargo build --release"; done

# baton's instances run in their own process groups: make sure none outlives a failed run.
# shellcheck disable=SC2317 # called by bench_cleanup
bench_on_exit() {
    local f pid
    for f in "$OUT"/*.stderr "$OUT"/restarts.log; do
        [[ -f $f ]] || continue
        grep -o 'instance started .* pid=[0-9]*' "$f" 2>/dev/null | grep -o '[0-9]*$' |
            while read -r pid; do
                # Only if that pid is still one of our instances (not a reused pid).
                if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- '--app-version bench'; then
                    kill -KILL "$pid" 2>/dev/null
                fi
            done 2>/dev/null
    done
}

wait_quiet

# --- 1. throughput: app alone vs. under baton exec ----------------------------------------------------------------

# run_wrk NAME ADDR SECONDS: one wrk run; prints "req/s p99_ms errors requests bytes_per_request".
run_wrk() {
    local file="$OUT/wrk-$1.txt"
    timeout -k 5 120 wrk -t1 -c"$WRK_CONNECTIONS" -d"$3" --latency "http://$2/" >"$file"
    parse_wrk "$file"
}

log "throughput: starting hello alone and hello under baton exec --instances 1"
start direct "$HELLO" --listen 127.0.0.1:0 --app-version bench
DIRECT_PID=$PID
DIRECT_ADDR=$(listening direct "$DIRECT_PID")
start baton "$BATON" exec --listen 127.0.0.1:0 --instances 1 -- "$HELLO" --app-version bench
BATON_PID=$PID
BATON_ADDR=$(listening baton "$BATON_PID")
wait_line "$OUT/baton.stderr" 'rollout complete generation=1' 30 "$BATON_PID"

LOADAVG=$(loadavg)
log "warming up (2 s each)"
run_wrk warmup-direct "$DIRECT_ADDR" 2s >/dev/null
run_wrk warmup-baton "$BATON_ADDR" 2s >/dev/null

ROWS=""
DIRECT_RPS=() BATON_RPS=() DIRECT_P99=() BATON_P99=()
WRK_ERRORS=0
for round in $(seq "$ROUNDS"); do
    result=$(run_wrk "direct-$round" "$DIRECT_ADDR" "$WRK_DURATION")
    read -r d_rps d_p99 d_err _ <<<"$result"
    log "round $round: hello alone      $d_rps req/s, p99 $d_p99 ms, errors $d_err"
    result=$(run_wrk "baton-$round" "$BATON_ADDR" "$WRK_DURATION")
    read -r b_rps b_p99 b_err _ <<<"$result"
    log "round $round: under baton exec $b_rps req/s, p99 $b_p99 ms, errors $b_err"
    DIRECT_RPS+=("$d_rps") BATON_RPS+=("$b_rps") DIRECT_P99+=("$d_p99") BATON_P99+=("$b_p99")
    WRK_ERRORS=$((WRK_ERRORS + d_err + b_err))
    ROWS+="| $round | $d_rps | $d_p99 ms | $b_rps | $b_p99 ms |"$'\n'
done
LOADAVG_AFTER=$(loadavg)
stop "$BATON_PID"
stop "$DIRECT_PID"
grep -q 'all instances stopped cleanly' "$OUT/baton.stderr" || log "warning: baton did not report a clean stop"

D_MED=$(printf '%s\n' "${DIRECT_RPS[@]}" | median)
B_MED=$(printf '%s\n' "${BATON_RPS[@]}" | median)
D_P99=$(printf '%s\n' "${DIRECT_P99[@]}" | median)
B_P99=$(printf '%s\n' "${BATON_P99[@]}" | median)
RATIO=$(ratio "$B_MED" "$D_MED")
D_SPREAD=$(spread "${DIRECT_RPS[@]}")
B_SPREAD=$(spread "${BATON_RPS[@]}")
log "median: hello alone $D_MED req/s, under baton exec $B_MED req/s, ratio $RATIO"

# --- 2. failure-counting restarts ---------------------------------------------------------------------------------

log "failure counting: $RESTARTS SIGHUP restarts of baton exec --instances 2 under load"
set +e
timeout -k 10 1800 "$EXAMPLE" --baton "$BATON" --hello "$HELLO" --restarts "$RESTARTS" --instances 2 \
    --log "$OUT/restarts.log" >"$OUT/restarts.md" 2> >(tee "$OUT/restarts.stderr" >&2)
RESTARTS_RC=$?
set -e
case $RESTARTS_RC in
    0) ;;
    1) log "REQUESTS FAILED during the restarts: see $OUT/restarts.stderr and $OUT/restarts.log" ;;
    *) die "the restart run could not be carried out (exit $RESTARTS_RC); see $OUT/restarts.stderr" ;;
esac

# --- 3. the section in docs/BENCHMARKS.md -------------------------------------------------------------------------

if ((RESTARTS_RC != 0)); then
    note "**Requests failed during the restarts.** The failure samples and baton's log around each are in the run's stderr (kept in \`$OUT/\`); this is a bug, not noise."
fi
if ((WRK_ERRORS > 0)); then
    note "wrk counted $WRK_ERRORS socket errors or non-2xx responses in the throughput runs (see \`$OUT/wrk-*.txt\`)."
fi
# The gap between the medians, against the spread between rounds of one side ((max - min) / median).
read -r GAP NOISE < <(
    printf '%s\n' "$RATIO" "$D_MED" "$B_MED" "${DIRECT_RPS[*]}" "${BATON_RPS[*]}" | awk '
        NR == 1 { r = $1 } NR == 2 { dm = $1 } NR == 3 { bm = $1 }
        NR >= 4 { lo = $1; hi = $1; for (i = 2; i <= NF; i++) { if ($i < lo) lo = $i; if ($i > hi) hi = $i }
                  s = (hi - lo) / (NR == 4 ? dm : bm); if (s > noise) noise = s }
        END { g = r - 1; if (g < 0) g = -g; printf "%.1f %.1f\n", g * 100, noise * 100 }'
)
if awk -v g="$GAP" -v n="$NOISE" 'BEGIN { exit !(g <= n) }'; then
    note "The medians differ by $GAP %, less than the spread between rounds of one side ($NOISE %): no difference is measurable at this noise level."
else
    note "**The medians differ by $GAP %, more than the spread between rounds of one side ($NOISE %).** Check whether it repeats before believing it."
fi
if grep -q 'distinct instances that answered' "$OUT/restarts.md"; then
    seen=$(grep -o 'distinct instances that answered: [0-9]* of [0-9]*' "$OUT/restarts.md")
    read -r got want < <(echo "$seen" | awk '{ print $5, $7 }')
    ((got == want)) || note "Only $got of $want instances answered a request: some generation served nothing."
fi

note_if_busy

SECTION="$OUT/section.md"
{
    echo "$BEGIN"
    echo "## \`baton exec\`: throughput cost and restarts under load"
    echo
    written_by
    echo "$(machine_line), load average $LOAD_BEFORE_WAIT when the script got the benchmark lock, $LOADAVG before and $LOADAVG_AFTER after the throughput runs;"
    echo "nothing pinned, and the load generator runs on the same cores as the server."
    echo
    echo "### Throughput: the app alone vs. under \`baton exec\`"
    echo
    echo "\`wrk -t1 -c$WRK_CONNECTIONS -d$WRK_DURATION --latency\` (keep-alive \`GET /\`) against \`hello\` listening itself, then"
    echo "against \`baton exec --instances 1 -- hello\` (no restarts), alternating, $ROUNDS round(s) each, after a 2 s warm-up of each."
    echo
    echo "| round | hello alone (req/s) | p99 | under \`baton exec\` (req/s) | p99 |"
    echo "|---|---:|---:|---:|---:|"
    printf '%s' "$ROWS"
    echo "| **median** | **$D_MED** | $D_P99 ms | **$B_MED** | $B_P99 ms |"
    echo
    echo "**Ratio baton/direct: $RATIO** (rounds ranged $D_SPREAD req/s alone and $B_SPREAD req/s under baton)."
    echo
    echo "### $RESTARTS SIGHUP restarts under load"
    echo
    echo "\`target/release/exec_restarts --restarts $RESTARTS --instances 2\`: \`baton exec --instances 2 -- hello\`,"
    echo "a \`loadgen\` load with every kind of worker, one SIGHUP after the other (each waits for \`rollout complete\`), a"
    echo "500 ms steady period after each. \"During restarts\" means requests *started* between the SIGHUP and the"
    echo "\`rollout complete\` line (the old generation has exited by then); latency is of successful requests, from"
    echo "connect (new-connection workers) to the last body byte, and includes the slow 300 ms requests."
    echo
    cat "$OUT/restarts.md"
    notes_section
    echo "$END"
} >"$SECTION"

# shellcheck disable=SC2016 # backquotes are Markdown
ROW='| [`baton exec`: throughput cost and restarts under load](#baton-exec-throughput-cost-and-restarts-under-load) | `bench/exec-restarts.sh` | (1) requests/s and p99 of the example app alone against the same app under `baton exec` (no restarts): the handoff path adds no proxy hop, so the ratio should be 1.00 within noise; (2) failed requests, requests during switches and p99 latency during vs. outside restarts over 50 SIGHUP restarts under keep-alive, new-connection, POST and slow-request load, plus how long each rollout took |'
write_section "$SECTION" "$ROW"
exit $((RESTARTS_RC == 0 ? 0 : 1))
