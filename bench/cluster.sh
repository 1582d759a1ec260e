#!/usr/bin/env bash
# Benchmarks cluster mode on one real etcd and records the figures in docs/BENCHMARKS.md (between
# `<!-- cluster:begin -->` and `<!-- cluster:end -->`), with crates/benchmarks/src/bin/cluster_bench/:
#
#  1. a node's death: `kill -9` of a `baton serve` node and its two instances, until the last of FRONT_DOORS (3)
#     front doors has removed them, against the node's lease TTL (TTLS, default 3 s and 10 s, DEATH_ROUNDS (5) each);
#  2. a registry change (a key written or deleted by a raw etcd client) until every front door routes by it
#     (CHANGE_ROUNDS, 20);
#  3. a fleet: NODES (100) in-process registrants × INSTANCES (10) instances against the same etcd and front doors;
#     the watch events and snapshot swaps per change and the propagation time of single changes, a node leaving and
#     joining (FLEET_ROUNDS, 10 each), and a burst where every node replaces an instance at once.
#
# There is no nginx or HAProxy figure to compare with: neither discovers members from etcd.
#
# Usage: bench/cluster.sh   (FRONT_DOORS=3 TTLS=3,10 DEATH_ROUNDS=5 CHANGE_ROUNDS=20 NODES=100 INSTANCES=10
#                           FLEET_ROUNDS=10 to change; QUIET_LOAD=0.60 QUIET_WAIT=180 wait up to QUIET_WAIT s for the
#                           1-minute load average to drop to QUIET_LOAD; BATON_BIN=DIR measures DIR/baton (built with
#                           `--features cluster`) and DIR/cluster_bench instead of building them, and then
#                           BENCH_COMMIT=TEXT must say what they were built from)
# Needs root to install etcd from Debian's package when it is missing, and protoc to build (scripts/install-tools).
# Measurements run under `flock /tmp/baton-bench.lock` so that benchmarks never overlap (bench/lib.sh).
# Raw outputs (the run's Markdown, JSON and stderr) are kept in target/bench/cluster/.
# Exits 2 if the run could not be carried out.
set -euo pipefail
BENCH=cluster
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

FRONT_DOORS=${FRONT_DOORS:-3}
TTLS=${TTLS:-3,10}
DEATH_ROUNDS=${DEATH_ROUNDS:-5}
CHANGE_ROUNDS=${CHANGE_ROUNDS:-20}
NODES=${NODES:-100}
INSTANCES=${INSTANCES:-10}
FLEET_ROUNDS=${FLEET_ROUNDS:-10}
QUIET_WAIT=${QUIET_WAIT:-180}

if ! bench_locked; then
    bench_tools etcd:etcd-server etcdctl:etcd-client protoc:protobuf-compiler
    bench_binaries --features baton/cluster -p baton -p benchmarks --bins -- baton cluster_bench
    bench_lock "$@"
fi

# --- under the lock ------------------------------------------------------------------------------------------------

bench_start
BATON=$BIN/baton
PROGRAM=$BIN/cluster_bench
for b in "$BATON" "$PROGRAM"; do [[ -x $b ]] || die "$b is missing: cargo build --release --features baton/cluster"; done
ETCD_VERSION=$(etcd --version 2>/dev/null | awk '/etcd Version/ { print $3 }')

wait_quiet

ARGS=(--front-doors "$FRONT_DOORS" --ttls "$TTLS" --death-rounds "$DEATH_ROUNDS" --change-rounds "$CHANGE_ROUNDS"
    --nodes "$NODES" --instances "$INSTANCES" --fleet-rounds "$FLEET_ROUNDS")
log "cluster_bench ${ARGS[*]}"
STARTED=$SECONDS
set +e
timeout -k 10 1800 "$PROGRAM" --baton "$BATON" "${ARGS[@]}" --dir "$TMP" --json-out "$OUT/run.json" \
    >"$OUT/run.md" 2> >(tee "$OUT/run.stderr" >&2)
RC=$?
set -e
RUN_SECONDS=$((SECONDS - STARTED))
LOAD_END=$(loadavg)
((RC == 0)) || die "the run could not be carried out (exit $RC); see $OUT/run.stderr"
note_if_busy

