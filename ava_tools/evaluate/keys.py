"""Keyframe keys: the official key strings (current and ``-e`` releases), interned to integers."""

from __future__ import annotations

import decimal
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported lazily: the CLI path does not need it (saves ~1 s of start-up)
    pass

from ava_tools.labelmap import (
    AvaFormatError,
)


class _KeyTable:
    """Official keyframe key strings <-> dense integer ids (shared by all files of one evaluation)."""

    def __init__(self, legacy: bool) -> None:
        self.legacy = legacy
        self.ids: dict[str, int] = {}
        self.keys: list[str] = []
        self._pairs: dict[tuple[Any, Any], int] = {}
        self._stamps: dict[Any, str] = {}

    def stamp_text(self, timestamp: Any) -> str:
        """The timestamp part of the official key; raises ValueError/ArithmeticError/TypeError like it.

        %-formatting on purpose: "%.6f" % Decimal goes through float (so 906.0000001 -> 906.000000), unlike
        format(Decimal), which rounds in decimal; the official key depends on it.
        """
        text = self._stamps.get(timestamp)
        if text is None:
            if self.legacy:
                text = "%04d" % int(timestamp)  # noqa: UP031
            else:
                text = "%.6f" % decimal.Decimal(timestamp)  # noqa: UP031
            self._stamps[timestamp] = text
        return text

    def make_key(self, video: Any, timestamp: Any) -> str:
        """The official key ``"%s,%.6f" % (video, Decimal(ts))`` (legacy: ``"%s,%04d" % (video, int(ts))``)."""
        return f"{video},{self.stamp_text(timestamp)}"

    def known_pair(self, pair: tuple[Any, Any], default: int) -> int:
        """Id of an already seen (video, timestamp) pair, else ``default`` (a fast cache lookup)."""
        return self._pairs.get(pair, default)

    def id_of(self, video: Any, timestamp: Any) -> int:
        pair = (video, timestamp)
        kid = self._pairs.get(pair)
        if kid is None:
            key = self.make_key(video, timestamp)
            kid = self.ids.get(key)
            if kid is None:
                kid = self.ids[key] = len(self.keys)
                self.keys.append(key)
            self._pairs[pair] = kid
        return kid

    def __len__(self) -> int:
        return len(self.keys)


def _plain(value: Any) -> str:
    """A value for a message as the user wrote it: ``-0.1``, ``3``, ``nan``, ``'902x'`` (not ``np.float64(-0.1)``)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return repr(value)


def _key_error(path: str, line: int | None, video: Any, timestamp: Any, legacy: bool) -> AvaFormatError:
    where = f"{path}, line {line}" if line is not None else path
    want = "an integer second (the -e/legacy release uses int())" if legacy else "a number (Decimal())"
    return AvaFormatError(f"{where}: timestamp {_plain(timestamp)} of video {_plain(video)} is not {want}")
