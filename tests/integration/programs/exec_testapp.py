#!/usr/bin/env python3
"""A misbehaving-on-demand program for tests/integration/exec_test.c.

Speaks the exec protocol (docs/workers.md) without a hello unless given
--hello; with --stubborn it ignores SIGTERM and, for 10 s, the end of its
input.

  echo      answers with its arguments
  pid       answers with its process id
  hold      is not answered until a release
  release   answers every held call, newest first (each with its own
            arguments), then itself with how many it released
  exit      exits with status args["status"], answering nothing
  abort     dies of SIGABRT
  garbage   writes a line that is not JSON, a reply to an unknown id, then
            answers "ok"
  big       writes args["bytes"] bytes of 'x' on one line
  tells     answers with the number of tells received

A tell "release" answers every held call, as the action does.
"""
import json
import os
import signal
import sys
import time


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    stubborn = "--stubborn" in sys.argv
    if stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "--hello" in sys.argv:
        send({"type": "hello", "description": {"summary": "test"},
              "actions": ["echo", "pid"]})
    held = []
    tells = 0
    for raw in sys.stdin.buffer:
        msg = json.loads(raw)
        if msg["type"] == "tell":
            tells += 1
            if msg["msg"] == "release":
                for held_id, held_args in reversed(held):
                    send({"type": "reply", "id": held_id, "result": held_args})
                held = []
            continue
        call_id, action, args = msg["id"], msg["action"], msg["args"]
        if action == "echo":
            send({"type": "reply", "id": call_id, "result": args})
        elif action == "pid":
            send({"type": "reply", "id": call_id, "result": os.getpid()})
        elif action == "hold":
            held.append((call_id, args))
        elif action == "release":
            for held_id, held_args in reversed(held):
                send({"type": "reply", "id": held_id, "result": held_args})
            send({"type": "reply", "id": call_id, "result": len(held)})
            held = []
        elif action == "exit":
            sys.stdout.flush()
            os._exit(args["status"])
        elif action == "abort":
            os.abort()
        elif action == "garbage":
            sys.stdout.write("this is not json\n")
            send({"type": "reply", "id": 987654, "result": 0})
            send({"type": "reply", "id": call_id, "result": "ok"})
        elif action == "big":
            sys.stdout.write("x" * args["bytes"] + "\n")
            sys.stdout.flush()
        elif action == "tells":
            send({"type": "reply", "id": call_id, "result": tells})
        else:
            send({"type": "reply", "id": call_id,
                  "error": {"code": "ENOACTION", "message": action}})
    # Stubborn, but not forever: should a test fail before its node kills
    # this program, the test's runner must not wait for it (it holds the
    # runner's inherited fds) longer than this.
    if stubborn:
        time.sleep(10)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        pass