# Cluster-wide deploys (a desired version in etcd that every node converges to) are measured once they exist.
DEPLOYS_NOTE="Cluster deploy time and etcd operations per deploy for 1, 3 and 5 nodes are **not measured yet**: a deploy still acts on the node it is sent to (under a cluster-wide lock), and the cluster-wide rollout it will be measured on is not there yet."

SECTION="$OUT/section.md"
{
    echo "$BEGIN"
    echo "## Cluster mode: a dead node, a registry change and a fleet of 1,000 instances"
    echo
    written_by
    echo "$(machine_line); etcd $ETCD_VERSION (Debian's \`etcd-server\`), one member on loopback, its data in /tmp. Load"
    echo "average $LOAD_BEFORE_WAIT when the script got the benchmark lock, $LOAD_START when measuring started (after waiting"
    echo "${waited} s for ≤ $QUIET_LOAD), $LOAD_END at the end; the run took ${RUN_SECONDS} s. etcd, the front doors, the"
    echo "registrants and the measuring program share the cores."
    echo
    echo "Command: \`FRONT_DOORS=$FRONT_DOORS TTLS=$TTLS DEATH_ROUNDS=$DEATH_ROUNDS CHANGE_ROUNDS=$CHANGE_ROUNDS NODES=$NODES INSTANCES=$INSTANCES FLEET_ROUNDS=$FLEET_ROUNDS bench/cluster.sh\`"
    echo "(defaults: 3, 3,10, 5, 20, 100, 10, 10), which runs \`target/release/cluster_bench ${ARGS[*]}\` against"
    echo "\`target/release/baton\` built with \`--features cluster\`."
    echo
    echo "Setup: $FRONT_DOORS front doors, each a \`baton serve\` node (lease TTL 10 s) whose only pool has"
    echo "\`discover = \"web\"\`. Every time runs from the wall clock just before the cause (the \`kill -9\`, the etcd request)"
    echo "to the timestamp of the **last** front door's \`discovered members applied\` log line, which baton writes right"
    echo "after the new member set was swapped into its pools: from then on every front door routes by the change."
    echo "There is no nginx or HAProxy figure to compare with: neither discovers its members from etcd."
    echo
    echo "What limits each figure:"
    echo
    echo "- **A dead node** is found by its lease only: nothing else tells the cluster that a host is gone. A node"
    echo "  renews its lease every third of the TTL, so the lease expires between ⅔ TTL and one TTL after the kill (each"
    echo "  round kills the node one TTL after it registered plus a phase that the rounds spread across a renewal period),"
    echo "  and etcd's leader looks for expired leases about every 500 ms; the propagation after the deletion (the next"
    echo "  figure) is small beside that. A shorter TTL finds a dead node sooner and costs one renewal per node every"
    echo "  TTL/3 (\`lease_ttl\` accepts 2 s to 1 h). Meanwhile the front doors' retries keep idempotent requests from"
    echo "  failing (the kill -9 e2e test), and passive health checks eject the dead members at their first failures."
    echo "- **A registry change** is one etcd write, one watch event to each front door, the member set rebuilt and one"
    echo "  snapshot swap: on loopback, with every process on the same two cores, scheduling is most of it."
    echo "- **The fleet**: etcd writes each change to its WAL with an fsync (one member here: no replication round trip,"
    echo "  which a 3-member cluster on separate hosts adds to every write). Every change of a watched prefix is one"
    echo "  event to every front door's watch (etcd has no aggregation); a front door applies the latest set it has"
    echo "  received when it gets to it, so bursts coalesce into fewer swaps. The registrants run in the measuring process"
    echo "  (one connection and one lease each, as a baton node has); their addresses are never dialled."
    echo
    cat "$OUT/run.md"
    echo
    echo "$DEPLOYS_NOTE"
    echo
    notes_section
    echo "$END"
} >"$SECTION"

# shellcheck disable=SC2016 # backquotes are Markdown
ROW='| [Cluster mode: a dead node, a registry change and a fleet of 1,000 instances](#cluster-mode-a-dead-node-a-registry-change-and-a-fleet-of-1000-instances) | `bench/cluster.sh` | on one real etcd: time from a node'"'"'s `kill -9` until the last front door removed its instances, against the lease TTL; time from a registry change until every front door routes by it; 100 nodes × 10 instances registered in-process: watch events, snapshot swaps and propagation time per change |'
write_section "$SECTION" "$ROW"
cat "$SECTION"
