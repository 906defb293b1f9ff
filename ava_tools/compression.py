"""Compressed text inputs, recognised by their first bytes (not by the file name).

AVA's CSVs, frame lists and label maps are often stored gzip-compressed (``train.csv.gz``). The readers of
:mod:`ava_tools.io` and :mod:`ava_tools.labelmap` read gzip and bz2 files directly, whatever their name; for
other formats they name the format instead of reporting undecodable text.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import zlib
from typing import IO

__all__ = ["DECODE_ERRORS", "READABLE", "open_text", "sniff_compression", "unsupported_message"]

# (leading bytes, format name), as written by gzip, bzip2, xz, zstd and zip
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
)
#: Formats the readers decompress themselves (pandas, pyarrow and the standard library all read these).
READABLE = ("gzip", "bz2")
#: What a truncated or corrupt gzip/bz2 stream raises while it is read (gzip.BadGzipFile and bz2's
#: "Invalid data stream" are OSErrors).
DECODE_ERRORS = (EOFError, zlib.error, OSError)


def sniff_compression(path: str | os.PathLike[str]) -> str | None:
    """The compression format of ``path`` from its first bytes (``"gzip"``, ``"bz2"``, ``"xz"``, ``"zstd"``,
    ``"zip"``), or None for anything else (plain text, an empty file)."""
    with open(path, "rb") as f:
        head = f.read(6)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def unsupported_message(kind: str) -> str:
    """What to tell the user about a file compressed with a format the readers do not decompress."""
    return f"{kind}-compressed data; decompress it first (plain text, gzip and bz2 files are read directly)"


def open_text(path: str | os.PathLike[str], kind: str | None, errors: str = "strict") -> IO[str]:
    """Open ``path`` as UTF-8 text, decompressing ``kind`` (from :func:`sniff_compression`; None: plain).

    ``errors`` is the text decoding's (``"strict"``, ``"replace"``). Reading a corrupt stream raises one of
    :data:`DECODE_ERRORS`.
    """
    if kind == "gzip":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors=errors)
    if kind == "bz2":
        return io.TextIOWrapper(bz2.open(path, "rb"), encoding="utf-8", errors=errors)
    if kind is not None:
        raise ValueError(f"{path}: {unsupported_message(kind)}")
    return open(path, encoding="utf-8", errors=errors)
