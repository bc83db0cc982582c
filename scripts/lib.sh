# Sourced by the scripts of this folder (bash, after `set -euo pipefail`): sets `root` (the
# repository), reads the pinned versions, and defines log/die tagged with the script's name.
# Usage:  . "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
. "$root/scripts/versions.env"
_tag=$(basename "$0" .sh)
log() { printf '[%s] %s\n' "$_tag" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
