"""A webhook receiver for Alertmanager in the tests: every POST body (one notification) is
appended to a file as one JSON line. Run as `python -m tests.webhook_receiver PORT FILE`
(in a test's network namespace: the test reads the file)."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def serve(port: int, out: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            notification = json.loads(body)
            with out.open("a") as f:
                f.write(json.dumps(notification) + "\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
