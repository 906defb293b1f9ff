"""Atomic file output: write to a temporary file in the target's folder, then ``os.replace`` it into place.

A reader never sees a partial file: the target either keeps its old content (the write failed or was
interrupted; the temporary file is removed) or holds the complete new content. The temporary file sits in
the same folder so ``os.replace`` is a rename on one filesystem. ``tempfile.mkstemp`` creates files with
mode 0600; before the rename the file gets the mode a plain ``open(path, "w")`` would give it
(``0o666 & ~umask``). No torch import: ``ava_tools`` must import without it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "atomic_output",
    "default_file_mode",
    "set_default_permissions",
    "write_bytes_atomic",
    "write_csv_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def default_file_mode() -> int:
    """The permission bits a plain ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    umask = os.umask(0)  # reading the umask requires setting it; restore at once
    os.umask(umask)
    return 0o666 & ~umask


def set_default_permissions(path: str | os.PathLike[str]) -> Path:
    """Give ``path`` (e.g. made by ``tempfile.mkstemp``, mode 0600) the mode a plain ``open`` would; returns it."""
    os.chmod(path, default_file_mode())
    return Path(path)


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit it replaces ``path``, on an error it is removed.

    The parent folder is created if missing. Write the temporary file by name (it exists, empty). On
    success its mode becomes :func:`default_file_mode` and it is renamed onto ``path``.

    Args:
        path: the final file.
        suffix: the temporary file's suffix (e.g. ``".tmp.mp4"`` for writers that look at the extension).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        set_default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(text: str, path: str | os.PathLike[str], *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, newlines unchanged (``"\\n"`` stays ``"\\n"``); returns the path."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding=encoding, newline="") as f:
        f.write(text)
    return Path(path)


def write_csv_atomic(frame: pd.DataFrame, path: str | os.PathLike[str], **to_csv_kwargs: Any) -> Path:
    """Write ``frame`` with ``DataFrame.to_csv`` atomically; returns the path.

    Defaults differ from pandas in two places: ``index=False`` and ``lineterminator="\\n"``; any
    ``to_csv`` keyword overrides them.
    """
    kwargs: dict[str, Any] = {"index": False, "lineterminator": "\n", **to_csv_kwargs}
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)


def write_json_atomic(
    obj: Any, path: str | os.PathLike[str], *, indent: int | None = 1, **dump_kwargs: Any
) -> Path:
    """Write ``obj`` as JSON plus a final newline atomically; ``dump_kwargs`` go to ``json.dump``."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, **dump_kwargs)
        f.write("\n")
    return Path(path)
