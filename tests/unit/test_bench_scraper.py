"""bench.change_cost's scraper: scrapes /metrics as Prometheus does (gzip asked for) on its
interval, records each scrape's wall time and each failure, and never scrapes at interval 0."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from bench.change_cost import Scraper


class _Recorded(BaseHTTPRequestHandler):
    asked: ClassVar[list[tuple[str, str]]] = []
    status: ClassVar[int] = 200

    def do_GET(self) -> None:
        type(self).asked.append((self.path, self.headers.get("Accept-Encoding", "")))
        body = gzip.compress(b"up 1\n")
        self.send_response(type(self).status)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[int, type[_Recorded]]]:
    handler = type("Handler", (_Recorded,), {"asked": [], "status": 200})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_scrapes_metrics_with_gzip_on_its_interval(server: tuple[int, type[_Recorded]]) -> None:
    port, handler = server
    started = time.monotonic()
    with Scraper(port, 0.2) as scraper:
        deadline = started + 30
        while len(handler.asked) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
    assert len(handler.asked) >= 3
    assert elapsed >= 0.4  # three scrapes, two intervals apart at the least: not a loop
    assert set(handler.asked) == {("/metrics", "gzip")}
    assert len(scraper.durations_ms) == len(handler.asked)
    assert scraper.errors == []


def test_a_failed_scrape_is_counted_not_timed(server: tuple[int, type[_Recorded]]) -> None:
    port, handler = server
    handler.status = 500
    with Scraper(port, 0.2) as scraper:
        time.sleep(0.5)
    assert scraper.durations_ms == []
    assert scraper.errors and all("500" in error for error in scraper.errors)


def test_interval_zero_never_scrapes(server: tuple[int, type[_Recorded]]) -> None:
    port, handler = server
    with Scraper(port, 0) as scraper:
        time.sleep(0.3)
    assert handler.asked == [] and scraper.durations_ms == []
