"""Atomic file output: write to a temporary file in the target's folder, then ``os.replace`` it into place.

A reader never sees a partial file: the target either keeps its old content (the write failed or was
interrupted; the temporary file is removed) or holds the complete new content. The temporary file sits in
the same folder so ``os.replace`` is a rename on one filesystem. ``tempfile.mkstemp`` creates files with
mode 0600; before the rename the file gets the mode a plain ``open(path, "w")`` would give it
(``0o666 & ~umask``). No torch import: ``ava_tools`` must import without it.
"""

from __future__ import annotations

import json
import math
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
    "leftover_temporaries",
    "check_output_file",
    "check_output_folder",
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


def leftover_temporaries(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> list[Path]:
    """The temporary files :func:`atomic_output` makes for ``path`` (``.<name>.<random><suffix>`` beside it) that
    exist now. Once no writer of ``path`` can be running (e.g. its caller holds a lock), they are leftovers of a
    writer that was killed and may be removed. A missing folder has none."""
    path = Path(path)
    try:
        names = path.parent.iterdir()
        return sorted(f for f in names if f.name.startswith(f".{path.name}.") and f.name.endswith(suffix))
    except OSError:
        return []


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
    obj: Any, path: str | os.PathLike[str], *, indent: int | None = 1, nan_as_null: bool = False, **dump_kwargs: Any
) -> Path:
    """Write ``obj`` as JSON plus a final newline atomically; ``dump_kwargs`` go to ``json.dump``.

    ``nan_as_null`` writes NaN and infinite floats as ``null`` (strict JSON) instead of ``NaN``/``Infinity``
    (pass ``allow_nan=False`` to refuse them instead).
    """
    if nan_as_null:
        obj = _finite_or_none(obj)
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, **dump_kwargs)
        f.write("\n")
    return Path(path)


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite_or_none(v) for v in x]
    return x


# ---------------------------------------------------------------------------------------------------------
# Checks before long work: can the outputs be written at all?
# ---------------------------------------------------------------------------------------------------------
def _writable_ancestor(folder: Path) -> tuple[Path, str | None]:
    """The folder itself or, if missing, its nearest existing parent, and why outputs cannot go there (None: they
    can). A file is created and removed to test it: permission bits alone miss read-only mounts and immutable
    folders."""
    probe = folder
    while not probe.exists():
        if probe.is_symlink():
            return probe, "is a broken symbolic link"
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return probe, "is a file, not a folder"
    try:
        fd, name = tempfile.mkstemp(prefix=".write-test.", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return probe, f"is not writable ({exc.strerror or exc})"
    return probe, None


def check_output_folder(folder: str | os.PathLike[str], *, what: str = "output folder") -> None:
    """Check that outputs can be written into ``folder`` (created later if missing), creating nothing that stays.

    Raises:
        UserError: naming ``what``, the folder and what is wrong with it (a file, a broken link, not writable,
            or, for a missing folder, the same about its nearest existing parent).
    """
    from ava_tools.cli import UserError

    folder = Path(folder).expanduser()
    probe, problem = _writable_ancestor(folder)
    if problem is None:
        return
    if probe == folder:
        if problem == "is a file, not a folder":
            problem += ": name a folder (it is created if missing)"
        raise UserError(f"{what} {folder} {problem}")
    raise UserError(f"{what} {folder} cannot be created: {probe} {problem}")


def check_output_file(path: str | os.PathLike[str], *, what: str = "output file") -> None:
    """Check, before any work, that a file can be written at ``path`` (its folder created later if missing).

    Raises:
        UserError: ``path`` is a folder, or its (nearest existing) folder is a file or does not take new files;
            the message names ``what`` and the path as given.
    """
    from ava_tools.cli import UserError

    target = Path(path).expanduser()
    if target.is_dir():
        raise UserError(f"{what} {os.fspath(path)}: is a folder; give a file name")
    probe, problem = _writable_ancestor(target.parent)
    if problem is None:
        return
    if problem == "is a file, not a folder":
        raise UserError(f"{what} {os.fspath(path)}: {probe} is not a folder")
    raise UserError(f"{what} {os.fspath(path)}: cannot write in {probe} ({problem})")
