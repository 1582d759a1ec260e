#!/usr/bin/env python3
"""Summarises a testssl.sh JSON file (`--jsonfile`) for bench/tls.sh.

Prints one `counts` line with the number of findings per severity, in testssl's order
(CRITICAL HIGH MEDIUM LOW WARN OK INFO, then any other severity it used), then one
`finding SEVERITY ID TEXT` line per finding that is neither OK nor INFO, most severe first,
then `hsts SEVERITY TEXT` lines for the findings about Strict-Transport-Security (ids HSTS*).
Exits 2 if the file is missing, not JSON, or holds no finding (testssl did not run).
"""

import json
import sys

ORDER = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN", "OK", "INFO"]


def main() -> int:
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            findings = json.load(f)
    except (OSError, ValueError, IndexError) as e:
        print(f"could not read testssl's JSON: {e}", file=sys.stderr)
        return 2
    # `--jsonfile` writes a flat list; `--jsonfile-pretty` an object with the list under scanResult.
    if isinstance(findings, dict):
        findings = [f for scan in findings.get("scanResult", []) for key, v in scan.items()
                    if isinstance(v, list) for f in v]
    if not findings:
        print("testssl's JSON holds no finding", file=sys.stderr)
        return 2
    counts = {s: 0 for s in ORDER}
    for f in findings:
        counts[f.get("severity", "?")] = counts.get(f.get("severity", "?"), 0) + 1
    print("counts " + " ".join(f"{s}={n}" for s, n in counts.items()))
    rank = {s: i for i, s in enumerate(ORDER)}
    for f in sorted(findings, key=lambda f: rank.get(f.get("severity"), len(ORDER))):
        if f.get("severity") not in ("OK", "INFO"):
            text = " ".join(str(f.get("finding", "")).split())
            print(f"finding {f.get('severity')} {f.get('id')} {text}")
    for f in findings:
        if str(f.get("id", "")).startswith("HSTS"):
            text = " ".join(str(f.get("finding", "")).split())
            print(f"hsts {f.get('severity')} {f.get('id')}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
