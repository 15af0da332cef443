"""A CloudEvents HTTP receiver for the tests (tests/brokers.py starts it): accepts binary mode
(``ce-*`` headers, the data as the body), structured mode (``application/cloudevents+json``) and
batch mode (``application/cloudevents-batch+json``), answers 202, and appends one JSON line per
event to a file: ``{"attributes": {...}, "data": ..., "mode": ..., "connection": <client
port>}``. HTTP/1.1 keep-alive, so a client that pools connections reuses them.

    python tests/cloudevents_receiver.py PORT EVENTS_FILE
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class Receiver(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, path: str) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.out = open(path, "ab")  # noqa: SIM115 - the server's life
        self.lock = threading.Lock()

    def record(self, events: list[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(event) + b"\n" for event in events)
        with self.lock:
            self.out.write(data)
            self.out.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        content_type = (self.headers.get("content-type") or "").split(";")[0].strip()
        port = self.client_address[1]
        if self.path.startswith("/refuse"):
            self._answer(400, b"refused")
            return
        try:
            if content_type == "application/cloudevents+json":
                doc = orjson.loads(body)
                events = [_structured(doc, "structured", port)]
            elif content_type == "application/cloudevents-batch+json":
                events = [_structured(doc, "batch", port) for doc in orjson.loads(body)]
            else:
                attributes = {
                    name[3:].lower(): value
                    for name, value in self.headers.items()
                    if name.lower().startswith("ce-")
                }
                if attributes.get("specversion") != "1.0" or "id" not in attributes:
                    raise ValueError("not a binary-mode CloudEvent")
                data = orjson.loads(body)
                events = [
                    {"attributes": attributes, "data": data, "mode": "binary", "connection": port}
                ]
        except ValueError as exc:
            self._answer(400, str(exc).encode())
            return
        self.server.record(events)
        self._answer(202, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _structured(doc: dict[str, Any], mode: str, port: int) -> dict[str, Any]:
    data = doc.pop("data", None)
    if doc.get("specversion") != "1.0" or "id" not in doc:
        raise ValueError("not a structured CloudEvent")
    return {"attributes": doc, "data": data, "mode": mode, "connection": port}


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    Receiver(port, path).serve_forever()


if __name__ == "__main__":
    main()
