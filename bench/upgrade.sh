#!/usr/bin/env bash
# Benchmarks upgrades of the proxy itself under load — `baton upgrade`, nginx's binary upgrade (USR2, WINCH, QUIT)
# and HAProxy's master-worker reload (`-W`, SIGUSR2) — in one run, alternating, and records the figures in
# docs/BENCHMARKS.md (between `<!-- upgrade:begin -->` and `<!-- upgrade:end -->`):
#
#   one `hello` backend behind all three proxies (started once, kept); UPGRADES (7) upgrades of each, in turn, each
#   under its own `loadgen` load (keep-alive, new-connection, POST and slow workers) with STEADY_MS (2000) of steady
#   load before and after (crates/benchmarks/src/bin/upgrade_bench/). Reported per proxy: failed requests of the
#   keep-alive and of the new-connection workers, the p99 of requests started during the upgrade against those
#   started in the steady periods, and the time from the upgrade signal until the old process is gone (medians and
#   ranges over the upgrades).
#
# Usage: bench/upgrade.sh   (UPGRADES=7 STEADY_MS=2000 to change; QUIET_LOAD=0.60 QUIET_WAIT=180 wait up to QUIET_WAIT s
#                            for the 1-minute load average to drop to QUIET_LOAD; BATON_BIN=DIR measures DIR/baton,
#                            DIR/hello and DIR/upgrade_bench instead of building them, and then BENCH_COMMIT=TEXT must
#                            say what they were built from)
# Needs root to install nginx and haproxy from Debian's packages when they are missing (their services are never
# started: both run in the foreground with configs written to a temp dir). A run takes about 2 minutes with the
# defaults (plus the build, plus the wait for a quiet machine). Raw outputs (the summary, the run's stderr, the
# proxies' configs and logs) are kept in target/bench/upgrade/.
# Exits 1 if a baton upgrade failed or lost a request (the section is still written), 2 if the run could not be
# carried out.
set -euo pipefail
BENCH=upgrade
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

UPGRADES=${UPGRADES:-7}
STEADY_MS=${STEADY_MS:-2000}
QUIET_WAIT=${QUIET_WAIT:-180}

if ! bench_locked; then
    bench_tools nginx haproxy
    bench_binaries -p baton -p hello -p benchmarks --bins -- baton hello upgrade_bench
    bench_lock "$@"
fi

# --- under the lock ------------------------------------------------------------------------------------------------

bench_start
EXAMPLE=$BIN/upgrade_bench
for b in "$BIN/baton" "$BIN/hello" "$EXAMPLE"; do [[ -x $b ]] || die "$b is missing: cargo build --release"; done
NGINX=$(command -v nginx)
HAPROXY=$(command -v haproxy)

# After their first upgrade the new baton and the new nginx master are no children of the benchmark: should the run
# break off, stop them by the pids they wrote or logged.
# shellcheck disable=SC2317 # called by bench_cleanup
bench_on_exit() {
    local pid
    pid=$(cat "$TMP/nginx/nginx.pid" 2>/dev/null || true)
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
    grep -o 'the new baton is pid=[0-9]*' "$OUT/run.stderr" 2>/dev/null | tail -1 |
        grep -o '[0-9]*$' | while read -r pid; do kill -TERM "$pid" 2>/dev/null; done
    return 0
}

wait_quiet

# --- the run -------------------------------------------------------------------------------------------------------

ARGS=(--upgrades "$UPGRADES" --steady-ms "$STEADY_MS" --nginx "$NGINX" --haproxy "$HAPROXY")
log "$UPGRADES upgrades of each proxy under load: $EXAMPLE ${ARGS[*]}"
STARTED=$SECONDS
set +e
RUST_LOG=${RUST_LOG:-info} timeout -k 10 1800 "$EXAMPLE" --baton "$BIN/baton" --hello "$BIN/hello" "${ARGS[@]}" \
    --dir "$TMP" >"$OUT/summary.md" 2> >(tee "$OUT/run.stderr" >&2)
RC=$?
set -e
LOAD_END=$(loadavg)
ELAPSED=$((SECONDS - STARTED))
for f in baton/baton.toml baton/output.log nginx/nginx.conf nginx/error.log haproxy/haproxy.cfg haproxy/output.log; do
    [[ -f $TMP/$f ]] && cp "$TMP/$f" "$OUT/${f//\//-}"
done
case $RC in
    0) ;;
    1) log "A BATON UPGRADE FAILED OR LOST REQUESTS: see $OUT/run.stderr" ;;
    *) die "the run could not be carried out (exit $RC); see $OUT/run.stderr" ;;
esac

# --- the section in docs/BENCHMARKS.md -------------------------------------------------------------------------

((RC == 0)) || note "**A baton upgrade failed or lost requests.** The failure samples are in the run's stderr (kept in \`$OUT/\`); this is a bug, not noise."
note_if_busy

SECTION="$OUT/section.md"
{
    echo "$BEGIN"
    echo "## Upgrading the proxy itself under load: baton, nginx, HAProxy"
    echo
    written_by
    echo "$(machine_line), load average $LOAD_BEFORE_WAIT when the script got the benchmark lock, $LOAD_START as the"
    echo "run started and $LOAD_END at its end ($ELAPSED s); nothing pinned, the load generator and the backend share the cores."
    echo
    echo "One \`hello\` backend behind three proxies, each a master or serving process with one worker thread or process:"
    echo "\`baton serve\` (\`workers = 1\`, the backend as a pool's member), nginx (daemonized, \`worker_processes 1\`, keep-alive upstream) and HAProxy"
    echo "(\`-W\`, \`nbthread 1\`, \`http-reuse always\`). Each upgrade runs under its own load; \"during the upgrade\" means"
    echo "requests *started* between the signal and the moment the old process was gone (its pidfd polled readable):"
    echo
    echo "- baton: \`baton upgrade --control SOCK\`; the old process is the \`baton serve\` that served, which exits once drained;"
    echo "- nginx: USR2 to the master; once the new master has written its pid file and forked its worker, WINCH to the"
    echo "  old master; once its worker has exited, QUIT; the old process is the old master;"
    echo "- HAProxy: SIGUSR2 to the master (which executes itself again and starts a new worker); the old process is the"
    echo "  old worker."
    echo
    echo "Failures are counted by the load client (refused, reset, timeout, non-2xx, a keep-alive connection closed"
    echo "without \`Connection: close\`, a truncated body); \"keep-alive\" is the keep-alive, POST and slow workers,"
    echo "\"new-connection\" the workers that connect for every request. Latency is of successful requests, connect"
    echo "included, and the slow workers' requests take ${SLOW_MS:-300} ms by design. WebSockets, event streams and HTTP/2 are"
    echo "left out: nginx's old workers would wait for them to end. Each old process finishes the slow requests it holds"
    echo "at the signal before it is gone, so that time cannot be much below what is left of them (about half of 300 ms)."
    echo
    cat "$OUT/summary.md"
    echo
    notes_section
    echo "$END"
} >"$SECTION"

# shellcheck disable=SC2016 # backquotes are Markdown
ROW='| [Upgrading the proxy itself under load: baton, nginx, HAProxy](#upgrading-the-proxy-itself-under-load-baton-nginx-haproxy) | `bench/upgrade.sh` | failed requests (keep-alive and new-connection apart), p99 during the upgrade against steady state and the time until the old process is gone, over several upgrades each of `baton upgrade`, nginx'"'"'s binary upgrade (USR2, WINCH, QUIT) and HAProxy'"'"'s master-worker reload (SIGUSR2) |'
write_section "$SECTION" "$ROW"
exit $((RC == 0 ? 0 : 1))
