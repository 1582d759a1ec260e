#!/usr/bin/env bash
# Benchmarks deploys of a supervised service under sustained load and records the figures in docs/BENCHMARKS.md
# (between `<!-- deploys:begin -->` and `<!-- deploys:end -->`):
#
#   `baton serve` runs INSTANCES (3) instances of `baton demo-app`, health-checked every HEALTH_INTERVAL_MS (100 ms);
#   a paced `loadgen` load (keep-alive, new-connection, POST and slow workers) runs the whole time; DEPLOYS (50)
#   deploys per strategy go through `baton deploy web --version vN --strategy S --control SOCK --json`, rolling,
#   blue-green and canary in turn, with a steady period after each (crates/benchmarks/src/bin/deploy_bench/). Reported
#   per strategy: deploy duration, the app's own readiness time and the old instances' waits for requests in flight
#   (from baton's log), the overhead (duration minus readiness and those waits, minus the canary's configured pauses)
#   against the health interval, requests and failures; overall:
#   every request's outcome and the client's p99 during deploys against steady state.
#
# Usage: bench/deploys.sh   (DEPLOYS=50 INSTANCES=3 HEALTH_INTERVAL_MS=100 CANARY_PAUSE_MS=500 STEADY_MS=1000 PACE_MS=2
#                            to change; QUIET_LOAD=0.60 QUIET_WAIT=180 wait up to QUIET_WAIT s for the 1-minute load
#                            average to drop to QUIET_LOAD; BATON_BIN=DIR measures DIR/baton and
#                            DIR/deploy_bench instead of building them, and then BENCH_COMMIT=TEXT must say
#                            what they were built from; BENCH_COMMIT=TEXT also names the source outside a git checkout)
# Measurements run under `flock /tmp/baton-bench.lock` so that benchmarks never overlap. A run takes about 5 minutes
# with the defaults (plus the build, plus the wait for a quiet machine).
# Raw outputs (the config, baton's whole log, the run's JSON and stderr) are kept in target/bench/deploys/.
# Exits 1 if a deploy failed or a request failed (the section is still written, with the failures), 2 if the run
# could not be carried out.
set -euo pipefail
BENCH=deploys
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

DEPLOYS=${DEPLOYS:-50}
INSTANCES=${INSTANCES:-3}
HEALTH_INTERVAL_MS=${HEALTH_INTERVAL_MS:-100}
CANARY_PAUSE_MS=${CANARY_PAUSE_MS:-500}
STEADY_MS=${STEADY_MS:-1000}
PACE_MS=${PACE_MS:-2}
QUIET_WAIT=${QUIET_WAIT:-180}

if ! bench_locked; then
    bench_binaries -p baton -p benchmarks --bins -- baton deploy_bench
    bench_lock "$@"
fi

# --- under the lock ------------------------------------------------------------------------------------------------

bench_start
BATON=$BIN/baton
EXAMPLE=$BIN/deploy_bench
for b in "$BATON" "$EXAMPLE"; do [[ -x $b ]] || die "$b is missing: cargo build --release"; done
# TMP is short: the control socket lives there (a Unix socket path has at most 107 bytes).
RUN=$TMP

wait_quiet

# --- the run -------------------------------------------------------------------------------------------------------

ARGS=(--deploys "$DEPLOYS" --instances "$INSTANCES" --health-interval-ms "$HEALTH_INTERVAL_MS"
    --canary-pause-ms "$CANARY_PAUSE_MS" --steady-ms "$STEADY_MS" --pace-ms "$PACE_MS")
log "$DEPLOYS deploys per strategy under load: $EXAMPLE ${ARGS[*]}"
STARTED=$SECONDS
set +e
timeout -k 10 1800 "$EXAMPLE" --baton "$BATON" "${ARGS[@]}" --dir "$RUN" --json-out "$OUT/run.json" \
    >"$OUT/run.md" 2> >(tee "$OUT/run.stderr" >&2)
RC=$?
set -e
RUN_SECONDS=$((SECONDS - STARTED))
LOAD_END=$(loadavg)
cp "$RUN/baton.toml" "$RUN/baton.log" "$OUT/" 2>/dev/null || true
case $RC in
    0) ;;
    1) log "A DEPLOY OR A REQUEST FAILED: see $OUT/run.stderr and $OUT/baton.log" ;;
    *) die "the run could not be carried out (exit $RC); see $OUT/run.stderr" ;;
esac

# --- the section in docs/BENCHMARKS.md -----------------------------------------------------------------------------

QUIET_NOTE=""
awk -v l="${LOAD_START%% *}" -v q="$QUIET_LOAD" 'BEGIN { exit !(l > q) }' &&
    QUIET_NOTE=" The machine was not quiet when measuring started (other people's builds and tests share the cores; see \"CPU\" below)."

