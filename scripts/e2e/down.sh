#!/usr/bin/env bash
# down.sh WORKDIR: stop the nsd and postfix that up.sh WORKDIR started, by the
# PIDs in their PID files under WORKDIR (checked to still be those processes),
# never by name. Running it when nothing runs is fine. WORKDIR is left in
# place, logs included.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ $# -eq 1 ] || die "usage: down.sh WORKDIR"
require_root
[ -d "$1" ] || exit 0
work=$(cd "$1" && pwd -P)
check_workdir "$work"

# Both at once, so the waits for their exits overlap.
pf=$(postfix_pid "$work")
ns=$(nsd_pid "$work")
[ -z "$pf" ] || stop_pid "$pf" "postfix master" &
[ -z "$ns" ] || stop_pid "$ns" nsd &
wait
