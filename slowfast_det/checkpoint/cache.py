"""Weights given as local paths or URLs, downloaded once into a cache folder.

:func:`resolve_weights` turns what a user types after ``--weights`` into a local file:

* a local path is returned as is (it must exist);
* ``http(s)://`` URLs are downloaded once into ``cache_dir/<host>/<url path>``; later calls find the file there
  and download nothing;
* ``detectron2://X`` is the detectron2 model-zoo shorthand for ``https://dl.fbaipublicfiles.com/detectron2/X``.

A sha256 can be pinned with the ``sha256=`` argument or with a ``#sha256=<hex>`` URL fragment (as pip does). A
download is written to a temporary file in the cache folder, hashed while it streams, checked, and only then
renamed into place (``os.replace``), so the cache never holds a partial or unverified file, even after an
interrupted or failed download, and folders it created for a download that failed are removed again. A cached
file is checked again when a sha256 is pinned.

:func:`cached_sha256` hashes a local weights file once per (path, size, mtime) and remembers the result in
``cache_dir/.sha256-index.json``, so tools that record which weights they used (``detect-video``) stay cheap on
reruns.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ava_tools.atomic import atomic_output, write_json_atomic
from ava_tools.cli import UserError

__all__ = [
    "DETECTRON2_URL_PREFIX",
    "WeightsError",
    "default_cache_dir",
    "resolve_url",
    "cache_path_for",
    "cached_sha256",
    "copy_into_cache",
    "resolve_weights",
    "sha256_of",
]

DETECTRON2_URL_PREFIX = "https://dl.fbaipublicfiles.com/detectron2/"
_CHUNK = 1 << 20  # 1 MiB
_SHA_INDEX = ".sha256-index.json"  # hidden: cache_path_for never makes a host folder starting with "."

logger = logging.getLogger(__name__)


class WeightsError(UserError, RuntimeError):
    """Weights cannot be found, downloaded or verified."""


def default_cache_dir() -> Path:
    """``$SLOWFAST_DET_CACHE`` or ``$XDG_CACHE_HOME/slowfast_det/weights`` (``~/.cache/...``)."""
    env = os.environ.get("SLOWFAST_DET_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "slowfast_det" / "weights"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_sha256(path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Hex sha256 of a file, remembered in ``cache_dir/.sha256-index.json`` by resolved path, size and mtime.

    A file whose size or mtime (ns) changed is hashed again. The index is rewritten atomically; when it cannot
    be written (read-only cache) the hash is still returned, just not remembered.

    Args:
        path: the file.
        cache_dir: where the index lives (default :func:`default_cache_dir`).
    """
    path = Path(path).resolve()
    stat = path.stat()
    index_path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / _SHA_INDEX
    key = str(path)
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            index = {}
    except (OSError, ValueError):
        index = {}
    entry = index.get(key)
    if (isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns
            and isinstance(entry.get("sha256"), str)):
        return str(entry["sha256"])
    digest = sha256_of(path)
    index[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    try:
        write_json_atomic(index, index_path, indent=1)
    except OSError as exc:  # a read-only cache only costs a rehash next time
        logger.debug("cannot update %s: %s", index_path, exc)
    return digest


def resolve_url(spec: str) -> tuple[str, str | None]:
    """Split ``spec`` into ``(download URL, pinned sha256 or None)``; maps ``detectron2://`` URLs.

    Example: ``detectron2://COCO-Detection/x/model.pkl#sha256=ab..`` ->
    ``("https://dl.fbaipublicfiles.com/detectron2/COCO-Detection/x/model.pkl", "ab..")``.
    """
    url, _, fragment = spec.partition("#")
    pinned = None
    if fragment:
        key, _, value = fragment.partition("=")
        if key != "sha256" or len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
            raise WeightsError(f"{spec}: URL fragment must be '#sha256=<64 hex digits>', got '#{fragment}'")
        pinned = value.lower()
    if url.startswith("detectron2://"):
        url = DETECTRON2_URL_PREFIX + url[len("detectron2://"):]
    return url, pinned


def cache_path_for(url: str, cache_dir: str | os.PathLike[str]) -> Path:
    """Where ``url`` (http/https) is cached: ``cache_dir/<host[_port]>/<path>``, path components sanitised."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WeightsError(f"{url}: not an http(s) URL")
    host = parts.hostname + (f"_{parts.port}" if parts.port else "")
    segments = [s for s in urllib.parse.unquote(parts.path).split("/") if s not in ("", ".", "..")]
    if not segments:
        raise WeightsError(f"{url}: the URL names no file")
    return Path(cache_dir, host, *segments)


def _is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://", "detectron2://"))


def resolve_weights(
    spec: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout_s: float = 60.0,
) -> Path:
    """Return a local file for ``spec`` (a path, an http(s) URL or a ``detectron2://`` URL).

    Args:
        spec: local path or URL, optionally ending in ``#sha256=<hex>``.
        cache_dir: download cache (default :func:`default_cache_dir`).
        sha256: expected hex sha256 (overrides a URL fragment); checked after download and on cache hits.
        progress: show a tqdm bar (bytes) while downloading.
        timeout_s: socket timeout of the HTTP request, seconds.
    Raises:
        WeightsError: missing local file, HTTP/network failure, or sha256 mismatch (nothing is left in the
            cache in the last two cases).
    """
    text = os.fspath(spec)
    if not _is_url(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        if sha256 is not None and sha256_of(path) != sha256.lower():
            raise WeightsError(f"{path}: sha256 {sha256_of(path)} does not match the expected {sha256.lower()}")
        return path
    url, pinned = resolve_url(text)
    expected = sha256.lower() if sha256 is not None else pinned
    target = cache_path_for(url, cache_dir if cache_dir is not None else default_cache_dir())
    if target.is_file():
        if expected is not None:
            got = sha256_of(target)
            if got != expected:
                raise WeightsError(
                    f"cached {target} (from {url}) has sha256 {got}, expected {expected}; delete it to download again"
                )
        return target
    # folders this download creates are removed again if it fails: a failed download leaves no trace
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    try:
        _download(url, target, expected=expected, progress=progress, timeout_s=timeout_s)
    except BaseException:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (another download landed there meanwhile) or gone: keep the rest
        raise
    return target


def _download(url: str, target: Path, *, expected: str | None, progress: bool, timeout_s: float) -> None:
    """Stream ``url`` into a temporary file next to ``target``, verify, then rename atomically."""
    digest = hashlib.sha256()
    with atomic_output(target, suffix=".part") as tmp:
        try:
            response = urllib.request.urlopen(url, timeout=timeout_s)
        except (urllib.error.URLError, OSError) as exc:
            raise WeightsError(f"cannot download {url}: {exc}") from exc
        with response, open(tmp, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                      desc=f"download {target.name}") as bar:
                received = 0
                try:
                    for block in iter(lambda: response.read(_CHUNK), b""):
                        out.write(block)
                        digest.update(block)
                        received += len(block)
                        bar.update(len(block))
                except OSError as exc:
                    raise WeightsError(f"download of {url} failed after {received} bytes: {exc}") from exc
            if total is not None and received != total:
                raise WeightsError(f"download of {url} is truncated: {received} of {total} bytes")
        got = digest.hexdigest()
        if expected is not None and got != expected:
            raise WeightsError(f"download of {url} has sha256 {got}, expected {expected}; nothing was cached")


def copy_into_cache(src: str | os.PathLike[str], url: str, cache_dir: str | os.PathLike[str]) -> Path:
    """Place an already downloaded file where :func:`resolve_weights` looks for ``url`` (offline machines)."""
    target = cache_path_for(resolve_url(url)[0], cache_dir)
    with atomic_output(target, suffix=".part") as tmp:
        shutil.copyfile(src, tmp)
    return target
