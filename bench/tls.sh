#!/usr/bin/env bash
# Checks `baton serve`'s HTTPS listener with testssl.sh and benchmarks it against nginx in one run, and records the
# results in docs/BENCHMARKS.md (between `<!-- tls:begin -->` and `<!-- tls:end -->`):
#
#  0. a test CA and two server certificates for bench.test (ECDSA P-256 and RSA 2048, signed by the CA), made with
#     the openssl CLI; baton and nginx serve the same files, in front of the same single `hello` backend, each with
#     one worker thread, TLS 1.2 + 1.3, the same nine AEAD suites (rustls's defaults), session resumption on, h2 in
#     ALPN, and HSTS (`max-age=31536000; includeSubDomains`);
#  1. handshakes/s: `wrk -t1 -cHS_CONNECTIONS -dHS_DURATION -H 'Connection: close'`, one request per connection and a
#     full handshake on each (wrk would resume the previous session: bench/tls/fresh-session.c, preloaded, makes it
#     forget it; a probe against nginx's `$ssl_session_reused` checks that no handshake was resumed), TLS 1.3 and TLS
#     1.2 (bench/tls/openssl-tls12.cnf caps the client), ECDSA and RSA certificates, plus resumed TLS 1.3 handshakes
#     (wrk as it is); ROUNDS rounds, baton and nginx alternating; median requests/s, the ratio, and the CPU time each
#     server spent per new connection;
#  2. keep-alive throughput: `wrk -t1 -cKA_CONNECTIONS -dKA_DURATION --latency`, GET / (a 37-byte body) over TLS 1.3
#     keep-alive connections, ROUNDS rounds alternating; median requests/s, p99, CPU per request, ratios;
#  3. testssl.sh (Debian's package) against baton's listeners (ECDSA and RSA, default policy) and nginx's ECDSA one,
#     the test CA trusted (`--add-ca`), JSON output; findings counted by severity. A short extra run (`-h`) shows what
#     testssl says of a baton listener without HSTS.
#
# Usage: bench/tls.sh   (ROUNDS=3 HS_DURATION=5s HS_CONNECTIONS=32 KA_DURATION=10s KA_CONNECTIONS=64;
#                        QUIET_LOAD=0.60 QUIET_WAIT=300 wait up to QUIET_WAIT s for the 1-minute load average to drop
#                        to QUIET_LOAD; BATON_BIN=DIR measures the baton and hello binaries in DIR instead of building
#                        them, and then BENCH_COMMIT=TEXT must say what they were built from; BENCH_COMMIT=TEXT also
#                        names the source outside a git checkout)
# Needs root to install nginx, wrk, testssl.sh, openssl and gcc from Debian's packages when they are missing (the
# system services are never started: nginx runs in the foreground with a config written to a temp dir).
# Measurements run under `flock /tmp/baton-bench.lock` so that benchmarks never overlap. A run takes about 6 minutes
# with the defaults (plus the build, plus the wait for a quiet machine).
# Raw outputs (certificates and keys of the test CA, configs, logs, wrk reports, testssl's text and JSON) are kept in
# target/bench/tls/.
# Exits 1 if testssl reports a HIGH or CRITICAL finding on a baton listener with the default policy, or if wrk saw an
# error from baton (the section is still written, with the findings); 2 if the run could not be carried out.
set -euo pipefail
BENCH=tls
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
HS_DURATION=${HS_DURATION:-5s}
HS_CONNECTIONS=${HS_CONNECTIONS:-32}
KA_DURATION=${KA_DURATION:-10s}
KA_CONNECTIONS=${KA_CONNECTIONS:-64}
QUIET_WAIT=${QUIET_WAIT:-300}
LIFETIME=1500
HERE=bench/tls
NAME=bench.test

if ! bench_locked; then
    bench_tools nginx wrk testssl:testssl.sh openssl cc:gcc python3 curl
    bench_binaries -p baton -p hello -- baton hello
    cc -shared -fPIC -O2 -Wall -o "$BENCH_BIN_DIR/fresh-session.so" "$HERE/fresh-session.c" -ldl ||
        die "could not build $HERE/fresh-session.c"
    bench_lock "$@"
fi

# --- under the lock ------------------------------------------------------------------------------------------------

bench_start
BATON=$BIN/baton
HELLO=$BIN/hello
SHIM=$(realpath "$BIN/fresh-session.so" 2>/dev/null || true)
for b in "$BATON" "$HELLO"; do [[ -x $b ]] || die "$b is missing: cargo build --release"; done
[[ -f $SHIM ]] || die "$BIN/fresh-session.so is missing: run bench/tls.sh itself, which builds it"
TLS12_CONF=$PWD/$HERE/openssl-tls12.cnf
mkdir -p "$OUT/certs"

wait_quiet
RUN_STARTED=$SECONDS

# --- 0. certificates -----------------------------------------------------------------------------------------------

# A test CA (ECDSA P-256) and two server certificates for $NAME signed by it: ECDSA P-256 and RSA 2048. Valid for a
# year (testssl warns below 60 days), with a CRL distribution point as a public CA's certificates have (testssl
# reports a certificate with neither a CRL nor an OCSP URI as HIGH; the URL is never fetched: no --phone-out).
CERTS=$PWD/$OUT/certs
log "making a test CA and certificates for $NAME in $CERTS"
{
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$CERTS/ca.key"
    openssl req -x509 -new -key "$CERTS/ca.key" -sha256 -days 365 -subj '/CN=baton bench test CA' \
        -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' -out "$CERTS/ca.pem"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$CERTS/ecdsa.key"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$CERTS/rsa.key"
    for kind in ecdsa rsa; do
        usage=digitalSignature
        [[ $kind == rsa ]] && usage+=,keyEncipherment
        printf '%s\n' 'basicConstraints=critical,CA:FALSE' "keyUsage=critical,$usage" 'extendedKeyUsage=serverAuth' \
            "subjectAltName=DNS:$NAME" "crlDistributionPoints=URI:http://$NAME/ca.crl" >"$CERTS/$kind.ext"
        openssl req -new -key "$CERTS/$kind.key" -subj "/CN=$NAME" -out "$CERTS/$kind.csr"
        openssl x509 -req -in "$CERTS/$kind.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" -CAcreateserial \
            -days 365 -sha256 -extfile "$CERTS/$kind.ext" -out "$CERTS/$kind.pem"
    done
} >"$OUT/certs.log" 2>&1 || die "could not make the certificates; see $OUT/certs.log"

