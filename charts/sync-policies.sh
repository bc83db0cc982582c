#!/usr/bin/env bash
# Copies the Gatekeeper resources the chart renders from policies/ into charts/referee/files/policies/
# (a chart can read only its own files). tests/chart checks that the copies are in step: run this
# after changing anything under policies/ that is listed here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
files=(
  provider.yaml
  referee-verified-images/template.yaml
  referee-verified-images/samples/constraint.yaml
  referee-pinned-images/template.yaml
  referee-pinned-images/samples/constraint.yaml
  referee-pinned-images/samples/assign-pin-digests.yaml
)
dest="$root/charts/referee/files/policies"
rm -rf "$dest"
for f in "${files[@]}"; do
  mkdir -p "$dest/$(dirname "$f")"
  cp "$root/policies/$f" "$dest/$f"
done
