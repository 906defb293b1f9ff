"""Weights from URLs: downloaded once from a loopback HTTP server, verified, cached, written atomically."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from slowfast_det.checkpoint.cache import (
    DETECTRON2_URL_PREFIX,
    WeightsError,
    cache_path_for,
    cached_sha256,
    resolve_url,
    resolve_weights,
)

PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: several 1 MiB read blocks


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves /weights.bin, /truncated.bin (announces more bytes than it sends) and 404 otherwise."""

    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        type(self).requests.append(self.path)
        if self.path.startswith("/models/weights.bin"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/truncated.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.close_connection = True
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()]


def test_download_once_then_cache_hit(server: str, tmp_path: Path) -> None:
    url = f"{server}/models/weights.bin"
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    first = resolve_weights(url, cache_dir=tmp_path, sha256=sha, progress=False)
    assert first.read_bytes() == PAYLOAD
    assert first == cache_path_for(url, tmp_path)
    assert _Handler.requests == ["/models/weights.bin"]
    second = resolve_weights(url + f"#sha256={sha}", cache_dir=tmp_path, progress=False)
    assert second == first
    assert _Handler.requests == ["/models/weights.bin"]  # served from the cache: no second request
    assert _leftovers(tmp_path) == [first]


def test_sha256_mismatch_leaves_nothing(server: str, tmp_path: Path) -> None:
    url = f"{server}/models/weights.bin"
    with pytest.raises(WeightsError, match="sha256 .* expected 0000"):
        resolve_weights(url, cache_dir=tmp_path, sha256="0" * 64, progress=False)
    assert _leftovers(tmp_path) == []
    # a correct pin afterwards downloads and caches normally
    assert (
        resolve_weights(
            url, cache_dir=tmp_path, sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=False
        ).read_bytes()
        == PAYLOAD
    )


def test_cached_file_is_rechecked_against_a_pinned_sha(server: str, tmp_path: Path) -> None:
    url = f"{server}/models/weights.bin"
    path = resolve_weights(url, cache_dir=tmp_path, progress=False)
    with pytest.raises(WeightsError, match="cached .* delete it"):
        resolve_weights(url, cache_dir=tmp_path, sha256="f" * 64, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_interrupted_download_is_not_cached(server: str, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="truncated|failed after"):
        resolve_weights(f"{server}/truncated.bin", cache_dir=tmp_path, progress=False)
    assert _leftovers(tmp_path) == []
    assert list(tmp_path.iterdir()) == []  # not even the empty <host> folder


def test_http_error_names_the_url(server: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"  # does not exist yet: a failed download must not leave it (or <host>/) behind
    with pytest.raises(WeightsError, match="cannot download .*/missing.bin.*404"):
        resolve_weights(f"{server}/deep/er/missing.bin", cache_dir=cache, progress=False)
    assert list(tmp_path.iterdir()) == []
    # folders that existed before stay, even when empty
    (tmp_path / "kept").mkdir()
    with pytest.raises(WeightsError, match="404"):
        resolve_weights(f"{server}/missing.bin", cache_dir=tmp_path / "kept", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []


def test_cached_sha256_hashes_once_per_size_and_mtime(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    assert cached_sha256(weights, cache_dir=cache) == sha
    index = cache / ".sha256-index.json"
    assert index.is_file()
    # a second call reads the index instead of the file: a planted value comes back
    planted = index.read_text().replace(sha, "f" * 64)
    index.write_text(planted)
    assert cached_sha256(weights, cache_dir=cache) == "f" * 64
    # a changed file (new size and mtime) is hashed again
    weights.write_bytes(PAYLOAD[:-1])
    assert cached_sha256(weights, cache_dir=cache) == hashlib.sha256(PAYLOAD[:-1]).hexdigest()
    # a read-only (here: broken) index location still gives the hash
    assert cached_sha256(weights, cache_dir=weights) == hashlib.sha256(PAYLOAD[:-1]).hexdigest()


def test_detectron2_urls_and_fragments() -> None:
    sha = "ab" * 32
    url, pinned = resolve_url(f"detectron2://COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/m.pkl#sha256={sha}")
    assert url == DETECTRON2_URL_PREFIX + "COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/m.pkl"
    assert url.startswith("https://dl.fbaipublicfiles.com/detectron2/")
    assert pinned == sha
    with pytest.raises(WeightsError, match="fragment"):
        resolve_url("https://x/y.pkl#md5=12")
    with pytest.raises(WeightsError, match="names no file"):
        cache_path_for("https://example.org/", "/tmp")
    assert cache_path_for("https://h:8080/a/../b.pkl", "/c") == Path("/c/h_8080/a/b.pkl")


def test_local_paths(tmp_path: Path) -> None:
    path = tmp_path / "w.pkl"
    path.write_bytes(b"abc")
    assert resolve_weights(path) == path
    assert resolve_weights(str(path), sha256=hashlib.sha256(b"abc").hexdigest()) == path
    with pytest.raises(WeightsError, match="does not match"):
        resolve_weights(path, sha256="1" * 64)
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(tmp_path / "absent.pkl")
