#!/usr/bin/env bash
# Benchmarks the route table (crates/router) with 10,000 routes of several shapes and records the figures in
# docs/BENCHMARKS.md (between `<!-- router:begin -->` and `<!-- router:end -->`): build time and nanoseconds per
# lookup (hits and misses), against a linear scan.
#
# Usage: bench/router.sh   (QUIET_LOAD=0.60 QUIET_WAIT=180 wait up to QUIET_WAIT s for the 1-minute load average to
#                           drop to QUIET_LOAD; BATON_BIN=DIR measures DIR/route_bench instead of building it, and then
#                           BENCH_COMMIT=TEXT must say what it was built from)
# Measurements run under `flock /tmp/baton-bench.lock` so that benchmarks never overlap (bench/lib.sh).
# The raw output is kept in target/bench/router/.
set -euo pipefail
BENCH=router
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

if ! bench_locked; then
    bench_binaries -p router --example route_bench -- examples/route_bench
    bench_lock "$@"
fi

bench_start
wait_quiet
"$BIN/route_bench" >"$OUT/route_bench.txt"

SECTION="$OUT/section.md"
{
    echo "$BEGIN"
    echo "## Route lookup with 10,000 routes"
    echo
    written_by
    echo "$(machine_line), load average $LOAD_START (after waiting ${waited} s for ≤ $QUIET_LOAD)."
    echo
    echo "\`cargo run --release -p router --example route_bench\`: builds tables of 10,000 routes and times lookups"
    echo "(median of several runs); \"linear\" is the same table scanned route by route in precedence order."
    echo
    echo '```text'
    cat "$OUT/route_bench.txt"
    echo '```'
    echo "$END"
} >"$SECTION"

# shellcheck disable=SC2016 # backquotes are Markdown
ROW='| [Route lookup with 10,000 routes](#route-lookup-with-10000-routes) | `bench/router.sh` | build time and ns per lookup of the route table with 10,000 routes of four shapes (exact hosts, wildcard hosts, paths under one host, with regexes), against a linear scan |'
write_section "$SECTION" "$ROW"
