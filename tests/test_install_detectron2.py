"""The detectron2 installer: index lookup and download over loopback HTTP, sha256 pinning, safe extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from slowfast_det import install_detectron2 as inst


def _fake_sdist(path: Path, escaping_member: bool = False) -> bytes:
    """A tar.gz shaped like the sdist, with an extra top-level file (and optionally a path-escaping member)."""
    members = {
        "pb1-detectron2-0.6/setup.py": b"raise SystemExit('must not be used')\n",
        "pb1-detectron2-0.6/detectron2/__init__.py": b"__version__ = '0.6'\n",
        "pb1-detectron2-0.6/detectron2/model_zoo/configs/Base-RCNN-FPN.yaml": b"MODEL: {}\n",
    }
    if escaping_member:
        members["pb1-detectron2-0.6/detectron2/../../escape.txt"] = b"outside\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


@pytest.fixture()
def index_server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A loopback simple index (PEP 691 JSON) serving the fake sdist."""
    payload = _fake_sdist(tmp_path / inst.SDIST_FILENAME)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path == f"/simple/{inst.SDIST_NAME}/":
                body = json.dumps({"files": [{"filename": inst.SDIST_FILENAME,
                                              "url": f"{base}/files/{inst.SDIST_FILENAME}"}]}).encode()
            elif self.path == f"/files/{inst.SDIST_FILENAME}":
                body = payload
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple", payload
    finally:
        server.shutdown()


def test_index_lookup_and_download_over_loopback(index_server: tuple[str, bytes], tmp_path: Path) -> None:
    index, payload = index_server
    url = inst.find_sdist_url(index)
    dest = inst.download(url, tmp_path / "dl.tar.gz")
    assert dest.read_bytes() == payload
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(inst.InstallError, match="lists no file|could not read"):
        inst.find_sdist_url(index.replace("/simple", "/nothing"))


def test_sha256_pin_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / inst.SDIST_FILENAME
    payload = _fake_sdist(path)
    with pytest.raises(inst.InstallError, match="does not match the pinned"):
        inst.verify_sdist(path)
    inst.verify_sdist(path, expected=hashlib.sha256(payload).hexdigest())
    assert inst.sha256_of(path) == hashlib.sha256(payload).hexdigest()


def test_main_refuses_an_unpinned_sdist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / inst.SDIST_FILENAME
    _fake_sdist(path)
    args = inst.get_args_parser().parse_args(["--sdist", str(path), "--force", "--python", "/nonexistent/python"])
    assert inst.main(args) == 2
    assert "does not match the pinned" in capsys.readouterr().err


def test_extraction_keeps_only_the_package(tmp_path: Path) -> None:
    path = tmp_path / "sdist.tar.gz"
    _fake_sdist(path)
    project = inst.extract_package(path, tmp_path / "out")
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert "detectron2/__init__.py" in files
    assert "detectron2/model_zoo/configs/Base-RCNN-FPN.yaml" in files
    assert "pyproject.toml" in files and "setup.py" not in files
    assert 'name = "detectron2"' in (project / "pyproject.toml").read_text()


def test_extraction_refuses_path_escapes(tmp_path: Path) -> None:
    path = tmp_path / "evil.tar.gz"
    _fake_sdist(path, escaping_member=True)
    with pytest.raises(inst.InstallError, match="unsafe archive member"):
        inst.extract_package(path, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out" / "escape.txt").exists()


def test_installed_detectron2_is_the_pinned_release() -> None:
    import importlib.metadata

    assert importlib.metadata.version("detectron2") == "0.6"
