"""Trusted downloads (slowfast_det.checkpoint.cache.fetch) against a loopback server: cache reuse, resume with
HTTP Range, a lock between processes, trust-on-first-use hashes, offline mode, mirrors and clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from zoo_server import ZooServer

from slowfast_det.checkpoint.cache import (
    CACHE_LOCK_NAME,
    DownloadError,
    IntegrityError,
    OfflineError,
    cache_path_for,
    fetch,
    mirror_url,
    read_cache_lock,
    verify_cache,
)

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: several 1 MiB blocks
SHA = hashlib.sha256(PAYLOAD).hexdigest()
REL = "pyslowfast/model_zoo/ava/SLOWFAST_32x2_R101_50_50.pkl"
DEFAULT_URL = "https://dl.fbaipublicfiles.com/" + REL


@pytest.fixture()
def zoo(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZooServer]:
    server = ZooServer(files={REL: PAYLOAD}).start()
    monkeypatch.setenv("SLOWFAST_DET_ZOO_URL", server.url + "/")
    monkeypatch.delenv("SLOWFAST_DET_OFFLINE", raising=False)
    yield server
    server.stop()


def _files(cache: Path) -> list[str]:
    """Files in the cache other than lock files."""
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file() and ".locks" not in p.parts)


def test_mirror_keeps_the_relative_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOWFAST_DET_ZOO_URL", "http://mirror.local/files/")
    assert mirror_url(DEFAULT_URL) == "http://mirror.local/files/" + REL
    assert mirror_url("https://example.org/x.pkl") == "https://example.org/x.pkl"  # not a default host
    monkeypatch.delenv("SLOWFAST_DET_ZOO_URL")
    assert mirror_url(DEFAULT_URL) == DEFAULT_URL


def test_fresh_download_then_cache_reuse_without_a_request(zoo: ZooServer, tmp_path: Path) -> None:
    path = fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False)
    # cached under the canonical URL (a mirror and the real host share the cache), from the mirror
    assert path == cache_path_for(DEFAULT_URL, tmp_path) and path.read_bytes() == PAYLOAD
    assert zoo.requests == [(REL, None)]
    record = read_cache_lock(tmp_path)["dl.fbaipublicfiles.com/" + REL]
    assert record["sha256"] == SHA and record["size"] == len(PAYLOAD) and record["url"] == DEFAULT_URL
    assert fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False) == path
    assert zoo.requests == [(REL, None)]  # no second request
    assert _files(tmp_path) == [CACHE_LOCK_NAME, "dl.fbaipublicfiles.com/" + REL]


def test_interrupted_download_resumes_from_the_byte_where_it_stopped(zoo: ZooServer, tmp_path: Path) -> None:
    zoo.drop_after[REL] = 300_000
    path = fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False)  # resumed within the call
    assert path.read_bytes() == PAYLOAD
    assert zoo.gets(REL) == [None, "bytes=300000-"]
    assert read_cache_lock(tmp_path)["dl.fbaipublicfiles.com/" + REL]["sha256"] == SHA


def test_interrupted_download_resumes_in_the_next_run(zoo: ZooServer, tmp_path: Path) -> None:
    zoo.drop_after[REL] = 500_000
    with pytest.raises(DownloadError, match=r"interrupted after 500000 bytes.*run the command again to resume"):
        fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False, retries=0)
    part = cache_path_for(DEFAULT_URL, tmp_path).with_name("SLOWFAST_32x2_R101_50_50.pkl.part")
    assert part.stat().st_size == 500_000 and not cache_path_for(DEFAULT_URL, tmp_path).exists()
    assert fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False).read_bytes() == PAYLOAD
    assert zoo.gets(REL) == [None, "bytes=500000-"]
    assert not part.exists()


def test_tampered_file_is_refused_on_next_use(zoo: ZooServer, tmp_path: Path) -> None:
    path = fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"changed since it was first downloaded.*Refusing to use it"):
        fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False)
    assert [c.status for c in verify_cache(tmp_path, progress=False)] == ["changed"]
    # and a server that starts serving other bytes for a recorded file is refused too
    path.unlink()
    zoo.files[REL] = PAYLOAD[::-1]
    with pytest.raises(IntegrityError, match="nothing was cached"):
        fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False)
    assert not path.exists()


def test_pinned_sha256_is_checked(zoo: ZooServer, tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match=f"expected {'0' * 64}"):
        fetch(DEFAULT_URL, cache_dir=tmp_path, sha256="0" * 64, progress=False)
    assert _files(tmp_path) == []
    assert fetch(DEFAULT_URL + f"#sha256={SHA}", cache_dir=tmp_path, progress=False).read_bytes() == PAYLOAD


def test_404_names_the_url_and_what_to_do(zoo: ZooServer, tmp_path: Path) -> None:
    url = "https://dl.fbaipublicfiles.com/pyslowfast/model_zoo/ava/MISSING.pkl"
    with pytest.raises(DownloadError) as info:
        fetch(url, cache_dir=tmp_path, progress=False)
    message = str(info.value)
    assert f"cannot download {zoo.url}/pyslowfast/model_zoo/ava/MISSING.pkl: HTTP 404 not found" in message
    assert "mirror SLOWFAST_DET_ZOO_URL" in message and "holds that path" in message
    assert _files(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == [".locks"]  # no empty folders


def test_timeout_names_the_url(zoo: ZooServer, tmp_path: Path) -> None:
    zoo.hang[REL] = 3.0
    tic = time.monotonic()
    with pytest.raises(DownloadError, match=rf"download of {zoo.url}/{REL} timed out: no answer within 0.5 s"):
        fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False, timeout_s=0.5)
    assert time.monotonic() - tic < 2.5
    assert _files(tmp_path) == []


def test_refused_connection_names_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = ZooServer().start()
    url = server.url
    server.stop()  # nothing listens on that port any more
    monkeypatch.setenv("SLOWFAST_DET_ZOO_URL", url)
    with pytest.raises(DownloadError, match=rf"cannot download {url}/{REL}: connection refused"):
        fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False)


def test_full_disk_names_the_file_and_what_to_do(zoo: ZooServer, tmp_path: Path) -> None:
    part = cache_path_for(DEFAULT_URL, tmp_path).with_name("SLOWFAST_32x2_R101_50_50.pkl.part")
    part.parent.mkdir(parents=True)
    part.symlink_to("/dev/full")  # every write there fails with ENOSPC, as on a full disk
    with pytest.raises(DownloadError, match=r"the disk is full .*Free space there, or set SLOWFAST_DET_CACHE"):
        fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False)
    assert not part.is_symlink()


def test_offline_uses_the_cache_only(zoo: ZooServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOWFAST_DET_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"SLOWFAST_32x2_R101_50_50.pkl is not in the cache; expected it at "):
        fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False)
    assert zoo.requests == []
    path = fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False, offline=False)
    assert fetch(DEFAULT_URL, cache_dir=tmp_path, progress=False) == path  # offline, from the cache
    assert len(zoo.requests) == 1


def test_two_processes_download_one_file(zoo: ZooServer, tmp_path: Path) -> None:
    zoo.pause.add(REL)  # the first download stops half-way until released
    code = (
        "import sys; from slowfast_det.checkpoint.cache import fetch; "
        "print(fetch(sys.argv[1], cache_dir=sys.argv[2], progress=False))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", code, DEFAULT_URL, str(tmp_path)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    first = start()
    deadline = time.monotonic() + 60
    while not zoo.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert zoo.requests, "the first process never asked for the file"
    second = start()
    assert second.stderr is not None
    waiting = second.stderr.readline()  # printed before it blocks on the lock
    assert "waiting for another process downloading" in waiting
    zoo.release.set()
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert out1 == out2 == f"{cache_path_for(DEFAULT_URL, tmp_path)}\n"
    assert Path(out1.strip()).read_bytes() == PAYLOAD
    assert zoo.requests == [(REL, None)]  # downloaded once
    assert _files(tmp_path) == [CACHE_LOCK_NAME, "dl.fbaipublicfiles.com/" + REL]
    assert list(json.loads((tmp_path / CACHE_LOCK_NAME).read_text())["files"]) == ["dl.fbaipublicfiles.com/" + REL]