# --- servers -------------------------------------------------------------------------------------------------------

log "starting hello (backend)"
start hello "$HELLO" --listen 127.0.0.1:0 --app-version bench
HELLO_PID=$PID HELLO_REAL=$REAL
BACKEND=$(listening hello "$HELLO_PID")

HSTS_TOML=$'[listener.tls.hsts]\nmax_age = "365d"\ninclude_subdomains = true'
cat >"$OUT/baton.toml" <<EOF
# bench/tls.sh: HTTPS listeners with the default TLS policy in front of one backend. The last listener is only for
# a short testssl run (no HSTS).
[proxy]
drain_timeout = "5s"

[[listener]]
name = "ecdsa"
address = "127.0.0.1:0"
max_connections = 20000
[listener.tls]
certificates = [{ cert = "$CERTS/ecdsa.pem", key = "$CERTS/ecdsa.key" }]
$HSTS_TOML

[[listener]]
name = "rsa"
address = "127.0.0.1:0"
max_connections = 20000
[listener.tls]
certificates = [{ cert = "$CERTS/rsa.pem", key = "$CERTS/rsa.key" }]
$HSTS_TOML

[[listener]]
name = "ecdsa-no-hsts"
address = "127.0.0.1:0"
[listener.tls]
certificates = [{ cert = "$CERTS/ecdsa.pem", key = "$CERTS/ecdsa.key" }]

[pool.app]
members = [{ address = "$BACKEND" }]

[[route]]
pool = "app"
EOF
"$BATON" check "$OUT/baton.toml" >"$OUT/check.txt" 2>&1 || die "baton check refused the config: $OUT/check.txt"

