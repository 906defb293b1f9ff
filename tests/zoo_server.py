"""A loopback HTTP file server for download tests (``from zoo_server import ZooServer``): 127.0.0.1 only.

Serves ``files`` (relative path -> bytes) with HTTP Range support, logs every request (path and Range
header), and can misbehave on purpose per path: ``drop_after`` (first request only: announce the full length,
send that many bytes, close the connection), ``hang`` (answer nothing for that many seconds), ``pause``
(send half, then wait for ``release`` to be set).
"""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass, field


@dataclass
class ZooServer:
    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)
    hang: dict[str, float] = field(default_factory=dict)
    pause: set[str] = field(default_factory=set)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def start(self) -> ZooServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                rel = self.path.lstrip("/")
                server.requests.append((rel, self.headers.get("Range")))
                if rel in server.hang:
                    time.sleep(server.hang[rel])
                    return
                data = server.files.get(rel)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                spec = self.headers.get("Range")
                if spec and spec.startswith("bytes=") and spec.endswith("-"):
                    start = int(spec[len("bytes="):-1])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                body = data[start:]
                if rel in server.drop_after:  # once: part of the body, then the connection drops
                    self.wfile.write(body[: server.drop_after.pop(rel)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if rel in server.pause:
                    half = len(body) // 2
                    self.wfile.write(body[:half])
                    self.wfile.flush()
                    server.release.wait(60)
                    body = body[half:]
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, rel: str) -> list[str | None]:
        """The Range headers of the requests for ``rel`` (None: a whole-file request)."""
        return [r for p, r in self.requests if p == rel]