SECTION="$OUT/section.md"
{
    echo "$BEGIN"
    echo "## Deploys under load: rolling, blue-green, canary"
    echo
    written_by
    echo "$(machine_line); load average $LOAD_BEFORE_WAIT when the script"
    echo "got the benchmark lock, $LOAD_START when measuring started (after waiting ${waited} s for ≤ $QUIET_LOAD), $LOAD_END at"
    echo "the end; the run took ${RUN_SECONDS} s. Nothing is pinned: the load generator, baton and the instances share the cores.$QUIET_NOTE"
    echo
    echo "Command: \`DEPLOYS=$DEPLOYS INSTANCES=$INSTANCES HEALTH_INTERVAL_MS=$HEALTH_INTERVAL_MS CANARY_PAUSE_MS=$CANARY_PAUSE_MS STEADY_MS=$STEADY_MS PACE_MS=$PACE_MS bench/deploys.sh\`"
    echo "(defaults: 50, 3, 100, 500, 1000, 2), which runs \`target/release/deploy_bench ${ARGS[*]}\`."
    echo
    echo "Setup: \`target/release/baton serve\` with the config below (kept in \`$OUT/baton.toml\`): $INSTANCES instances of"
    echo "\`baton demo-app\` (the example app), health-checked every $HEALTH_INTERVAL_MS ms, \`healthy_threshold = 2\` (the default),"
    echo "rolling with \`max_surge = 1\`, \`max_unavailable = 0\` (the defaults), blue-green with \`rollback_window = \"0s\"\` (the"
    echo "old set is drained inside the deploy, as canary and rolling do), canary steps 10 → 50 → 100 % with a $CANARY_PAUSE_MS ms"
    echo "pause after each of the first two (\`min_requests = 20\`, which the load reaches within the pause). A \`loadgen\` load runs from before the first deploy to after the last; then"
    echo "$((DEPLOYS * 3)) deploys, rolling, blue-green and canary in turn, each \`baton deploy web --version vN --strategy S"
    echo "--control SOCK --json\` (versions v2, v3, …), each followed by $STEADY_MS ms of steady load. The load's phase is"
    echo "*during deploys* from just before \`baton deploy\` starts until it exits, *steady* otherwise; latency is of"
    echo "successful requests by the phase they started in, from connect (new-connection workers) to the last body byte,"
    echo "and includes the slow requests."
    echo
    echo "- **Duration** is the deploy's \`duration_ms\` from its JSON outcome (baton's own clock, from the start of the"
    echo "  deploy until the old version is gone)."
    echo "- **The app's own readiness** is read from \`baton serve\`'s log: for each instance of the new version, from the"
    echo "  supervisor's \`instance started … pid=P\` to the app's \`hello: ready version=V pid=P\`; a deploy's readiness is"
    echo "  the union of those intervals (one after the other in a rolling deploy, overlapping in blue-green and canary)."
    echo "- **Waiting for requests in flight** is read from \`baton serve\`'s log too: each old instance, once out of the"
    echo "  pool, logs how many requests were still in flight to it and how long they took to end (\`instance left the pool …"
    echo "  in_flight=N drain_ms=D\`). Those requests were routed before it left, and baton stops no instance before they"
    echo "  end: that wait is the app's own request time (the load's slow requests take 150 ms). A deploy's is the union of"
    echo "  those waits."
    echo "- **Overhead** = duration − the union of the app's own readiness and the waits for requests in flight − the"
    echo "  canary's configured pauses. The target is one health interval ($HEALTH_INTERVAL_MS ms). *Duration − readiness − pauses*"
    echo "  counts the waits as overhead too. A rolling deploy starts its $INSTANCES instances one after the other, so the"
    echo "  table also gives the overhead per instance started in sequence."
    echo "- **Proxy p99** is baton's own measurement of the service's requests during the deploy (the \`traffic.p99_ms\` of"
    echo "  the outcome; log-bucket histogram), one value per deploy."
    echo
    echo '```toml'
    # The binary was a private copy in /tmp: show where it comes from.
    sed "s|\"[^\"]*/baton\", \"demo-app\"|\"target/release/baton\", \"demo-app\"|" "$OUT/baton.toml"
    echo '```'
    echo
    cat "$OUT/run.md"
    echo "$END"
} >"$SECTION"

# shellcheck disable=SC2016 # backquotes are Markdown
ROW='| [Deploys under load: rolling, blue-green, canary](#deploys-under-load-rolling-blue-green-canary) | `bench/deploys.sh` | 50 deploys per strategy of a supervised service under sustained load: failed requests, p99 during deploys vs. steady state, deploy duration minus the app'"'"'s own readiness (overhead) against the health interval |'
write_section "$SECTION" "$ROW"
cat "$SECTION"
exit $((RC == 0 ? 0 : 1))
