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
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ava_tools.atomic import atomic_output, set_default_permissions, write_json_atomic
from ava_tools.cli import UserError

__all__ = [
    "DETECTRON2_URL_PREFIX",
    "WeightsError",
    "default_cache_dir",
    "resolve_url",
    "cache_path_for",
    "cached_sha256",
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


# ---------------------------------------------------------------------------------------------------------
# Trusted downloads: one cache, resumable, locked, trust-on-first-use hashes, offline mode, mirrors
# ---------------------------------------------------------------------------------------------------------
# :func:`fetch` is what the model zoo, ``detect-video`` and ``slowfast-zoo`` use for URLs. Compared with
# :func:`resolve_weights` (kept for its callers) it adds:
#
# * resume: an interrupted download keeps its bytes in ``<file>.part`` and continues with an HTTP Range
#   request (in the same call, up to ``retries`` times, and in any later call);
# * a per-file lock (``fcntl.flock`` on ``CACHE/.locks/...``): two processes asking for the same file download
#   it once; the second waits and then uses the first one's file;
# * trust on first use: without a pinned sha256, the first download's sha256 is recorded in
#   ``CACHE/cache-lock.json`` and every later use re-hashes the file and refuses it if it changed;
# * offline mode (``offline=True`` or ``SLOWFAST_DET_OFFLINE=1``): the cache only, a missing file is named;
# * mirrors: ``SLOWFAST_DET_ZOO_URL=BASE`` downloads ``https://dl.fbaipublicfiles.com/REL`` from ``BASE/REL``
#   (the cache path stays that of the original URL, so a mirror and the real host share one cache);
# * errors (HTTP 404 and others, time-outs, refused connections, unknown hosts, a full disk) that name the URL
#   and say what to do.

ZOO_URL_ENV = "SLOWFAST_DET_ZOO_URL"
OFFLINE_ENV = "SLOWFAST_DET_OFFLINE"
CACHE_ENV = "SLOWFAST_DET_CACHE"
DEFAULT_HOSTS = ("https://dl.fbaipublicfiles.com/",)
CACHE_LOCK_NAME = "cache-lock.json"
_LOCK_DIR = ".locks"


class DownloadError(WeightsError):
    """A download failed (HTTP error, network, disk); the message names the URL and what to do."""


class OfflineError(WeightsError):
    """Offline mode and the file is not in the cache (the message names the file and where it was looked for)."""


class IntegrityError(WeightsError):
    """A file's sha256 differs from the pinned or the recorded one."""


def offline_requested(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether ``$SLOWFAST_DET_OFFLINE`` is set to 1/true/yes/on."""
    if offline is not None:
        return offline
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def mirror_url(url: str) -> str:
    """``url`` with a default host (:data:`DEFAULT_HOSTS`) replaced by ``$SLOWFAST_DET_ZOO_URL``, if set.

    Example: with ``SLOWFAST_DET_ZOO_URL=http://mirror.local/files``,
    ``https://dl.fbaipublicfiles.com/pyslowfast/model_zoo/ava/X.pkl`` ->
    ``http://mirror.local/files/pyslowfast/model_zoo/ava/X.pkl``. Other URLs are returned unchanged.
    """
    base = os.environ.get(ZOO_URL_ENV, "").strip()
    if not base:
        return url
    for host in DEFAULT_HOSTS:
        if url.startswith(host):
            return base.rstrip("/") + "/" + url[len(host):]
    return url


def cache_lock_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache's record of sha256 hashes (``CACHE/cache-lock.json``)."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / CACHE_LOCK_NAME


def read_cache_lock(cache_dir: str | os.PathLike[str] | None = None) -> dict[str, dict[str, object]]:
    """The recorded files: ``{path relative to the cache: {"url", "sha256", "size", "recorded"}}``.

    Raises:
        WeightsError: the record exists but is not valid JSON of that shape.
    """
    import json

    path = cache_lock_path(cache_dir)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise WeightsError(
            f"{path}: the cache's hash record is damaged ({exc}); check or delete it (the files it recorded "
            "will then be trusted again on their next use)"
        ) from exc
    return files


def _update_cache_lock(cache_dir: Path, rel: str, entry: dict[str, object] | None) -> None:
    """Set (or, with None, remove) the record of ``rel``, under the record's own lock, written atomically."""
    from ava_tools.atomic import write_json_atomic

    with _file_lock(cache_dir, CACHE_LOCK_NAME):
        files = read_cache_lock(cache_dir)
        if entry is None:
            files.pop(rel, None)
        else:
            files[rel] = entry
        write_json_atomic({"version": 1, "files": dict(sorted(files.items()))}, cache_lock_path(cache_dir))


class _file_lock:  # noqa: N801 - used as a context manager, like a function
    """An exclusive ``fcntl.flock`` on ``CACHE/.locks/<key>.lock`` (released when the process dies, too)."""

    def __init__(self, cache_dir: Path, key: str, *, on_wait: str | None = None):
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in key)[-80:]
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        self.path = cache_dir / _LOCK_DIR / f"{safe}.{digest}.lock"
        self.on_wait = on_wait
        self.fd = -1

    def __enter__(self) -> _file_lock:
        import fcntl
        import sys

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.on_wait:
                print(self.on_wait, file=sys.stderr, flush=True)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _relpath(target: Path, cache_dir: Path) -> str:
    return target.relative_to(cache_dir).as_posix()


def _check_cached(target: Path, cache_dir: Path, url: str, expected: str | None, *, got: str | None = None) -> Path:
    """Re-hash a cached file (unless ``got``, its hash, is known) against the pinned hash, else the recorded one
    (recording it on first use)."""
    import datetime

    rel = _relpath(target, cache_dir)
    got = got if got is not None else sha256_of(target)
    if expected is not None and got != expected:
        raise IntegrityError(
            f"cached {target} (from {url}) has sha256 {got}, expected {expected}; delete it to download again"
        )
    record = read_cache_lock(cache_dir).get(rel)
    if record is None:
        utc = datetime.timezone.utc  # noqa: UP017 - datetime.UTC needs Python 3.11
        now = datetime.datetime.now(utc).isoformat(timespec="seconds")
        _update_cache_lock(cache_dir, rel, {"url": url, "sha256": got, "size": target.stat().st_size, "recorded": now})
    elif record.get("sha256") != got:
        raise IntegrityError(
            f"cached {target} (from {url}) changed since it was first downloaded on {record.get('recorded')}: its "
            f"sha256 is now {got}, recorded {record.get('sha256')} in {cache_lock_path(cache_dir)}. Refusing to "
            "use it. If you did not replace it on purpose, treat it as tampered with: fetch it again with "
            "`slowfast-zoo download --force NAME` (or delete the file and its entry in the record)"
        )
    return target


def is_cached(spec: str, cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The cached file of URL ``spec`` if present (not re-hashed: see :func:`verify_cache`), else None."""
    url, _ = resolve_url(spec)
    target = cache_path_for(url, cache_dir if cache_dir is not None else default_cache_dir())
    return target if target.is_file() else None


def forget(spec: str, cache_dir: str | os.PathLike[str] | None = None) -> None:
    """Delete URL ``spec``'s cached file, partial download and hash record (to download it afresh)."""
    root = Path(cache_dir if cache_dir is not None else default_cache_dir())
    url, _ = resolve_url(spec)
    target = cache_path_for(url, root)
    with _file_lock(root, _relpath(target, root)):
        target.unlink(missing_ok=True)
        target.with_name(target.name + ".part").unlink(missing_ok=True)
        _update_cache_lock(root, _relpath(target, root), None)


def fetch(
    spec: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    offline: bool | None = None,
    progress: bool = True,
    timeout_s: float = 60.0,
    retries: int = 3,
) -> Path:
    """The cached, verified local file of URL ``spec`` (http(s) or ``detectron2://``), downloading it if needed.

    Args:
        spec: URL, optionally ending in ``#sha256=<hex>``.
        cache_dir: the cache (default :func:`default_cache_dir`: ``$SLOWFAST_DET_CACHE`` or
            ``~/.cache/slowfast_det/weights``).
        sha256: pinned hex sha256 (overrides a URL fragment). Without one, the first download's hash is
            recorded in ``CACHE/cache-lock.json`` and later uses must match it (trust on first use).
        offline: use the cache only (None: ``$SLOWFAST_DET_OFFLINE``).
        progress: tqdm bar with size and rate.
        timeout_s: socket time-out of each connect/read, seconds.
        retries: how many times an interrupted transfer is resumed (HTTP Range) within this call.
    Raises:
        OfflineError: offline and not cached. IntegrityError: hash differs from the pinned/recorded one
            (a downloaded file is then deleted). DownloadError: HTTP/network/disk failure.
    """
    url, pinned = resolve_url(spec)
    expected = sha256.lower() if sha256 is not None else pinned
    root = Path(cache_dir if cache_dir is not None else default_cache_dir())
    target = cache_path_for(url, root)
    if target.is_file():  # files appear by rename, so a present file is complete
        return _check_cached(target, root, url, expected)
    if offline_requested(offline):
        raise OfflineError(
            f"offline mode (--offline or {OFFLINE_ENV}=1): {target.name} is not in the cache; expected it at "
            f"{target} (from {url}). Download it on a machine with a network (`slowfast-zoo download NAME` or "
            f"any command that uses it) and copy that cache folder here, or point {CACHE_ENV} to a cache that "
            "holds it"
        )
    rel = _relpath(target, root)
    with _file_lock(root, rel, on_wait=f"waiting for another process downloading {rel} into {root}"):
        if target.is_file():  # the other process finished it
            return _check_cached(target, root, url, expected)
        recorded = read_cache_lock(root).get(rel)
        want = expected if expected is not None else (str(recorded["sha256"]) if recorded else None)
        got = _download_resumable(url, target, root, want, progress=progress, timeout_s=timeout_s, retries=retries)
        return _check_cached(target, root, url, expected, got=got)


def _remove_empty_dirs(path: Path, root: Path) -> None:
    """Remove ``path``'s parent folders up to (not including) ``root`` while they are empty."""
    for parent in path.parents:
        if parent == root or root not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break


def _download_resumable(
    url: str, target: Path, root: Path, expected: str | None, *, progress: bool, timeout_s: float, retries: int
) -> str:
    """Download ``url`` (through the mirror) into ``target.part``, resuming, then verify and rename to ``target``;
    returns the sha256."""
    import http.client

    source = mirror_url(url)
    part = target.with_name(target.name + ".part")
    attempt = 0
    while True:
        before = part.stat().st_size if part.is_file() else 0
        try:
            _transfer(source, url, part, target, root, progress=progress, timeout_s=timeout_s)
            break
        except (http.client.IncompleteRead, ConnectionError, TimeoutError, http.client.HTTPException) as exc:
            now = part.stat().st_size if part.is_file() else 0
            if now > before and attempt < retries:  # progress was made: resume from the byte reached
                attempt += 1
                continue
            if now == 0:
                part.unlink(missing_ok=True)
                _remove_empty_dirs(part, root)
            if isinstance(exc, TimeoutError) and now == before:
                raise DownloadError(_timeout_message(source, url, timeout_s)) from exc
            raise DownloadError(
                f"download of {source} was interrupted after {now} bytes ({exc.__class__.__name__}: {exc}); "
                + (f"the bytes are kept in {part}: run the command again to resume from byte {now}"
                   if now else "check the network and try again")
            ) from exc
    got = sha256_of(part)
    if expected is not None and got != expected:
        part.unlink()
        _remove_empty_dirs(part, root)
        raise IntegrityError(
            f"download of {source} has sha256 {got}, expected {expected}"
            + ("" if source == url else f" (mirror {ZOO_URL_ENV} for {url})")
            + "; nothing was cached. The file on the server differs from the one pinned or first recorded: "
            "check the mirror, or run `slowfast-zoo download --force NAME` if the change is expected"
        )
    with open(part, "rb+") as f:  # data on disk before the rename makes it visible
        os.fsync(f.fileno())
    set_default_permissions(part)
    os.replace(part, target)
    return got


def _hint(source: str, url: str) -> str:
    """What to do after a failed request, for the default host or a mirror."""
    if source != url:
        return (
            f" (mirror {ZOO_URL_ENV}={os.environ.get(ZOO_URL_ENV)} for {url}): check that the mirror is up and holds "
            "that path."
        )
    return (
        f". Check the URL and the network, set {ZOO_URL_ENV} to a mirror holding the same relative path, or copy "
        "the file into the cache and run offline (--offline)."
    )


def _timeout_message(source: str, url: str, timeout_s: float) -> str:
    return f"download of {source} timed out: no answer within {timeout_s:g} s{_hint(source, url)} Or retry later"


def _transfer(source: str, url: str, part: Path, target: Path, root: Path, *, progress: bool, timeout_s: float) -> None:
    """One HTTP request: append to ``part`` from its current size (Range) or rewrite it (server ignores Range)."""
    import errno
    import socket

    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "slowfast_det", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(source, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the part is already complete (or longer): start over
            part.unlink()
            return _transfer(source, url, part, target, root, progress=progress, timeout_s=timeout_s)
        what = "not found" if exc.code == 404 else exc.reason
        raise DownloadError(f"cannot download {source}: HTTP {exc.code} {what}{_hint(source, url)}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise DownloadError(_timeout_message(source, url, timeout_s)) from exc
        if isinstance(reason, ConnectionRefusedError):
            raise DownloadError(
                f"cannot download {source}: connection refused (nothing listens there){_hint(source, url)}"
            ) from exc
        if isinstance(reason, socket.gaierror):
            raise DownloadError(f"cannot download {source}: unknown host ({reason}){_hint(source, url)}") from exc
        raise DownloadError(f"cannot download {source}: {reason}{_hint(source, url)}") from exc
    except TimeoutError as exc:
        raise DownloadError(_timeout_message(source, url, timeout_s)) from exc
    with response:
        length = response.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else None
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if start != offset:
                raise DownloadError(f"cannot resume {source}: asked for bytes {offset}- but got {start}-")
            mode, total = "ab", (offset + size if size is not None else None)
        else:
            offset, mode, total = 0, "wb", size
        part.parent.mkdir(parents=True, exist_ok=True)
        received = offset
        try:
            with open(part, mode) as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                desc=f"download {target.name}", dynamic_ncols=True,
            ) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                part.unlink(missing_ok=True)
                _remove_empty_dirs(part, root)
                need = f"{total / 2**20:.1f} MiB" if total else "its size"
                raise DownloadError(
                    f"cannot download {source}: the disk is full ({exc.strerror}) writing {part}; the file needs "
                    f"{need}. Free space there, or set {CACHE_ENV} to a folder on a larger disk"
                ) from exc
            raise
        if total is not None and received < total:
            raise http_incomplete(received, total)


def http_incomplete(received: int = 0, total: int | None = None) -> Exception:
    """An ``http.client.IncompleteRead`` for a body that ended early (resumed by the caller)."""
    import http.client

    return http.client.IncompleteRead(b"", None if total is None else total - received)


def _content_range_start(header: str) -> int | None:
    """First byte of ``Content-Range: bytes START-END/TOTAL`` (None if unparsable)."""
    unit, _, spec = header.partition(" ")
    if unit != "bytes":
        return None
    first = spec.partition("-")[0]
    return int(first) if first.isdigit() else None


def resolve_trusted(
    spec: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    offline: bool | None = None,
    progress: bool = True,
    timeout_s: float = 60.0,
) -> Path:
    """:func:`resolve_weights` with :func:`fetch` for URLs: a local path is returned as is (it must exist)."""
    text = os.fspath(spec)
    if _is_url(text):
        return fetch(text, cache_dir=cache_dir, sha256=sha256, offline=offline, progress=progress, timeout_s=timeout_s)
    return resolve_weights(text, sha256=sha256)


@dataclass(frozen=True)
class CacheCheck:
    """One recorded file re-hashed by :func:`verify_cache`: ``status`` is ``ok``, ``changed`` or ``missing``."""

    path: Path
    url: str
    status: str
    sha256: str | None
    recorded_sha256: str


def verify_cache(cache_dir: str | os.PathLike[str] | None = None, *, progress: bool = True) -> list[CacheCheck]:
    """Re-hash every file recorded in the cache's ``cache-lock.json`` and compare with the recorded sha256."""
    root = Path(cache_dir if cache_dir is not None else default_cache_dir())
    checks = []
    records = read_cache_lock(root)
    for rel, record in tqdm(sorted(records.items()), desc="verify", unit="file", disable=not progress):
        path = root / rel
        recorded = str(record.get("sha256"))
        if not path.is_file():
            checks.append(CacheCheck(path, str(record.get("url")), "missing", None, recorded))
            continue
        got = sha256_of(path)
        checks.append(CacheCheck(path, str(record.get("url")), "ok" if got == recorded else "changed", got, recorded))
    return checks


__all__ += [
    "CACHE_ENV",
    "CACHE_LOCK_NAME",
    "DEFAULT_HOSTS",
    "OFFLINE_ENV",
    "ZOO_URL_ENV",
    "CacheCheck",
    "DownloadError",
    "IntegrityError",
    "OfflineError",
    "cache_lock_path",
    "fetch",
    "forget",
    "is_cached",
    "mirror_url",
    "offline_requested",
    "read_cache_lock",
    "resolve_trusted",
    "verify_cache",
]
