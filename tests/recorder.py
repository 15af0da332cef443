"""A real HTTP server for the client's tests (the standard library's ThreadingHTTPServer): it
records every request and answers what the test scripted for its path, so a test can check the
requests a client builds for endpoints a modelserve server may not have yet (labels,
monitoring, experiments) and how the client reads any answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

__all__ = ["Recorder", "Seen", "recording_server"]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Recorder:
    """Answers each request with the next scripted answer for its path (the last one repeats)."""

    answers: dict[str, list[tuple[int, dict[str, str], bytes]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def answer(self, path: str, status: int, doc: Any = None, **headers: str) -> None:
        body = doc if isinstance(doc, bytes) else orjson.dumps(doc if doc is not None else {})
        self.answers.setdefault(path, []).append((status, headers, body))

    def take(self, path: str) -> tuple[int, dict[str, str], bytes]:
        queue = self.answers.get(path) or [
            (404, {}, b'{"error": "no route for ' + path.encode() + b'"}')
        ]
        return queue.pop(0) if len(queue) > 1 else queue[0]


@contextmanager
def recording_server() -> Iterator[Recorder]:
    """A real HTTP/1.1 server on 127.0.0.1 (a free port), in a thread, for as long as the
    ``with`` lasts."""
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            rec.seen.append(Seen(self.command, self.path, headers, body))
            status, extra, answer = rec.take(self.path)
            self.send_response(status)
            self.send_header("content-length", str(len(answer)))
            self.send_header("x-request-id", headers.get("x-request-id", ""))
            for key, value in extra.items():
                self.send_header(key.replace("_", "-"), value)
            if "content-type" not in extra:
                self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
