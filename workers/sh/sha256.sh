#!/bin/sh
# sha256: a shoal application as a POSIX shell program (coreutils only).
#
#   shoal node --listen tcp://127.0.0.1:7000 --exec 'sh workers/sh/sha256.sh'
#   shoal call tcp://127.0.0.1:7000 sha256 sha256 '{"path":"/etc/hostname"}'
#
# Action sha256 {"path": P} answers with the SHA-256 of file P as 64 hex
# digits (a relative P is relative to the node's working directory).
#
# It speaks the exec protocol of docs/workers.md with sed, not with a JSON
# parser, so it accepts exactly the lines the node writes for it:
#   {"type":"call","id":N,"action":"sha256","args":{"path":"P"}}
# (blanks allowed around the args' tokens), and ignores tells. Anything
# else with an id gets an error reply; a P containing a quote or a
# backslash (that is, any JSON escape) is refused, so that what sed cut out
# is the path itself and every message written back is valid JSON.

# reply_error ID CODE MESSAGE: MESSAGE must hold no '"' and no '\'.
reply_error() {
    printf '{"type":"reply","id":%s,"error":{"code":"%s","message":"%s"}}\n' \
        "$1" "$2" "$3"
}

printf '%s\n' '{"type":"hello","description":{"summary":"sha256 {path} gives the SHA-256 of a file as 64 hex digits","language":"sh"},"actions":["sha256"]}'

while IFS= read -r line || [ -n "$line" ]; do
    case $line in
    '{"type":"tell",'*)
        continue
        ;;
    '{"type":"call","id":'*)
        ;;
    *)
        printf 'sha256.sh: ignoring a line that is not a call\n' >&2
        continue
        ;;
    esac
    id=$(printf '%s\n' "$line" |
        sed -n 's/^{"type":"call","id":\([0-9][0-9]*\),.*/\1/p')
    if [ -z "$id" ]; then
        printf 'sha256.sh: ignoring a call without a numeric id\n' >&2
        continue
    fi
    action=$(printf '%s\n' "$line" |
        sed -n 's/^{"type":"call","id":[0-9]*,"action":"\([A-Za-z0-9_.-]*\)",.*/\1/p')
    if [ "$action" != sha256 ]; then
        reply_error "$id" ENOACTION "sha256.sh has only the action sha256"
        continue
    fi
    path=$(printf '%s\n' "$line" |
        sed -n 's/^{"type":"call","id":[0-9]*,"action":"sha256","args":[[:space:]]*{[[:space:]]*"path"[[:space:]]*:[[:space:]]*"\([^"\\]*\)"[[:space:]]*}[[:space:]]*}$/\1/p')
    if [ -z "$path" ]; then
        reply_error "$id" EBADTYPE \
            "sha256 takes {path}: a non-empty string without quotes or backslashes"
    elif [ ! -e "$path" ]; then
        reply_error "$id" ENOTFOUND "no such file: $path"
    elif [ ! -f "$path" ]; then
        reply_error "$id" EBADTYPE "not a regular file: $path"
    elif sum=$(sha256sum <"$path" 2>/dev/null); then
        printf '{"type":"reply","id":%s,"result":"%s"}\n' "$id" "${sum%% *}"
    else
        reply_error "$id" EAPPFAILED "cannot read $path"
    fi
done
