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
#     joining (FLEET_ROUNDS, 10 each), and a burst where every node replaces an instance at once;
#  4. cluster-wide deploys: for each count in DEPLOY_NODES (1 3 5), that many `baton serve` nodes on loopback with 2
#     instances each and a fresh etcd; DEPLOY_ROUNDS (5) rolling deploys sent to one node, each timed until every node
#     converged, with etcd's writes (revisions) and unary requests per deploy read from its /metrics.
#
# There is no nginx or HAProxy figure to compare with: neither discovers members from etcd.
#
# Usage: bench/cluster.sh   (FRONT_DOORS=3 TTLS=3,10 DEATH_ROUNDS=5 CHANGE_ROUNDS=20 NODES=100 INSTANCES=10
#                           FLEET_ROUNDS=10 DEPLOY_NODES="1 3 5" DEPLOY_ROUNDS=5 to change; QUIET_LOAD=0.60 QUIET_WAIT=180 wait up to QUIET_WAIT s for the
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
DEPLOY_NODES=${DEPLOY_NODES:-1 3 5}
DEPLOY_ROUNDS=${DEPLOY_ROUNDS:-5}
QUIET_WAIT=${QUIET_WAIT:-180}

if ! bench_locked; then
    bench_tools etcd:etcd-server etcdctl:etcd-client protoc:protobuf-compiler curl
    bench_binaries --features baton/cluster -p baton -p hello -p benchmarks --bins -- baton hello cluster_bench
    bench_lock "$@"
fi

# --- under the lock ------------------------------------------------------------------------------------------------

bench_start
BATON=$BIN/baton
PROGRAM=$BIN/cluster_bench
for b in "$BATON" "$PROGRAM" "$BIN/hello"; do [[ -x $b ]] || die "$b is missing: cargo build --release --features baton/cluster"; done
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
((RC == 0)) || die "the run could not be carried out (exit $RC); see $OUT/run.stderr"
note_if_busy

