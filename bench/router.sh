#!/usr/bin/env bash
# Benchmarks the route table (crates/router) with 10,000 routes of several shapes and records the figures in
# docs/BENCHMARKS.md: build time and nanoseconds per lookup (hits and misses), against a linear scan.
# Usage: bench/router.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Benchmarks never overlap: bench/proxy.sh takes the same lock.
exec 9>/tmp/baton-bench.lock
flock 9
OUT=target/bench/router
DOC=docs/BENCHMARKS.md
BEGIN='<!-- router:begin -->'
END='<!-- router:end -->'
mkdir -p "$OUT"

cargo build --release -p router --example route_bench
target/release/examples/route_bench > "$OUT/route_bench.txt"

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain 2>/dev/null | grep -q . && echo " with uncommitted changes" || true)
{
    echo "$BEGIN"
    echo "## Route lookup with 10,000 routes"
    echo
    echo "Written by \`bench/router.sh\` on $(date -u '+%Y-%m-%d %H:%M') UTC at commit $commit$dirty."
    echo "Machine: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "\`cargo run --release -p router --example route_bench\`: builds tables of 10,000 routes and times lookups"
    echo "(median of several runs); \"linear\" is the same table scanned route by route in precedence order."
    echo
    echo '```text'
    cat "$OUT/route_bench.txt"
    echo '```'
    echo "$END"
} > "$OUT/section.md"

python3 - "$DOC" "$OUT/section.md" "$BEGIN" "$END" <<'PY'
import sys
doc, section, begin, end = sys.argv[1:]
text = open(doc).read() if __import__('os').path.exists(doc) else "# Benchmarks\n"
new = open(section).read().rstrip("\n")
if begin in text and end in text:
    text = text[:text.index(begin)] + new + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n" + new + "\n"
open(doc, "w").write(text)
PY
echo "router: section written to $DOC" >&2
