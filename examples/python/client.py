#!/usr/bin/env python3
"""A shoal client in the standard library alone, speaking NDJSON.

    shoal node --name demo-a --listen unix:///tmp/a.sock --app sum --app echo
    python3 examples/python/client.py unix:///tmp/a.sock

docs/protocol.md is the contract it follows.
"""
import json
import socket
import sys


class ShoalError(Exception):
    def __init__(self, error):
        super().__init__(f"{error['code']}: {error.get('message', '')}")
        self.code = error["code"]


class Client:
    def __init__(self, url):
        if url.startswith("unix://"):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(url[len("unix://"):])
        else:  # tcp://HOST:PORT
            host, port = url[len("tcp://"):].rsplit(":", 1)
            self.sock = socket.create_connection((host.strip("[]"), int(port)))
        self.lines = self.sock.makefile("rb")
        self.last_id = 0

    def send(self, msg):
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def receive(self):
        line = self.lines.readline()
        if not line:
            raise ConnectionError("the node closed the connection")
        return json.loads(line)

    def call(self, app, action, args=None):
        self.last_id += 1
        msg = {"type": "call", "id": self.last_id, "app": app, "action": action}
        if args is not None:
            msg["args"] = args
        self.send(msg)
        while True:  # one call in flight: the next reply or error is ours
            reply = self.receive()
            if reply["type"] == "error" and "id" not in reply:
                raise ShoalError(reply["error"])
            if reply["type"] == "reply" and reply.get("id") == self.last_id:
                if "error" in reply:
                    raise ShoalError(reply["error"])
                return reply.get("result")


if __name__ == "__main__":
    node = Client(sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:7000")
    node.send({"type": "hello", "from": "py-client"})
    hello = node.receive()  # the node introduces itself in turn
    apps = [a["name"] for a in hello["node"]["applications"]]
    print(f"connected to {hello['from']}, which hosts {', '.join(apps)}")
    print("sum [1,2,3,4,5] =", node.call("sum", "sum", [1, 2, 3, 4, 5]))
    print("echo =", json.dumps(node.call("echo", "echo", {"hi": [1, 2]})))
    node.send({"type": "tell", "app": "echo", "msg": "fire and forget"})
    print("tells counted by echo:", node.call("echo", "count"))
    try:
        node.call("nope", "anything")
    except ShoalError as e:
        print("error", e)
