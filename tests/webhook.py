"""The webhook receiver of the tests: an HTTP server on 127.0.0.1 that keeps the JSON body
of every POST (what the shipped notifier hook sends to ``webhook_url``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def webhook_receiver(path: str = "/hook") -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """``(url, received)``: POST JSON to ``url`` and it is appended to ``received``
    (answered 204); the server stops when the block ends."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}{path}", received
    finally:
        httpd.shutdown()
        httpd.server_close()
