#!/usr/bin/env python3
"""echo: a shoal application as an external program (standard library only).

Run it under a node:  shoal node --listen tcp://127.0.0.1:7000 \\
                          --exec 'python3 workers/py/echo.py'

It speaks the exec protocol of docs/workers.md: one JSON object per line on
stdin (tells and calls from the node), one per line on stdout (its hello and
its replies). Anything for people goes to stderr.

Actions:
  echo   answers with its arguments
  upper  uppercases a string
  sum    adds an array of numbers
  fail   answers with the error {code, message} in its arguments
         (default EAPPFAILED, "failed on demand")
  count  the number of tells received so far
"""
import json
import sys

ACTIONS = ["echo", "upper", "sum", "fail", "count"]


class AppError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def send(obj):
    # ensure_ascii: the line is ASCII whatever the locale; one write and a
    # flush per line, so the node sees each reply at once.
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def act_echo(args):
    return args


def act_upper(args):
    if not isinstance(args, str):
        raise AppError("EBADTYPE", "upper takes a string")
    return args.upper()


def act_sum(args):
    if not isinstance(args, list) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in args
    ):
        raise AppError("EBADTYPE", "sum takes an array of numbers")
    return sum(args)


def act_fail(args):
    args = args if isinstance(args, dict) else {}
    code = args.get("code")
    message = args.get("message")
    raise AppError(
        code if isinstance(code, str) and code else "EAPPFAILED",
        message if isinstance(message, str) else "failed on demand",
    )


class Echo:
    def __init__(self):
        self.tells = 0

    def act_count(self, args):
        return self.tells

    def on_call(self, msg):
        call_id = msg.get("id")
        action = msg.get("action")
        handlers = {
            "echo": act_echo,
            "upper": act_upper,
            "sum": act_sum,
            "fail": act_fail,
            "count": self.act_count,
        }
        try:
            handler = handlers.get(action)
            if handler is None:
                raise AppError("ENOACTION", "echo.py has no action %r" % action)
            send({"type": "reply", "id": call_id, "result": handler(msg.get("args"))})
        except AppError as e:
            send({"type": "reply", "id": call_id,
                  "error": {"code": e.code, "message": e.message}})

    def run(self):
        send({
            "type": "hello",
            "description": {
                "summary": "echo.py: echo, upper, sum, fail, count "
                           "(the tells received)",
                "language": "python",
            },
            "actions": ACTIONS,
        })
        # Line by line from the binary stream: each line is handled as soon
        # as it arrives, whatever the locale's encoding.
        for raw in sys.stdin.buffer:
            try:
                msg = json.loads(raw)
            except ValueError as e:
                print("echo.py: not JSON (%s): %r" % (e, raw[:80]),
                      file=sys.stderr)
                continue
            if not isinstance(msg, dict):
                continue
            kind = msg.get("type")
            if kind == "call":
                self.on_call(msg)
            elif kind == "tell":
                self.tells += 1
            else:
                print("echo.py: ignoring a %r message" % kind, file=sys.stderr)
        # End of input: the node is stopping this program.


if __name__ == "__main__":
    try:
        Echo().run()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
