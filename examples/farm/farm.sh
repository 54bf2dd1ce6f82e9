#!/bin/sh
# farm: sha256sum of every file under a folder, farmed out over a pool of
# worker nodes, in shell only. Prints "<digest>  <path>" lines in the order
# find lists the files, like sha256sum.
#
#   examples/farm/farm.sh DIR [WORKERS]
#
# A `shoal node --dispatch` places the tasks; WORKERS (default 4) nodes
# join it, each hosting workers/sh/sha256.sh as the application "sha256"
# (--exec); `shoal submit --ordered` sends one task per file and reads the
# outcomes back. $SHOAL names the shoal command (default: build/shoal of
# this checkout, else shoal on PATH).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ -z "${SHOAL:-}" ]; then
    if [ -x "$root/build/shoal" ]; then SHOAL=$root/build/shoal; else SHOAL=shoal; fi
fi
[ $# -ge 1 ] || { echo "usage: $0 DIR [WORKERS]" >&2; exit 2; }
dir=$1
workers=${2:-4}
[ -d "$dir" ] || { echo "farm: $dir is not a folder" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/farm-XXXXXX")
pids=""
cleanup() {
    # Only the processes this script started, by their ids.
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for pid in $pids; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# The dispatcher says it listens by writing a line to fd 3, then closes it:
# reading the fifo waits for exactly that, nothing sleeps.
mkfifo "$tmp/ready"
"$SHOAL" node --name farm --listen "unix://$tmp/farm.sock" --dispatch \
    --quiet --ready-fd 3 3>"$tmp/ready" &
pids="$pids $!"
read -r _ <"$tmp/ready" || { echo "farm: the dispatcher did not start" >&2; exit 1; }

# Tasks that come before the workers wait in the dispatcher's queue.
i=0
while [ "$i" -lt "$workers" ]; do
    i=$((i + 1))
    "$SHOAL" node --name "w$i" --join "unix://$tmp/farm.sock" \
        --exec "sha256=sh $root/workers/sh/sha256.sh" --quiet &
    pids="$pids $!"
done

# One file a line; a task is {"path": P} (sha256.sh refuses paths with a
# quote or a backslash, and so does the error line for them).
find "$dir" -type f | sort >"$tmp/files"
sed 's/["\\]/\\&/g; s/.*/{"path":"&"}/' "$tmp/files" >"$tmp/tasks"

status=0
"$SHOAL" submit "unix://$tmp/farm.sock" --app sha256 --action sha256 \
    --in "$tmp/tasks" --ordered --quiet >"$tmp/outcomes" || status=$?

# Outcomes come in task order: the n-th is the n-th file's.
sed -n 's/.*"status":"ok".*"result":"\([0-9a-f]*\)".*/\1/p; /"status":"ok"/!s/.*"message":"\([^"]*\)".*/FAILED: \1/p' \
    "$tmp/outcomes" | paste -d '\n' - "$tmp/files" | paste -d ' ' - - |
    sed 's/^\([0-9a-f]\{64\}\) /\1  /'
exit "$status"
