"""Loopback HTTP servers that record which credentials every request carried.

* ``RecordingProxy(upstream=url)`` forwards each request to a real server (e.g. an ``mlflow server``) and
  records it.
* ``RecordingProxy(upstream=None, answer=fn)`` answers itself with ``fn(method, path, query, body)`` (a tiny
  fake MLflow REST API where a real server is not the point).

Both are servers on loopback, so only tests outside tests/unit use them (tests/unit/test_tiers.py checks).
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def basic(username: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP basic auth."""
    return "Basic " + base64.standard_b64encode(f"{username}:{password}".encode()).decode()


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    authorization: str | None
    cookie: str | None


Answer = Callable[[str, str, dict[str, list[str]], bytes], tuple[int, dict[str, object]]]


class RecordingProxy:
    """A threaded HTTP server on a free loopback port; ``seen`` lists every request it got, in order."""

    def __init__(self, upstream: str | None = None, answer: Answer | None = None) -> None:
        if (upstream is None) == (answer is None):
            raise ValueError("give exactly one of upstream and answer")
        self.upstream = urlsplit(upstream) if upstream else None
        self.answer = answer
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                with proxy._lock:
                    proxy.seen.append(
                        Seen(
                            self.command,
                            parts.path,
                            self.headers.get("Authorization"),
                            self.headers.get("Cookie"),
                        )
                    )
                if proxy.upstream is not None:
                    status, headers, payload = proxy._forward(self.command, self.path, self.headers, body)
                else:
                    assert proxy.answer is not None
                    code, doc = proxy.answer(self.command, parts.path, parse_qs(parts.query), body)
                    status, payload = code, json.dumps(doc).encode()
                    headers = [("Content-Type", "application/json")]
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="recording-proxy"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _forward(self, method: str, path: str, headers, body: bytes):
        assert self.upstream is not None
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
            conn.request(method, path, body=body or None, headers=forwarded)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def api_requests(self) -> list[Seen]:
        """Every request except the unauthenticated ``/health`` reachability checks."""
        with self._lock:
            return [s for s in self.seen if s.path != "/health"]

    def start(self) -> RecordingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def watch_environ_writes(monkeypatch) -> list[str]:
    """Record (for the rest of the test) the key of every write to ``os.environ``: set, update, pop, del."""
    import os

    writes: list[str] = []
    environ_type = type(os.environ)
    original_set, original_del = environ_type.__setitem__, environ_type.__delitem__

    def setitem(self, key, value):
        writes.append(f"set {key}")
        original_set(self, key, value)

    def delitem(self, key):
        writes.append(f"del {key}")
        original_del(self, key)

    monkeypatch.setattr(environ_type, "__setitem__", setitem)
    monkeypatch.setattr(environ_type, "__delitem__", delitem)
    return writes
