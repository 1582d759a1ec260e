# shellcheck shell=bash
# The helpers every bench/*.sh script sources: tool installation, the release binaries, the benchmark lock, waiting
# for a quiet machine, process bookkeeping, CPU and memory readings, wrk reports, the statistics (`median`, `ratio`,
# `spread`) and the writer of a script's section in docs/BENCHMARKS.md. It measures nothing and never writes outside
# target/bench/, docs/BENCHMARKS.md and its own temp dirs in /tmp.
#
# A script sets BENCH (its name: bench/BENCH.sh, markers `<!-- BENCH:begin -->` and `<!-- BENCH:end -->`), then
#
#     source "$(dirname "$0")/lib.sh"        # cd's to the repository root; `-h`/`--help` prints the header and exits
#     if ! bench_locked; then                # outside the lock:
#         bench_tools wrk nginx testssl:testssl.sh   # commands (with their Debian package when it is named otherwise)
#         bench_binaries -p baton -p hello -- baton hello   # cargo build --release ARGS, then a private copy of FILES
#         bench_lock "$@"                    # re-runs the script under `flock /tmp/baton-bench.lock`; never returns
#     fi
#     bench_start                            # under the lock: BIN, a fresh OUT, TMP, the exit trap
#     wait_quiet
#     ...
#     write_section "$OUT/section.md" "$ROW"
#
# Benchmarks never overlap, and building never happens under the lock: a script builds, copies what it built to a
# private directory (others build into the same target/ while it waits), and only then waits for the lock.
# A script may define `bench_on_exit` for its own clean-up; it runs after the processes in PIDS were stopped.

[[ -n ${BENCH:-} ]] || {
    echo "bench/lib.sh: set BENCH before sourcing it" >&2
    exit 2
}
BENCH_SELF=$(realpath "$0")
cd "$(dirname "$BENCH_SELF")/.." || exit 2
export PATH="$PATH:/usr/sbin:/sbin"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    # The script's header: its comment lines after the shebang.
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$BENCH_SELF"
    exit 0
fi

BENCH_LOCK=/tmp/baton-bench.lock
OUT=target/bench/$BENCH
DOC=docs/BENCHMARKS.md
BEGIN="<!-- $BENCH:begin -->"
END="<!-- $BENCH:end -->"
QUIET_LOAD=${QUIET_LOAD:-0.60}
LIFETIME=${LIFETIME:-1800} # no process started by `start` lives longer than this (seconds)
# shellcheck disable=SC2034 # for the scripts: clock ticks a second, the unit of `cpu_split`
HZ=$(getconf CLK_TCK)
PIDS=()

log() { printf '== %s\n' "$*" >&2; }
die() {
    printf '%s bench: %s\n' "$BENCH" "$*" >&2
    exit 2
}

# --- outside the lock -----------------------------------------------------------------------------------------------

# bench_locked: whether this run of the script is the one under the lock.
bench_locked() { [[ ${BATON_BENCH_LOCKED:-} == "$BENCH_SELF" ]]; }

# bench_tools COMMAND[:PACKAGE]...: installs the Debian packages of the commands that are missing (needs root). Their
# services are never started: invoke-rc.d asks policy-rc.d whether to start one, and 101 means "no".
bench_tools() {
    local spec missing=() policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null || missing+=("${spec#*:}")
    done
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}: apt-get install ${missing[*]} (as root)"
    log "installing ${missing[*]} from Debian's packages (their services are not started)"
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        made_policy=1
    fi
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null; } || rc=$?
    ((made_policy)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install ${missing[*]} failed"
}

# bench_commit: exports BENCH_COMMIT, what the measured binaries were built from (unless the caller said it): the
# commit, and the files under crates/ and the manifests that differ from it.
bench_commit() {
    [[ -z ${BENCH_COMMIT:-} ]] || return 0
    local changed
    BENCH_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    changed=$(git status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null | awk '{ print $2 }' | paste -sd, - | sed 's/,/, /g')
    [[ -z $changed ]] || BENCH_COMMIT+=" with uncommitted changes to $changed"
    export BENCH_COMMIT
}

