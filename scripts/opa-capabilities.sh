#!/usr/bin/env bash
# Writes OPA's capabilities with Gatekeeper's external_data builtin added, so the real opa can
# check and test templates that call it (tests mock it with `with external_data as ...`).
# Usage: scripts/opa-capabilities.sh OUT.json
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: $0 OUT.json}
"$root/.tools/bin/opa" capabilities --current | "$root/.venv/bin/python" -c '
import json, sys
caps = json.load(sys.stdin)
caps["builtins"].append({
    "name": "external_data",
    "decl": {"type": "function", "args": [{"type": "object", "dynamic": {"key": {"type": "any"}, "value": {"type": "any"}}}],
             "result": {"type": "any"}},
})
json.dump(caps, sys.stdout)
' > "$out"
