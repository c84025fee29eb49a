"""Fixtures for the model-zoo tests: a local HTTP server standing in for the weights' publishers."""
from __future__ import annotations

import dataclasses
import http.server
import threading

import pytest


@dataclasses.dataclass
class WeightsServer:
    """Serves ``files[path] = bytes`` on 127.0.0.1; paths in ``truncate`` send half the body, then hang up."""

    base_url: str
    files: dict
    truncate: set
    requests: list

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"


@pytest.fixture(scope="module")
def weights_server():
    files: dict[str, bytes] = {}
    truncate: set[str] = set()
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            name = self.path.lstrip("/")
            requests.append(name)
            body = files.get(name)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if name in truncate:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield WeightsServer(f"http://127.0.0.1:{server.server_address[1]}", files, truncate, requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens: downloads fail at once, like offline."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