# bench_binaries CARGO_ARGS... -- FILE...: `cargo build --release CARGO_ARGS`, then copies FILE... (paths under
# target/release) into a private directory, exported as BENCH_BIN_DIR (each file under its base name). With
# BATON_BIN=DIR the files are taken from DIR instead of being built, and BENCH_COMMIT must say what they were built
# from.
bench_binaries() {
    local cargo_args=() src file
    while (($#)) && [[ $1 != -- ]]; do
        cargo_args+=("$1")
        shift
    done
    (($#)) && shift
    if [[ -n ${BATON_BIN:-} ]]; then
        log "using the binaries in $BATON_BIN (not building)"
        [[ -n ${BENCH_COMMIT:-} ]] || die "with BATON_BIN, say what was built with BENCH_COMMIT=TEXT"
        src=$BATON_BIN
    else
        log "building release binaries: cargo build --release ${cargo_args[*]}"
        cargo build --release "${cargo_args[@]}"
        src=target/release
    fi
    bench_commit
    BENCH_BIN_DIR=$(mktemp -d "/tmp/baton-$BENCH-bench-bin.XXXXXX")
    for file in "$@"; do
        # With BATON_BIN, a file may also stand at DIR's top level (a directory of copies).
        if [[ -x $src/$file ]]; then
            cp "$src/$file" "$BENCH_BIN_DIR/"
        elif [[ -x $src/$(basename "$file") ]]; then
            cp "$src/$(basename "$file")" "$BENCH_BIN_DIR/"
        else
            die "$src/$file is missing"
        fi
    done
    export BENCH_BIN_DIR
}

# bench_lock "$@": re-runs the script under the benchmark lock (waiting at most an hour); never returns.
bench_lock() {
    bench_commit
    log "waiting for the benchmark lock $BENCH_LOCK (at most 1 h)"
    BATON_BENCH_LOCKED=$BENCH_SELF exec flock -w 3600 -E 75 "$BENCH_LOCK" "$BENCH_SELF" "$@"
}

# --- under the lock -------------------------------------------------------------------------------------------------

# bench_start: BIN (the private copies, or target/release), a fresh OUT, a temp dir TMP (short: it may hold Unix
# sockets), the open-file limit raised, and the trap that stops every process in PIDS on exit.
bench_start() {
    # shellcheck disable=SC2034 # for the scripts
    BIN=${BENCH_BIN_DIR:-target/release}
    rm -rf "$OUT"
    mkdir -p "$OUT"
    TMP=$(mktemp -d "/tmp/baton-$BENCH-bench.XXXXXX")
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local pid
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    declare -F bench_on_exit >/dev/null && bench_on_exit
    [[ -n ${TMP:-} ]] && rm -rf "$TMP"
    [[ ${BENCH_BIN_DIR:-} == /tmp/baton-"$BENCH"-bench-bin.* ]] && rm -rf "$BENCH_BIN_DIR"
    return 0
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# wait_quiet: waits up to QUIET_WAIT seconds for the 1-minute load average to drop to QUIET_LOAD; sets
# LOAD_BEFORE_WAIT, LOAD_START and waited (seconds).
wait_quiet() {
    local threshold
    # shellcheck disable=SC2034 # for the scripts
    LOAD_BEFORE_WAIT=$(loadavg)
    waited=0
    threshold=$(awk -v q="$QUIET_LOAD" 'BEGIN { printf "%d", q * 100 }')
    while (($(awk '{ print int($1 * 100) }' /proc/loadavg) > threshold)); do
        if ((waited >= ${QUIET_WAIT:-180})); then
            log "the machine is still busy after ${waited}s (load $(loadavg)); measuring anyway"
            break
        fi
        ((waited % 60 == 0)) && log "waiting for load average ≤ $QUIET_LOAD (now $(loadavg))"
        sleep 10
        waited=$((waited + 10))
    done
    LOAD_START=$(loadavg)
    log "load average $LOAD_START (waited ${waited}s)"
}

# --- the section's text ---------------------------------------------------------------------------------------------

# note TEXT: one item of the section's "Noticed in this run" (see `notes_section`).
NOTES=""
note() { NOTES+="- $*"$'\n'; }

# quiet_note: a sentence when the machine was not quiet as measuring started (after `wait_quiet`), else nothing.
quiet_note() {
    awk -v l="${LOAD_START%% *}" -v q="$QUIET_LOAD" 'BEGIN { exit !(l > q) }' &&
        echo "The machine was not quiet when the measurements started (load average $LOAD_START after waiting ${waited} s): other work shared the cores, which affects every side alike only on average."
    return 0
}

# note_if_busy: notes `quiet_note`'s sentence, if there is one.
note_if_busy() {
    local sentence
    sentence=$(quiet_note)
    [[ -z $sentence ]] || note "$sentence"
}

# notes_section: the "Noticed in this run" subsection of the notes so far (nothing without notes).
notes_section() {
    [[ -n $NOTES ]] || return 0
    echo "### Noticed in this run"
    echo
    printf '%s' "$NOTES"
    echo
}

# written_by: the section's first sentence: the script, the time and what was measured.
written_by() { echo "Written by \`bench/$BENCH.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') at commit $BENCH_COMMIT."; }

# machine_line: the "Machine: ..." sentence of a section.
machine_line() {
    local cpu
    cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //' || true)
    echo "Machine: $(nproc) cores (${cpu:-unknown CPU}), Linux $(uname -r)"
}

# bench_test_cert DIR: a test CA (DIR/ca.pem) and its ECDSA P-256 certificate for bench.test (DIR/server.pem,
# DIR/server.key; DIR/haproxy.pem holds both), made with the openssl CLI; its output goes to DIR/certs.log.
bench_test_cert() {
    local dir=$1
    mkdir -p "$dir"
    {
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key"
        openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 365 -subj '/CN=baton bench test CA' \
            -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' -out "$dir/ca.pem"
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/server.key"
        printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' \
            'subjectAltName=DNS:bench.test' >"$dir/server.ext"
        openssl req -new -key "$dir/server.key" -subj '/CN=bench.test' -out "$dir/server.csr"
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
            -days 365 -sha256 -extfile "$dir/server.ext" -out "$dir/server.pem"
        cat "$dir/server.pem" "$dir/server.key" >"$dir/haproxy.pem"
    } >"$dir/certs.log" 2>&1 || die "could not make the certificate; see $dir/certs.log"
}

# nginx_main NAME [WORKERS]: the main-context lines of a benchmark's nginx NAME: WORKERS worker processes (1 by
# default, and then no master process), in the foreground, its pid under $TMP/NAME and its errors in
# $OUT/NAME-error.log.
nginx_main() {
    local workers=${2:-1}
    cat <<EOF
worker_processes $workers;
daemon off;
master_process $( ((workers == 1)) && echo off || echo on);
pid $TMP/$1/nginx.pid;
error_log $PWD/$OUT/$1-error.log warn;
EOF
}

# nginx_get_backend CONNECTIONS: writes $OUT/backend.conf, an nginx answering every request with BODY (1 KiB) on
# 127.0.0.1:BACKEND_PORT (both set here) with CONNECTIONS worker connections, its files under $TMP/backend; the
# caller starts it (pinned or not).
nginx_get_backend() {
    BODY=$(printf 'x%.0s' $(seq 1024))
    mkdir -p "$TMP/nginx" "$TMP/backend"
    BACKEND_PORT=$(free_port)
    cat >"$OUT/backend.conf" <<EOF
# bench/$BENCH.sh: the GET backend, a 1 KiB answer.
$(nginx_main backend)
events { worker_connections $1; }
http {
    access_log off;
$(nginx_http_common | sed "s|$TMP/nginx|$TMP/backend|")
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        location / { default_type text/plain; return 200 "$BODY"; }
    }
}
EOF
}

# nginx_http_common: the lines of an nginx `http` block every benchmark shares: temp paths in $TMP/nginx (never the
# system's), and client keep-alive that outlasts any run.
nginx_http_common() {
    cat <<EOF
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
EOF
}

# nginx_upstream_backend: the upstream `backend` ($BACKEND) over up to 64 idle keep-alive connections.
nginx_upstream_backend() {
    cat <<EOF
    upstream backend {
        server $BACKEND;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
EOF
}

# nginx_proxy_location: an nginx `location /` that proxies to the upstream `backend` over keep-alive connections
# and sets the forwarding headers baton always sets, so that every proxy does the same work.
nginx_proxy_location() {
    cat <<'EOF'
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Request-Id $request_id;
        }
EOF
}

# --- processes ------------------------------------------------------------------------------------------------------

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_line FILE REGEX SECONDS PID: waits until FILE has a line matching REGEX (while PID lives).
wait_line() {
    local file=$1 pattern=$2 deadline=$((SECONDS + $3)) pid=$4
    until grep -qE -- "$pattern" "$file" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "process exited before printing '$pattern'; see $file"
        ((SECONDS < deadline)) || die "timed out waiting for '$pattern' in $file"
        sleep 0.05
    done
}

# wait_port PORT SECONDS PID: waits until 127.0.0.1:PORT accepts connections.
wait_port() {
    local port=$1 deadline=$((SECONDS + $2)) pid=$3
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "process $pid exited before listening on port $port"
        ((SECONDS < deadline)) || die "timed out waiting for port $port"
        sleep 0.05
    done
}

# start NAME CMD...: starts a server in the background (bounded to LIFETIME), stdout/stderr in $OUT/NAME.*; sets PID
# (the `timeout` wrapper) and REAL (the server itself).
start() {
    local name=$1
    shift
    RUST_LOG=${RUST_LOG:-info} timeout -k 5 "$LIFETIME" "$@" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" </dev/null &
    PID=$!
    PIDS+=("$PID")
    REAL=""
    for _ in $(seq 100); do
        REAL=$(pgrep -P "$PID" | head -1 || true)
        [[ -n $REAL ]] && break
        sleep 0.02
    done
    [[ -n $REAL ]] || die "could not find the process of $name"
}

# listening NAME PID: waits for the `listening on ADDR` line of a server started as NAME; prints ADDR.
listening() {
    wait_line "$OUT/$1.stdout" '^listening on ' 30 "$2"
    grep -m1 '^listening on ' "$OUT/$1.stdout" | sed 's/^listening on //'
}

# stop PID: SIGTERM to the server under the `timeout` wrapper PID, then waits at most 60 s. Not to `timeout` itself:
# it passes a signal on to its child *and* to its process group, so the server would get two SIGTERMs, and a second
# stop signal makes baton kill its instances instead of draining them.
stop() {
    local pid=$1 child
    child=$(pgrep -P "$pid" | head -1 || true)
    kill -TERM "${child:-$pid}" 2>/dev/null || true
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    wait "$pid" 2>/dev/null || true
}

# tree PID: PID and all its descendants.
tree() {
    local p=$1 c
    echo "$p"
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree "$c"; done
}

# wait_conns_ready FILE PID SECONDS: waits until bench/proxy/conns.py (process PID, writing to FILE) has opened and
# answered all its connections (its `ready` line), ended, or SECONDS passed.
wait_conns_ready() {
    local deadline=$((SECONDS + $3))
    until grep -q '^ready ' "$1" 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || break
        ((SECONDS < deadline)) || break
        sleep 0.2
    done
}

# rss_kib PID: VmRSS of PID and its descendants (a master and its workers), in KiB.
rss_kib() {
    local total=0 p v
    for p in $(tree "$1"); do
        v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# cpu_split PID: "user system" CPU time of PID and its descendants, in clock ticks (HZ a second).
cpu_split() {
    local user=0 sys=0 p u s
    for p in $(tree "$1"); do
        read -r u s < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12, $13 }') || true
        user=$((user + ${u:-0})) sys=$((sys + ${s:-0}))
    done
    echo "$user $sys"
}
# cpu_ticks PID: user + system CPU time of PID and its descendants, in clock ticks.
cpu_ticks() { cpu_split "$1" | awk '{ print $1 + $2 }'; }
# machine_busy: CPU ticks the whole machine spent busy (all cores; not idle, not iowait), from /proc/stat.
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# own_children: CPU ticks of this shell's finished children (wrk, once it has been waited for).
own_children() { sed 's/^.*) //' "/proc/$$/stat" | awk '{ print $14 + $15 }'; }

# parse_wrk FILE: prints "req/s p99_ms errors requests bytes_per_request" of a wrk report (errors: socket errors and
# non-2xx responses).
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000;
            if (v ~ /ms$/) return v + 0;
            if (v ~ /s$/) return v * 1000;
            return v + 0;
        }
        function bytes(v) {
            if (v ~ /GB$/) return v * 1073741824;
            if (v ~ /MB$/) return v * 1048576;
            if (v ~ /KB$/) return v * 1024;
            return v + 0;
        }
        /^ +99%/ { p99 = ms($2) }
        / requests in / { n = $1; b = bytes($5) }
        /Requests\/sec:/ { rps = $2 }
        /Socket errors:/ { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { errors += $5 }
        END { printf "%.0f %.2f %d %d %.0f\n", rps, p99, errors, n, (n > 0 ? b / n : 0) }
    ' "$1"
}

# --- statistics -----------------------------------------------------------------------------------------------------

# median: of the numbers on stdin, one a line ("n/a" for none).
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# ratio A B: A / B to three places ("n/a" when B is 0 or either is "n/a").
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "n/a" || b == "n/a") print "n/a"; else printf "%.3f", a / b }'; }
# spread N...: "lowest–highest".
spread() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s–%s", lo, hi }'; }

# --- docs/BENCHMARKS.md ---------------------------------------------------------------------------------------------

# write_section FILE ROW: puts FILE (a section from BEGIN to END) in DOC in place of the previous one, or appends it;
# ROW is the script's row in the table of sections, added once (after the table's last row).
write_section() {
    local section=$1 row=$2
    if [[ ! -f $DOC ]]; then
        printf '# Benchmarks\n\n| section | script | what it measures |\n|---|---|---|\n' >"$DOC"
    fi
    awk -v begin="$BEGIN" -v end="$END" -v section="$section" -v row="$row" -v script="\`bench/$BENCH.sh\`" '
        function emit() { while ((getline line < section) > 0) print line; close(section) }
        FNR == NR { if (index($0, script) && substr($0, 1, 1) == "|") has_row = 1; if ($0 == begin) has_section = 1; next }
        # The first table whose header names a section and a script: add the row after its last row.
        !has_row && !done_row && /^\| section \| script \|/ { in_table = 1 }
        in_table && !/^\|/ { print row; in_table = 0; done_row = 1 }
        $0 == begin { emit(); skip = 1; next }
        $0 == end { skip = 0; next }
        !skip { print }
        END {
            if (in_table) print row
            if (!has_section) { print ""; emit() }
        }
    ' "$DOC" "$DOC" >"$DOC.$BENCH.tmp"
    mv "$DOC.$BENCH.tmp" "$DOC"
    log "wrote the section to $DOC (raw outputs in $OUT/)"
}