log "starting baton serve"
start baton "$BATON" serve --config "$OUT/baton.toml"
BATON_PID=$PID BATON_REAL=$REAL
wait_line "$OUT/baton.stderr" ': ready$' 30 "$BATON_PID"
mapfile -t BATON_ADDRS < <(grep '^listening on ' "$OUT/baton.stdout" | sed 's/^listening on //')
((${#BATON_ADDRS[@]} == 3)) || die "baton printed ${#BATON_ADDRS[@]} listening lines, not 3; see $OUT/baton.stdout"

log "starting nginx"
mkdir -p "$TMP/nginx"
NGINX_ECDSA_PORT=$(free_port)
NGINX_RSA_PORT=$(free_port)
NGINX_PROBE_PORT=$(free_port)
NGINX_V=$(nginx -v 2>&1 | sed 's/^nginx version: nginx\///')
# `listen ... http2` until nginx 1.25.1, `http2 on;` since.
if printf '%s\n1.25.1\n' "$NGINX_V" | sort -V -C; then
    H2_LISTEN=" http2" H2_ON=""
else
    H2_LISTEN="" H2_ON="http2 on;"
fi
NGINX_SUITES12=ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305
NGINX_SUITES13=TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256
nginx_server() { # PORT CERT [ACCESS_LOG]
    cat <<EOF
    server {
        listen 127.0.0.1:$1 ssl$H2_LISTEN backlog=4096;
        $H2_ON
        ssl_certificate $CERTS/$2.pem;
        ssl_certificate_key $CERTS/$2.key;
        ${3:-}
$(nginx_proxy_location)
    }
EOF
}
cat >"$OUT/nginx.conf" <<EOF
# bench/tls.sh: one worker, TLS 1.2 + 1.3 with rustls's nine default suites in rustls's order, the server's order
# (as baton), the same groups, session cache and tickets on, h2, HSTS; keep-alive to the upstream, no access log
# except on the probe port (which checks that the load client makes full handshakes).
$(nginx_main nginx)
worker_rlimit_nofile 65536;
events {
    worker_connections 20480;
}
http {
    access_log off;
    log_format probe '\$ssl_protocol \$ssl_session_reused \$ssl_cipher';
$(nginx_http_common)
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers $NGINX_SUITES12;
    ssl_conf_command Ciphersuites $NGINX_SUITES13;
    ssl_prefer_server_ciphers on;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
$(nginx_upstream_backend)
$(nginx_server "$NGINX_ECDSA_PORT" ecdsa)
$(nginx_server "$NGINX_RSA_PORT" rsa)
$(nginx_server "$NGINX_PROBE_PORT" ecdsa "access_log $PWD/$OUT/nginx-probe.log probe;")
}
EOF
start nginx nginx -p "$TMP/nginx/" -c "$PWD/$OUT/nginx.conf" -e "$PWD/$OUT/nginx-error.log"
NGINX_PID=$PID NGINX_REAL=$REAL
for p in "$NGINX_ECDSA_PORT" "$NGINX_RSA_PORT" "$NGINX_PROBE_PORT"; do wait_port "$p" 30 "$NGINX_PID"; done

declare -A ADDR=(
    [baton-ecdsa]=${BATON_ADDRS[0]} [baton-rsa]=${BATON_ADDRS[1]}
    [nginx-ecdsa]=127.0.0.1:$NGINX_ECDSA_PORT [nginx-rsa]=127.0.0.1:$NGINX_RSA_PORT
)
BATON_NOHSTS_ADDR=${BATON_ADDRS[2]}
declare -A REALPID=([baton]=$BATON_REAL [nginx]=$NGINX_REAL)
SERVERS=(baton nginx)

# Every listener answers GET / through the backend over HTTPS with the test CA, with HSTS; and what a default
# OpenSSL client negotiates with each, per TLS version.
CHECK_FAILED=0
declare -A HSTS_HDR NEGOTIATED
for s in "${SERVERS[@]}"; do
    for cert in ecdsa rsa; do
        a=${ADDR[$s-$cert]}
        hdrs=$(curl -sS --max-time 5 --cacert "$CERTS/ca.pem" --resolve "$NAME:${a##*:}:127.0.0.1" -D - -o "$TMP/body" \
            "https://$NAME:${a##*:}/" 2>&1 || true)
        if ! grep -qi '^x-instance:' <<<"$hdrs" || ! grep -q '^Hello' "$TMP/body"; then
            log "check failed: $s ($cert) did not answer GET / through the backend: ${hdrs:0:300}"
            CHECK_FAILED=1
        fi
        HSTS_HDR[$s-$cert]=$(grep -i '^strict-transport-security:' <<<"$hdrs" | sed 's/^[^:]*: *//; s/\r$//' || true)
        [[ -n ${HSTS_HDR[$s-$cert]} ]] || { log "check failed: no HSTS header from $s ($cert)"; CHECK_FAILED=1; }
        for v in 1.3 1.2; do
            info=$(openssl s_client -connect "$a" -servername "$NAME" -CAfile "$CERTS/ca.pem" -verify_return_error \
                "-tls${v/./_}" </dev/null 2>&1 || true)
            # "New, TLSv1.3, Cipher is X" comes with the handshake; the SSL-Session block, only once a TLS 1.3
            # server's tickets have arrived.
            proto=$(sed -n 's/^New, \(TLSv1\.[0-9]\), Cipher is .*/\1/p' <<<"$info" | head -1)
            cipher=$(sed -n 's/^New, TLSv1\.[0-9], Cipher is //p' <<<"$info" | head -1)
            kx=$(sed -n 's/^Server Temp Key: //p' <<<"$info" | head -1)
            sig=$(sed -n 's/^Peer signature type: //p' <<<"$info" | head -1)
            NEGOTIATED[$s-$cert-$v]="$proto, $cipher, ${kx:-?}, ${sig:-?}"
            [[ $proto == "TLSv$v" ]] || { log "check failed: $s ($cert) did not negotiate TLS $v"; CHECK_FAILED=1; }
            printf '%s\n' "$info" >"$OUT/s_client-$s-$cert-$v.txt"
        done
    done
done
((CHECK_FAILED == 0)) || die "a server does not answer as expected: see above and $OUT/"

# --- the load client makes a full handshake per connection ---------------------------------------------------------

# wrk_hs FILE ADDR TLS(1.3|1.2) FRESH(1|0) DURATION: `wrk -H 'Connection: close'`, a new TLS connection per
# request; FRESH=1 preloads the shim so that no handshake is resumed. In the foreground, so that wrk's CPU time ends
# up in this shell's children's times.
wrk_hs() {
    local file=$1 addr=$2 tls=$3 fresh=$4 duration=$5 env=()
    [[ $tls == 1.2 ]] && env+=("OPENSSL_CONF=$TLS12_CONF")
    ((fresh)) && env+=("LD_PRELOAD=$SHIM" "FRESH_SESSION_REPORT=$file.shim")
    timeout -k 5 120 env "${env[@]}" wrk -t1 -c"$HS_CONNECTIONS" -d"$duration" --latency -H 'Connection: close' \
        "https://$addr/" >"$file"
}
# wrk_ka FILE ADDR DURATION: keep-alive GET / over TLS (1.3, as wrk negotiates).
wrk_ka() {
    timeout -k 5 120 wrk -t1 -c"$KA_CONNECTIONS" -d"$3" --latency "https://$2/" >"$1"
}

# probe NAME TLS FRESH: 2 s of wrk_hs against nginx's probe port; prints "full resumed protocols" from its log.
probe() {
    local log=$OUT/nginx-probe.log
    : >"$log"
    wrk_hs "$OUT/wrk-probe-$1.txt" "127.0.0.1:$NGINX_PROBE_PORT" "$2" "$3" 2s || die "wrk failed in probe $1"
    sleep 0.2
    cp "$log" "$OUT/nginx-probe-$1.log"
    awk '{ if ($2 == "r") r++; else f++; p[$1 " " $3]++ }
         END { s = ""; for (k in p) s = s (s == "" ? "" : "; ") k " ×" p[k]; printf "%d %d %s\n", f, r, s }' "$log"
}
log "checking that wrk makes a full handshake per connection (nginx's \$ssl_session_reused on a probe port)"
declare -A PROBE
for spec in fresh-1.3:1.3:1 fresh-1.2:1.2:1 plain-1.3:1.3:0; do
    IFS=: read -r name tls fresh <<<"$spec"
    PROBE[$name]=$(probe "$name" "$tls" "$fresh")
    log "probe $name: $(awk '{ printf "%d full, %d resumed handshakes", $1, $2 }' <<<"${PROBE[$name]}") (${PROBE[$name]#* * })"
done
for name in fresh-1.3 fresh-1.2; do
    read -r full resumed rest <<<"${PROBE[$name]}"
    ((resumed == 0 && full > 0)) || die "wrk with $HERE/fresh-session.c resumed $resumed of $((full + resumed)) handshakes; see $OUT/nginx-probe-$name.log"
    [[ $rest == "TLSv${name#fresh-} "* && $rest != *";"* ]] || die "probe $name negotiated $rest; see $OUT/nginx-probe-$name.log"
done
SHIM_FORGOT=$(sed -n 's/^sessions forgotten before a handshake: //p' "$OUT/wrk-probe-fresh-1.3.txt.shim" 2>/dev/null || echo "?")
PROBE_REQS=$(parse_wrk "$OUT/wrk-probe-fresh-1.3.txt" | awk '{ print $4 }')

# --- 1. handshakes/s and 2. keep-alive throughput ------------------------------------------------------------------

# measure KIND SERVER VARIANT ROUND FILE CMD...: runs CMD (a wrk) and records requests/s, p99, errors, the server's
# CPU per request, wrk's share of a core and the CPU other work used, under KIND (hs or ka) and VARIANT.
declare -A RPS P99 CPU_US WRK_PCT OTHER ERRS
ROWS="" KA_ROWS="" BATON_ERRORS=0 NGINX_ERRORS=0
measure() {
    local kind=$1 s=$2 v=$3 round=$4 file=$5
    shift 5
    local cu0 cs0 cu1 cs1 h0 h1 w0 w1 m0 m1 t0 t1 rps p99 errs reqs us wpct other k="$kind|$v|$s"
    read -r cu0 cs0 < <(cpu_split "${REALPID[$s]}")
    h0=$(cpu_ticks "$HELLO_REAL") w0=$(own_children) m0=$(machine_busy) t0=$(date +%s.%N)
    "$@" || die "wrk failed against $s ($v); see $file"
    t1=$(date +%s.%N)
    read -r cu1 cs1 < <(cpu_split "${REALPID[$s]}")
    h1=$(cpu_ticks "$HELLO_REAL") w1=$(own_children) m1=$(machine_busy)
    read -r rps p99 errs reqs _ < <(parse_wrk "$file")
    us=$(awk -v c=$((cu1 + cs1 - cu0 - cs0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", n ? c / hz * 1e6 / n : 0 }')
    wpct=$(awk -v c=$((w1 - w0)) -v hz="$HZ" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", c / hz / (b - a) * 100 }')
    other=$(awk -v m=$((m1 - m0)) -v o=$((cu1 + cs1 - cu0 - cs0 + h1 - h0 + w1 - w0)) -v hz="$HZ" -v a="$t0" -v b="$t1" \
        'BEGIN { v = (m - o) / hz / (b - a) * 100; printf "%.0f", v < 0 ? 0 : v }')
    RPS[$k]+="$rps " P99[$k]+="$p99 " CPU_US[$k]+="$us " WRK_PCT[$k]+="$wpct "
    OTHER[$kind]+="$other "
    ERRS[$k]=$((${ERRS[$k]:-0} + errs))
    if [[ $s == baton ]]; then BATON_ERRORS=$((BATON_ERRORS + errs)); else NGINX_ERRORS=$((NGINX_ERRORS + errs)); fi
    log "round $round: $s, $v: $rps req/s, p99 $p99 ms, errors $errs, server CPU $us µs/request, wrk ${wpct} % of a core, other work ${other} %"
    local row="| $round | $v | $s | $rps | $p99 ms | $errs | $us µs | $wpct % | $other % |"$'\n'
    if [[ $kind == hs ]]; then ROWS+=$row; else KA_ROWS+=$row; fi
}

# Handshake variants: NAME CERT TLS FRESH.
HS_VARIANTS=("ECDSA, TLS 1.3:ecdsa:1.3:1" "ECDSA, TLS 1.2:ecdsa:1.2:1" "RSA, TLS 1.3:rsa:1.3:1" "RSA, TLS 1.2:rsa:1.2:1"
    "ECDSA, TLS 1.3, resumed:ecdsa:1.3:0")
slug() { tr 'A-Z' 'a-z' <<<"$1" | sed 's/[^a-z0-9.]\+/-/g'; }

log "warming up (1 s of new connections and 2 s of keep-alive each)"
for s in "${SERVERS[@]}"; do
    for cert in ecdsa rsa; do wrk_hs "$OUT/wrk-warmup-hs-$s-$cert.txt" "${ADDR[$s-$cert]}" 1.3 1 1s || true; done
    wrk_ka "$OUT/wrk-warmup-ka-$s.txt" "${ADDR[$s-ecdsa]}" 2s || true
done

LOAD_BEFORE_HS=$(loadavg)
for round in $(seq "$ROUNDS"); do
    order=(baton nginx)
    ((round % 2)) || order=(nginx baton)
    for spec in "${HS_VARIANTS[@]}"; do
        IFS=: read -r v cert tls fresh <<<"$spec"
        for s in "${order[@]}"; do
            f="$OUT/wrk-hs-$(slug "$v")-$s-$round.txt"
            measure hs "$s" "$v" "$round" "$f" wrk_hs "$f" "${ADDR[$s-$cert]}" "$tls" "$fresh" "$HS_DURATION"
        done
    done
done
LOAD_BEFORE_KA=$(loadavg)
for round in $(seq "$ROUNDS"); do
    order=(baton nginx)
    ((round % 2)) || order=(nginx baton)
    for s in "${order[@]}"; do
        f="$OUT/wrk-ka-$s-$round.txt"
        measure ka "$s" "keep-alive" "$round" "$f" wrk_ka "$f" "${ADDR[$s-ecdsa]}" "$KA_DURATION"
    done
done
LOAD_AFTER_WRK=$(loadavg)
# What wrk negotiated on its keep-alive connections (the same client library and defaults as the probe).
KA_NEGOTIATED=$(awk '{ print $1 ", " $3 }' "$OUT/nginx-probe-plain-1.3.log" | sort | uniq -c | sort -rn | head -1 | sed 's/^ *[0-9]* //')

med() { # KEY: median of a "+="-built list
    # shellcheck disable=SC2086
    printf '%s\n' $1 | median
}
declare -A MED_RPS MED_P99 MED_CPU MED_WRK
for key in "${!RPS[@]}"; do
    MED_RPS[$key]=$(med "${RPS[$key]}")
    MED_P99[$key]=$(med "${P99[$key]}")
    MED_CPU[$key]=$(med "${CPU_US[$key]}")
    MED_WRK[$key]=$(med "${WRK_PCT[$key]}")
done
OTHER_ALL=$(printf '%s\n' ${OTHER[hs]} ${OTHER[ka]})
OTHER_MED=$(med "$OTHER_ALL")
OTHER_MAX=$(printf '%s\n' $OTHER_ALL | sort -g | tail -1)

# --- 3. testssl.sh -------------------------------------------------------------------------------------------------

TESTSSL_V=$(dpkg-query -W -f '${Version}' testssl.sh 2>/dev/null || testssl --version 2>/dev/null | grep -m1 -o '3\.[0-9.]*' || echo "?")
# testssl_run NAME ADDR [OPTIONS...]: testssl against https://$NAME:PORT at ADDR's IP, the test CA trusted, no DNS
# look-ups; text in $OUT/testssl-NAME.txt, JSON in $OUT/testssl-NAME.json, summary in $OUT/testssl-NAME.summary.
TESTSSL_OPTS=(--quiet --color 0 --warnings batch --add-ca "$CERTS/ca.pem" --nodns none)
testssl_run() {
    local name=$1 addr=$2
    shift 2
    timeout -k 10 600 testssl "${TESTSSL_OPTS[@]}" --ip "${addr%:*}" "$@" --jsonfile "$OUT/testssl-$name.json" \
        "$NAME:${addr##*:}" >"$OUT/testssl-$name.txt" 2>&1 || true
    python3 "$HERE/findings.py" "$OUT/testssl-$name.json" >"$OUT/testssl-$name.summary" 2>>"$OUT/testssl-$name.txt" ||
        echo "failed" >"$OUT/testssl-$name.summary"
}
log "testssl.sh $TESTSSL_V: baton (ECDSA) and nginx (ECDSA), in parallel"
T0=$SECONDS
testssl_run baton-ecdsa "${ADDR[baton-ecdsa]}" &
p1=$!
testssl_run nginx-ecdsa "${ADDR[nginx-ecdsa]}" &
p2=$!
PIDS+=("$p1" "$p2")
wait "$p1" "$p2" || true
log "testssl.sh: baton (RSA) in full and baton without HSTS (-h), in parallel"
testssl_run baton-rsa "${ADDR[baton-rsa]}" &
p1=$!
testssl_run baton-no-hsts "$BATON_NOHSTS_ADDR" -h &
p2=$!
PIDS+=("$p1" "$p2")
wait "$p1" "$p2" || true
TESTSSL_SECONDS=$((SECONDS - T0))

TESTSSL_TARGETS=(baton-ecdsa baton-rsa nginx-ecdsa baton-no-hsts)
declare -A TS_LABEL=(
    [baton-ecdsa]="baton, ECDSA (default policy)" [baton-rsa]="baton, RSA (default policy)"
    [nginx-ecdsa]="nginx, ECDSA"
    [baton-no-hsts]="baton, ECDSA, no \`hsts\` (\`-h\` only)"
)
declare -A TS_COUNT
TESTSSL_FAILED=0 BATON_HIGH=0 BATON_HIGH_IDS=""
for t in "${TESTSSL_TARGETS[@]}"; do
    sum="$OUT/testssl-$t.summary"
    if ! grep -q '^counts ' "$sum"; then
        log "testssl did not complete against $t: see $OUT/testssl-$t.txt"
        TESTSSL_FAILED=1
        continue
    fi
    TS_COUNT[$t]=$(sed -n 's/^counts //p' "$sum")
    log "testssl $t: ${TS_COUNT[$t]}"
    grep '^finding ' "$sum" | sed 's/^finding /   /' >&2 || true
    if [[ $t == baton-ecdsa || $t == baton-rsa ]]; then
        n=$(grep -cE '^finding (HIGH|CRITICAL) ' "$sum" || true)
        BATON_HIGH=$((BATON_HIGH + n))
        ((n == 0)) || BATON_HIGH_IDS+="$(grep -E '^finding (HIGH|CRITICAL) ' "$sum" | awk -v t="$t" '{ printf "%s %s (%s); ", $3, $2, t }')"
    fi
done
((TESTSSL_FAILED == 0)) || die "testssl.sh did not complete; see $OUT/testssl-*.txt"

LOAD_END=$(loadavg)
RUN_SECONDS=$((SECONDS - RUN_STARTED))
stop "$BATON_PID"
stop "$NGINX_PID"
stop "$HELLO_PID"

# --- the section in docs/BENCHMARKS.md -----------------------------------------------------------------------------

OPENSSL_V=$(openssl version | awk '{ print $2 }')
NGINX_OPENSSL=$(nginx -V 2>&1 | sed -n 's/^built with OpenSSL \([^ ]*\).*running with OpenSSL \([^ ]*\).*/built with OpenSSL \1, running with \2/p; s/^built with OpenSSL \([^ ]*\) .*/OpenSSL \1/p' | head -1)
WRK_V=$(wrk -v 2>&1 | head -1 | awk '{ print $2 }' || true)
lockver() { awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock; }
RUSTLS_V=$(lockver rustls)
RING_V=$(lockver ring)

# severity_cells TARGET: "| C | H | M | L | W | OK | INFO" from the counts line.
severity_cells() {
    tr ' ' '\n' <<<"${TS_COUNT[$1]}" | awk -F= '
        { c[$1] = $2 }
        END { printf "%s | %s | %s | %s | %s | %s | %s", c["CRITICAL"], c["HIGH"], c["MEDIUM"], c["LOW"], c["WARN"], c["OK"], c["INFO"] }'
}
# findings_list TARGET: the findings other than OK and INFO, as "SEVERITY `id` (text)", joined by "; ".
findings_list() {
    grep '^finding ' "$OUT/testssl-$1.summary" | sed 's/^finding //' |
        awk '{ sev = $1; id = $2; $1 = ""; $2 = ""; sub(/^ +/, ""); gsub(/\|/, "\\|"); printf "%s%s `%s` (%s)", (NR > 1 ? "; " : ""), sev, id, $0 }'
}
hsts_list() {
    grep '^hsts ' "$OUT/testssl-$1.summary" | sed 's/^hsts //' |
        awk '{ sev = $1; id = $2; $1 = ""; $2 = ""; sub(/^ +/, ""); printf "%s%s %s %s", (NR > 1 ? "; " : ""), sev, id, $0 }'
}
RD() { ratio "${MED_RPS[$1|$2|baton]}" "${MED_RPS[$1|$2|nginx]}"; }
CD() { ratio "${MED_CPU[$1|$2|baton]}" "${MED_CPU[$1|$2|nginx]}"; }
per_core() { awk -v u="$1" 'BEGIN { if (u + 0 > 0) printf "%.0f", 1e6 / u; else print "n/a" }'; }

((BATON_HIGH == 0)) ||
    note "**testssl.sh reports $BATON_HIGH HIGH or CRITICAL finding(s) on baton's listeners with the default policy**: ${BATON_HIGH_IDS%; }. See the findings above and \`$OUT/testssl-baton-*.txt\`."
grep -q '^finding HIGH cipher_order ' "$OUT/testssl-baton-ecdsa.summary" &&
    note "The HIGH \`cipher_order\` (\"Has server cipher order? no (NOT ok)\") means the server takes the client's order of preference among its suites: testssl.sh $TESTSSL_V rates that HIGH whatever the suites."
grep -q '^finding MEDIUM security_headers ' "$OUT/testssl-baton-ecdsa.summary" &&
    note "The MEDIUM \`security_headers\` means none of X-Frame-Options, X-Content-Type-Options, Content-Security-Policy and the like was in the answer to \`GET /\`: headers of the application, which neither hello nor the proxies add here."
grep -qE '^finding (HIGH|CRITICAL) ' "$OUT/testssl-nginx-ecdsa.summary" &&
    note "testssl.sh reports HIGH or CRITICAL findings on nginx too: $(grep -E '^finding (HIGH|CRITICAL) ' "$OUT/testssl-nginx-ecdsa.summary" | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $3, $2 }')."
((BATON_ERRORS == 0)) || note "**wrk counted $BATON_ERRORS socket errors or non-2xx responses from baton** (see \`$OUT/wrk-*-baton-*.txt\`)."
((NGINX_ERRORS == 0)) || note "wrk counted $NGINX_ERRORS socket errors or non-2xx responses from nginx (see \`$OUT/wrk-*-nginx-*.txt\`)."
for spec in "${HS_VARIANTS[@]}"; do
    v=${spec%%:*}
    r=$(CD hs "$v")
    awk -v r="$r" 'BEGIN { exit !(r != "n/a" && r > 1.1) }' &&
        note "**baton spends more CPU per new connection than nginx ($v)**: ${MED_CPU[hs|$v|baton]} µs against ${MED_CPU[hs|$v|nginx]} µs (×$r)."
done
r=$(RD ka keep-alive)
awk -v r="$r" 'BEGIN { exit !(r != "n/a" && r < 0.95) }' &&
    note "**baton's keep-alive throughput over TLS is behind nginx's** (ratio $r)."
# within_noise BATON_VALUES NGINX_VALUES: whether the medians differ by less than the spread between the rounds of
# either side; prints "difference spread_baton spread_nginx" in %.
within_noise() {
    local ma mb
    ma=$(med "$1") mb=$(med "$2")
    # shellcheck disable=SC2086
    printf '%s\n' $1 | sort -g | awk -v a="$ma" -v b="$mb" -v other="$(printf '%s\n' $2 | sort -g | paste -sd' ')" '
        NR == 1 { lo = $1 } { hi = $1 }
        END {
            n = split(other, o, " ")
            d = (a > b ? a - b : b - a) / b * 100; sa = (hi - lo) / a * 100; sb = (o[n] - o[1]) / b * 100
            printf "%.1f %.1f %.1f\n", d, sa, sb
            exit !(d < sa || d < sb)
        }'
}
if spreads=$(within_noise "${RPS[ka|keep-alive|baton]}" "${RPS[ka|keep-alive|nginx]}"); then
    read -r d sa sb <<<"$spreads"
    note "Keep-alive: the medians differ by $d %, less than the spread between the rounds of one side (baton $sa %, nginx $sb %): no difference in requests/s is measurable at this noise level."
fi
noisy=""
for spec in "${HS_VARIANTS[@]}"; do
    v=${spec%%:*}
    if spreads=$(within_noise "${RPS[hs|$v|baton]}" "${RPS[hs|$v|nginx]}"); then
        read -r d sa sb <<<"$spreads"
        noisy+="$v ($d % apart; rounds spread $sa % and $sb %), "
    fi
done
[[ -z $noisy ]] ||
    note "New connections: for ${noisy%, } the medians of requests/s differ by less than the spread between one side's rounds: no difference in requests/s is measurable there."
r=$(ratio "${MED_P99[ka|keep-alive|baton]}" "${MED_P99[ka|keep-alive|nginx]}")
awk -v r="$r" 'BEGIN { exit !(r != "n/a" && r > 1.1) }' &&
    note "**baton's keep-alive p99 over TLS is higher than nginx's** (${MED_P99[ka|keep-alive|baton]} ms against ${MED_P99[ka|keep-alive|nginx]} ms)."
WRK_HS_MED=$(med "$(for k in "${!WRK_PCT[@]}"; do [[ $k != hs\|* ]] || echo "${WRK_PCT[$k]}"; done)")
awk -v w="$WRK_HS_MED" 'BEGIN { exit !(w > 85) }' &&
    note "In the new-connection runs wrk used a median $WRK_HS_MED % of a core: **the client's handshakes (OpenSSL $OPENSSL_V) bound the requests/s**, which therefore say more about the client than about the servers; the servers' CPU per new connection is the figure that compares them."
awk -v o="${OTHER_MAX:-0}" 'BEGIN { exit !(o > 20) }' &&
    note "Other work used up to $OTHER_MAX % of a core during some runs (median $OTHER_MED %): compare the rounds before reading much into small differences."
note_if_busy

SECTION="$OUT/section.md"
{
    echo "$BEGIN"
    echo "## \`baton serve\` over HTTPS against nginx: testssl.sh, handshakes/s, keep-alive throughput"
    echo
    written_by
    echo "$(machine_line); load average $LOAD_BEFORE_WAIT when the script"
    echo "got the benchmark lock, $LOAD_START when measuring started (after waiting ${waited} s for ≤ $QUIET_LOAD), $LOAD_AFTER_WRK after"
    echo "the wrk runs, $LOAD_END at the end ($RUN_SECONDS s in all, of which testssl.sh $TESTSSL_SECONDS s). baton: rustls $RUSTLS_V on ring"
    echo "$RING_V. nginx $NGINX_V (${NGINX_OPENSSL:-OpenSSL}), wrk $WRK_V and testssl.sh $TESTSSL_V (using OpenSSL $OPENSSL_V), all"
    echo "Debian's packages. Nothing is pinned: the load generator, the proxy and the backend share the same cores."
    echo
    echo "Command: \`ROUNDS=$ROUNDS HS_DURATION=$HS_DURATION HS_CONNECTIONS=$HS_CONNECTIONS KA_DURATION=$KA_DURATION KA_CONNECTIONS=$KA_CONNECTIONS bench/tls.sh\`"
    echo "(defaults: 3, 5s, 32, 10s, 64)."
    echo
    echo "**Certificates.** A test CA (ECDSA P-256) and two certificates for \`$NAME\` signed by it, one ECDSA P-256 and"
    echo "one RSA 2048 (\`openssl genpkey\`, \`openssl req\`, \`openssl x509 -req\` with SAN \`DNS:$NAME\`, 365 days, a CRL"
    echo "distribution point URL as public CAs put in theirs: testssl.sh reports a certificate with neither CRL nor OCSP URL"
    echo "as HIGH, and the URL is never fetched). baton and nginx serve the same files, from \`$OUT/certs/\`."
    echo
    echo "<details><summary>Every command, as run (in \`$OUT/certs/\`, then from the repository root)</summary>"
    echo
    echo '```sh'
    echo "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key"
    echo "openssl req -x509 -new -key ca.key -sha256 -days 365 -subj '/CN=baton bench test CA' \\"
    echo "    -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' -out ca.pem"
    echo "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ecdsa.key"
    echo "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key"
    echo "# KIND.ext, one per line: basicConstraints=critical,CA:FALSE  keyUsage=critical,digitalSignature (RSA: ,keyEncipherment)"
    echo "#   extendedKeyUsage=serverAuth  subjectAltName=DNS:$NAME  crlDistributionPoints=URI:http://$NAME/ca.crl"
    echo "openssl req -new -key KIND.key -subj '/CN=$NAME' -out KIND.csr                      # KIND: ecdsa, rsa"
    echo "openssl x509 -req -in KIND.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -sha256 -extfile KIND.ext -out KIND.pem"
    echo
    echo "hello --listen 127.0.0.1:0 --app-version bench"
    echo "baton serve --config $OUT/baton.toml"
    echo "nginx -p TMPDIR/ -c $OUT/nginx.conf"
    echo "cc -shared -fPIC -O2 -Wall -o fresh-session.so bench/tls/fresh-session.c -ldl"
    echo "# new connections (the TLS 1.2 runs add OPENSSL_CONF=bench/tls/openssl-tls12.cnf; the resumed runs drop LD_PRELOAD)"
    echo "LD_PRELOAD=fresh-session.so wrk -t1 -c$HS_CONNECTIONS -d$HS_DURATION --latency -H 'Connection: close' https://127.0.0.1:PORT/"
    echo "wrk -t1 -c$KA_CONNECTIONS -d$KA_DURATION --latency https://127.0.0.1:PORT/                 # keep-alive"
    echo "testssl ${TESTSSL_OPTS[*]//$CERTS/$OUT/certs} --ip 127.0.0.1 --jsonfile FILE [-h] $NAME:PORT"
    echo "python3 bench/tls/findings.py FILE"
    echo '```'
    echo
    echo "</details>"
    echo
    echo "**Servers**, each with one worker thread, both in front of the same single backend"
    echo "(\`target/release/hello --listen 127.0.0.1:0\`, \`GET /\` answers 37 bytes), with keep-alive connections to it"
    echo "and the same forwarding headers (configs in \`$OUT/\`):"
    echo
    echo "- baton: \`target/release/baton serve --config baton.toml\`, a listener per certificate with the default TLS policy"
    echo "  (TLS 1.2 and 1.3, rustls's nine AEAD suites in rustls's order; X25519, P-256, P-384; session tickets and a"
    echo "  session-ID cache; ALPN h2 and http/1.1) and HSTS:"
    echo
    echo '  ```toml'
    echo '  [[listener]]'
    echo '  name = "ecdsa"'
    echo '  address = "127.0.0.1:0"'
    echo '  max_connections = 20000'
    echo '  [listener.tls]'
    echo "  certificates = [{ cert = \"$OUT/certs/ecdsa.pem\", key = \"$OUT/certs/ecdsa.key\" }]"
    echo '  [listener.tls.hsts]'
    echo '  max_age = "365d"'
    echo '  include_subdomains = true'
    echo '  ```'
    echo
    echo "- nginx: \`nginx -c nginx.conf\`, \`worker_processes 1; daemon off; master_process off;\`, \`listen ... ssl$H2_LISTEN\`${H2_ON:+ and \`$H2_ON\`},"
    echo "  \`ssl_protocols TLSv1.2 TLSv1.3\`, \`ssl_ciphers $NGINX_SUITES12\`,"
    echo "  \`ssl_conf_command Ciphersuites $NGINX_SUITES13\` (the same nine suites in the same order),"
    echo "  \`ssl_prefer_server_ciphers on\` (the server's order, as baton), \`ssl_ecdh_curve X25519:prime256v1:secp384r1\`, \`ssl_session_cache shared:SSL:10m\`,"
    echo "  \`ssl_session_tickets on\`, \`add_header Strict-Transport-Security \"max-age=31536000; includeSubDomains\" always\`,"
    echo "  \`upstream\` with \`keepalive 64\`, \`access_log off\`."
    echo
    echo "What \`openssl s_client -tls1_3\` / \`-tls1_2\` (OpenSSL $OPENSSL_V, SNI \`$NAME\`, the test CA trusted) negotiates, and"
    echo "the HSTS header \`curl\` gets:"
    echo
    echo "| server | certificate | TLS 1.3 | TLS 1.2 | Strict-Transport-Security |"
    echo "|---|---|---|---|---|"
    for s in "${SERVERS[@]}"; do
        for cert in ecdsa rsa; do
            echo "| $s | ${cert^^} | ${NEGOTIATED[$s-$cert-1.3]} | ${NEGOTIATED[$s-$cert-1.2]} | \`${HSTS_HDR[$s-$cert]}\` |"
        done
    done
    echo
    echo "### testssl.sh"
    echo
    echo "\`testssl ${TESTSSL_OPTS[*]//$CERTS/$OUT/certs} --ip 127.0.0.1 --jsonfile FILE $NAME:PORT\`: every check"
    echo "of testssl.sh $TESTSSL_V (protocols, cipher categories, forward secrecy, server preferences, server defaults and"
    echo "certificate, HTTP headers, vulnerabilities, client simulation), findings counted by severity from its JSON"
    echo "(\`bench/tls/findings.py\`). A short run, \`-h\` (HTTP headers only), against a baton listener without \`hsts\` shows"
    echo "what testssl.sh says when HSTS is missing. Text and JSON of every run: \`$OUT/testssl-*.{txt,json}\`."
    echo
    echo "| target | CRITICAL | HIGH | MEDIUM | LOW | WARN | OK | INFO |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for t in "${TESTSSL_TARGETS[@]}"; do echo "| ${TS_LABEL[$t]} | $(severity_cells "$t") |"; done
    echo
    echo "Findings other than OK and INFO:"
    echo
    for t in "${TESTSSL_TARGETS[@]}"; do echo "- ${TS_LABEL[$t]}: $(findings_list "$t")."; done
    echo
    echo "HSTS, as testssl.sh reports it: with \`[listener.tls.hsts]\` (baton) and \`add_header\` (nginx): $(hsts_list baton-ecdsa)"
    echo "(nginx: $(hsts_list nginx-ecdsa)); without it (baton): $(hsts_list baton-no-hsts)."
    echo
    if ((BATON_HIGH == 0)); then
        echo "**No HIGH or CRITICAL finding on baton's listeners with the default policy.**"
    else
        echo "**$BATON_HIGH HIGH or CRITICAL finding(s) on baton's listeners with the default policy: ${BATON_HIGH_IDS%; }** (the script exits 1)."
    fi
    echo
    echo "### New TLS connections: handshakes/s"
    echo
    echo "\`wrk -t1 -c$HS_CONNECTIONS -d$HS_DURATION -H 'Connection: close' https://127.0.0.1:PORT/\`: every request on a new"
    echo "connection with a full handshake (certificate and signature, new key exchange), then \`GET /\` and the server closes."
    echo "wrk (OpenSSL $OPENSSL_V) keeps one \`SSL\` object per connection slot and would offer the previous connection's session"
    echo "(TLS 1.3: its ticket), and both servers resume it; so the runs preload \`bench/tls/fresh-session.c\`"
    echo "(\`LD_PRELOAD\`), which drops that session before each handshake. Checked in this run on a probe port of nginx"
    echo "that logs \`\$ssl_session_reused\`, 2 s each: with the shim, TLS 1.3: $(awk '{ printf "%d full, %d resumed", $1, $2 }' <<<"${PROBE[fresh-1.3]}")"
    echo "(${PROBE[fresh-1.3]#* * }; the shim dropped $SHIM_FORGOT sessions for $PROBE_REQS requests), TLS 1.2:"
    echo "$(awk '{ printf "%d full, %d resumed", $1, $2 }' <<<"${PROBE[fresh-1.2]}") (${PROBE[fresh-1.2]#* * }); without it, TLS 1.3:"
    echo "$(awk '{ printf "%d full, %d resumed", $1, $2 }' <<<"${PROBE[plain-1.3]}"). TLS 1.2 runs set \`OPENSSL_CONF=bench/tls/openssl-tls12.cnf\`"
    echo "(\`MaxProtocol = TLSv1.2\` for the client; the servers keep 1.2 + 1.3). \"Resumed\" is wrk without the shim: an"
    echo "abbreviated TLS 1.3 handshake (PSK with a new X25519 exchange) on each new connection. $ROUNDS round(s); in each,"
    echo "every variant in turn, baton and nginx alternating which goes first; after a 1 s warm-up of each."
    echo
    echo "\"Server CPU\" is the CPU time (user + system, \`/proc/PID/stat\`) the baton or nginx process used per request:"
    echo "TCP accept and close, the handshake, the request forwarded to the backend on a kept-alive connection; ≈ per"
    echo "core is 1,000,000 µs divided by it, the new connections one core of that server could take if it had the core"
    echo "to itself. \"wrk\" is the load client's own CPU use in % of one core."
    echo
    echo "| variant | baton req/s | nginx req/s | baton/nginx | baton server CPU | nginx server CPU | CPU baton/nginx | ≈ per core: baton / nginx | wrk CPU: baton / nginx runs |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for spec in "${HS_VARIANTS[@]}"; do
        v=${spec%%:*}
        echo "| $v | **${MED_RPS[hs|$v|baton]}** | **${MED_RPS[hs|$v|nginx]}** | $(RD hs "$v") | ${MED_CPU[hs|$v|baton]} µs | ${MED_CPU[hs|$v|nginx]} µs | **$(CD hs "$v")** | $(per_core "${MED_CPU[hs|$v|baton]}") / $(per_core "${MED_CPU[hs|$v|nginx]}") | ${MED_WRK[hs|$v|baton]} % / ${MED_WRK[hs|$v|nginx]} % |"
    done
    echo
    echo "Medians of $ROUNDS rounds. Rounds ranged: $(for spec in "${HS_VARIANTS[@]}"; do v=${spec%%:*}; printf '%s baton %s, nginx %s req/s; ' "$v" "$(spread ${RPS[hs|$v|baton]})" "$(spread ${RPS[hs|$v|nginx]})"; done | sed 's/; $/./')"
    echo
    echo "### Keep-alive throughput over TLS"
    echo
    echo "\`wrk -t1 -c$KA_CONNECTIONS -d$KA_DURATION --latency https://127.0.0.1:PORT/\`: keep-alive \`GET /\` (37-byte body) on the"
    echo "ECDSA listeners; wrk negotiates $KA_NEGOTIATED (HTTP/1.1: wrk offers no ALPN). $ROUNDS round(s), alternating,"
    echo "after a 2 s warm-up of each. Server CPU as above, per request."
    echo
    echo "| server | req/s (median) | p99 (median) | server CPU per request | wrk CPU | req/s in each round | p99 in each round |"
    echo "|---|---:|---:|---:|---:|---|---|"
    for s in "${SERVERS[@]}"; do
        # shellcheck disable=SC2086
        echo "| $s | **${MED_RPS[ka|keep-alive|$s]}** | ${MED_P99[ka|keep-alive|$s]} ms | ${MED_CPU[ka|keep-alive|$s]} µs | ${MED_WRK[ka|keep-alive|$s]} % | $(echo ${RPS[ka|keep-alive|$s]} | sed 's/ /, /g') | $(echo ${P99[ka|keep-alive|$s]} | sed 's/ /, /g') ms |"
    done
    echo
    echo "**baton/nginx: $(RD ka keep-alive)** in requests/s, p99 ratio $(ratio "${MED_P99[ka|keep-alive|baton]}" "${MED_P99[ka|keep-alive|nginx]}"), CPU per request"
    echo "ratio $(CD ka keep-alive). Errors counted by wrk (socket errors and non-2xx) over all runs: baton $BATON_ERRORS, nginx $NGINX_ERRORS."
    echo
    echo "<details><summary>Every run, in order</summary>"
    echo
    echo "| round | variant | server | req/s | p99 | errors | server CPU per request | wrk CPU | other work on the machine |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
    printf '%s' "$ROWS" "$KA_ROWS"
    echo
    echo "\"Other work\" is the CPU time the machine spent on anything but wrk, the server and the backend during the run"
    echo "(\`/proc/stat\` minus those three), in % of one core: other people's builds and benchmarks (median $OTHER_MED %, max"
    echo "$OTHER_MAX %). p99 of the new-connection runs is wrk's latency of the request after the handshake."
    echo
    echo "</details>"
    echo
    notes_section
    echo "$END"
} >"$SECTION"

# The section replaces its previous version, or is appended; the table of sections gets its row once.
ROW='| [`baton serve` over HTTPS against nginx: testssl.sh, handshakes/s, keep-alive throughput](#baton-serve-over-https-against-nginx-testsslsh-handshakess-keep-alive-throughput) | `bench/tls.sh` | testssl.sh findings by severity on baton'"'"'s HTTPS listeners (ECDSA and RSA, default policy) and on nginx; new TLS connections per second (full handshakes, TLS 1.3 and 1.2, ECDSA and RSA, and resumed) and keep-alive requests/s and p99 over TLS, baton against nginx (one worker each, same backend, same certificates), with each server'"'"'s CPU per request |'
write_section "$SECTION" "$ROW"

((BATON_HIGH == 0 && BATON_ERRORS == 0)) || exit 1
exit 0