# --- cluster-wide deploys: DEPLOY_NODES nodes on loopback, each with 2 instances of `web`, one etcd ----------------
# Each round is `baton deploy web --version vK` sent to node-1, timed from the command's start to its exit (every node
# converged), with etcd's revision (one per write or write transaction) and its unary gRPC requests (reads, writes,
# transactions, lease grants) counted before and after.
etcd_counter() {
    curl -s "http://127.0.0.1:$1/metrics" | awk -v name="$2" '
        $1 == name { v += $2 }
        name == "unary" && $1 ~ /^grpc_server_started_total\{/ && $1 ~ /grpc_type="unary"/ { v += $2 }
        END { printf "%d\n", v }'
}

measure_deploys() {
    local nodes=$1 dir client peer etcd_pid i cfg pids=() t0 t1 rev0 rev1 rpc0 rpc1 code k
    dir=$(mktemp -d -p /dev/shm "baton-cluster-deploys.XXXXXX" 2>/dev/null || mktemp -d -p "$TMP")
    client=$(free_port)
    peer=$(free_port)
    start "etcd-$nodes" etcd --name bench --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$client" \
        --advertise-client-urls "http://127.0.0.1:$client" --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "bench=http://127.0.0.1:$peer"
    etcd_pid=$PID
    wait_port "$client" 30 "$etcd_pid"
    for ((i = 1; i <= nodes; i++)); do
        cfg=$dir/node-$i.toml
        cat >"$cfg" <<TOML
[[listener]]
name = "http"
address = "127.0.0.1:0"

[cluster]
endpoints = ["http://127.0.0.1:$client"]
prefix = "/bench"
node = "node-$i"
advertise = "127.0.0.1"
lease_ttl = "10s"

[service.web]
command = ["$BIN/hello", "--app-version", "{version}"]
socket = "inherit"
version = "v1"
instances = 2
ready_timeout = "10s"

[service.web.health]
path = "/healthz"
interval = "100ms"
timeout = "50ms"
healthy_threshold = 1

[pool.everywhere]
discover = "web"

[[route]]
pool = "everywhere"
TOML
        start "node-$nodes-$i" "$BATON" serve --config "$cfg" --control "$dir/node-$i.sock"
        pids+=("$PID")
        wait_line "$OUT/node-$nodes-$i.stderr" ' ready' 60 "$PID"
    done
    for ((k = 2; k < DEPLOY_ROUNDS + 2; k++)); do
        rev0=$(etcd_counter "$client" etcd_debugging_mvcc_current_revision)
        rpc0=$(etcd_counter "$client" unary)
        t0=$(date +%s%N)
        set +e
        "$BATON" deploy web --version "v$k" --control "$dir/node-1.sock" >>"$OUT/deploys-$nodes.out" 2>&1
        code=$?
        set -e
        t1=$(date +%s%N)
        ((code == 0)) || die "deploy of v$k on $nodes nodes exited $code; see $OUT/deploys-$nodes.out"
        rev1=$(etcd_counter "$client" etcd_debugging_mvcc_current_revision)
        rpc1=$(etcd_counter "$client" unary)
        echo "$nodes $(((t1 - t0) / 1000000)) $((rev1 - rev0)) $((rpc1 - rpc0))" >>"$OUT/deploys.tsv"
    done
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop "${pids[i]}"; done
    stop "$etcd_pid"
    rm -rf "$dir"
}

LIFETIME=1800
: >"$OUT/deploys.tsv"
for n in $DEPLOY_NODES; do
    log "cluster deploys on $n node(s), $DEPLOY_ROUNDS rounds"
    measure_deploys "$n"
done
RUN_SECONDS=$((SECONDS - STARTED))
LOAD_END=$(loadavg)

DEPLOYS_TABLE="$OUT/deploys.md"
{
    echo "### Cluster-wide deploys: time and etcd operations per deploy"
    echo
    echo "\`DEPLOY_NODES=\"$DEPLOY_NODES\" DEPLOY_ROUNDS=$DEPLOY_ROUNDS\`: that many \`baton serve\` nodes on loopback, each supervising"
    echo "2 instances of \`web\` (\`hello\`, ready at once, health checked every 100 ms), one etcd member with its data in"
    echo "memory; each round is \`baton deploy web --version vK\` sent to node-1 with the defaults \`max_surge = 1\`,"
    echo "\`max_unavailable = 0\` (one node at a time replaces one instance at a time, cluster-wide). Time: from the command's"
    echo "start to its exit, when every node has reported converged. etcd writes: the increase of etcd's revision (one per"
    echo "put, delete or write transaction); requests: the unary gRPC requests etcd handled (reads, writes,"
    echo "transactions, lease grants; the watch and keep-alive streams are not counted)."
    echo
    echo "| nodes | instances | deploy time, median (range) | per instance | etcd writes per deploy, median (range) | etcd requests per deploy, median (range) |"
    echo "|---:|---:|---:|---:|---:|---:|"
    for n in $DEPLOY_NODES; do
        times=$(awk -v n="$n" '$1 == n { print $2 }' "$OUT/deploys.tsv")
        writes=$(awk -v n="$n" '$1 == n { print $3 }' "$OUT/deploys.tsv")
        rpcs=$(awk -v n="$n" '$1 == n { print $4 }' "$OUT/deploys.tsv")
        med=$(median <<<"$times")
        per=$(awk -v m="$med" -v i=$((2 * n)) 'BEGIN { printf "%.0f", m / i }')
        # shellcheck disable=SC2086 # one value a line
        echo "| $n | $((2 * n)) | $med ms ($(spread $times)) | $per ms | $(median <<<"$writes") ($(spread $writes)) | $(median <<<"$rpcs") ($(spread $rpcs)) |"
    done
    echo
    echo "A rolling deploy with these bounds is sequential by design: its time grows with the instances of the whole"
    echo "cluster (each one started, health checked, swapped in the pools of every front door, drained and stopped)."
    echo "Raise \`max_surge\` or \`max_unavailable\` to let several nodes replace instances at once."
} >"$DEPLOYS_TABLE"

SECTION="$OUT/section.md"
{
    echo "$BEGIN"
    echo "## Cluster mode: a dead node, a registry change, a fleet of 1,000 instances and deploys"
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
    cat "$DEPLOYS_TABLE"
    echo
    notes_section
    echo "$END"
} >"$SECTION"

# shellcheck disable=SC2016 # backquotes are Markdown
ROW='| [Cluster mode: a dead node, a registry change, a fleet of 1,000 instances and deploys](#cluster-mode-a-dead-node-a-registry-change-a-fleet-of-1000-instances-and-deploys) | `bench/cluster.sh` | on one real etcd: time from a node'"'"'s `kill -9` until the last front door removed its instances, against the lease TTL; time from a registry change until every front door routes by it; 100 nodes × 10 instances registered in-process: watch events, snapshot swaps and propagation time per change; cluster-wide deploys on 1, 3 and 5 nodes: time and etcd operations per deploy |'
write_section "$SECTION" "$ROW"
cat "$SECTION"
