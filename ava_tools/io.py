"""Readers for AVA's text files (pandas; no torch).

Formats (https://research.google.com/ava/download.html and PySlowFast's ``DATASET.md``):

* annotation CSV, no header: ``video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]`` (v2.x: person id);
* predicted person boxes, no header: ``video_id,timestamp,x1,y1,x2,y2,action_id,score`` where ``action_id``
  may be empty (an unlabelled detection);
* exclusions, no header: ``video_id,second``;
* frame lists, space separated with one header line: ``original_vido_id video_id frame_id path labels``.

Values are parsed as PySlowFast parses them (Python ``int``/``float`` semantics, exact decimal-to-binary
rounding; ``"0902"`` is 902). Boxes are normalised ``x1, y1, x2, y2``. A malformed row raises
:class:`AvaFormatError`, which names the file, the 1-based line and column, the field and what was expected.

Every reader also takes gzip- or bz2-compressed files (``train.csv.gz``), recognised by their first bytes
whatever their name (:mod:`ava_tools.compression`); other compressed formats are named in the error. A CSV of
zero bytes reads as a table without rows (with a logged "empty file" warning); a frame list needs its header.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ava_tools.compression import DECODE_ERRORS, READABLE, open_text, sniff_compression, unsupported_message
from ava_tools.labelmap import AvaFormatError

__all__ = [
    "ANNOTATION_COLUMNS",
    "EXCLUSION_COLUMNS",
    "FRAME_LIST_COLUMNS",
    "PREDICTED_BOX_COLUMNS",
    "read_annotations",
    "read_exclusions",
    "read_frame_list",
    "read_frame_list_table",
    "read_predicted_boxes",
]

ANNOTATION_COLUMNS = ("video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id")
PREDICTED_BOX_COLUMNS = ("video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score")
EXCLUSION_COLUMNS = ("video_id", "timestamp")
FRAME_LIST_COLUMNS = ("original_vido_id", "video_id", "frame_id", "path", "labels")
logger = logging.getLogger(__name__)

_FRAME_LIST_HEADER_FIRST = (
    "original_vido_id",
    "original_video_id",
)  # PySlowFast's spelling, and the fixed one


def _error(path: str | os.PathLike[str], line: int | None, column: int | None, message: str) -> AvaFormatError:
    """An :class:`AvaFormatError` located at ``path`` (1-based ``line`` and ``column``, None when not one)."""
    return AvaFormatError(message, path=path, line=line, column=column)


@dataclass(frozen=True)
class _Col:
    name: str
    kind: str  # "str", "int", "float", "label" (int, empty -> -1)
    required: bool = True  # False: the column may be absent from the whole file (filled with -1)


_ANNOTATION_SPEC = (
    _Col("video_id", "str"),
    _Col("timestamp", "int"),
    _Col("x1", "float"),
    _Col("y1", "float"),
    _Col("x2", "float"),
    _Col("y2", "float"),
    _Col("action_id", "label"),
    _Col("person_id", "label", required=False),
)
_PREDICTED_SPEC = _ANNOTATION_SPEC[:7] + (_Col("score", "float"),)
_EXCLUSION_SPEC = (_Col("video_id", "str"), _Col("timestamp", "int"))

_EXPECTED = {
    "str": "a non-empty string",
    "int": "an integer",
    "float": "a finite number",
    "label": "an integer or nothing",
}


def _read_pandas(path: Path, n_columns: int, sep: str, skiprows: int, compression: str | None) -> pa.Table:
    """Slow exact path: every field as text ('' where a line is short), one row per physical line."""
    try:
        frame = pd.read_csv(
            path,
            compression=compression,
            sep=sep,
            header=None,
            skiprows=skiprows,
            dtype=str,
            na_filter=False,
            keep_default_na=False,
            skip_blank_lines=False,
            quoting=csv.QUOTE_NONE,
            engine="c",
        )
    except pd.errors.EmptyDataError:
        return pa.table({str(i): pa.array([], type=pa.string()) for i in range(n_columns)})
    except pd.errors.ParserError as exc:
        # pandas: "Expected 8 fields in line 5, saw 9" (physical line numbers, skipped lines included)
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if match:
            expected, line, saw = (int(g) for g in match.groups())
            raise _error(
                path, line, None, f"{saw} fields, expected at most {expected} (as on the first line)"
            ) from exc
        raise _error(path, None, None, f"cannot be parsed: {exc}") from exc
    except UnicodeDecodeError as exc:
        what = "not UTF-8 text" if compression is None else f"{compression}-compressed, but not UTF-8 text inside"
        raise _error(path, None, None, f"{what}: {exc}") from exc
    except DECODE_ERRORS as exc:
        if compression is None:
            raise
        raise _error(path, None, None, f"corrupt or truncated {compression} data ({exc})") from exc
    return pa.table({str(j): pa.array(frame[j].tolist(), type=pa.string()) for j in frame.columns})


def _read_arrow(path: Path, delimiter: str, skiprows: int, compression: str | None) -> pa.Table | None:
    """Fast path (pyarrow's reader, no Python object per field); None where it cannot decide."""
    try:
        # compression given explicitly: pyarrow would otherwise guess it from the file name
        with pa.input_stream(str(path), compression=compression) as stream:
            table = pacsv.read_csv(
                stream,
                read_options=pacsv.ReadOptions(skip_rows=skiprows, autogenerate_column_names=True),
                parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(
                    column_types={f"f{i}": pa.string() for i in range(64)},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError):
        return None  # ragged rows, blank lines, bad UTF-8, empty or corrupt file: the pandas path names the problem
    return table.rename_columns([str(i) for i in range(table.num_columns)])


def _read_raw(path: Path, n_columns: int, *, frame_list: bool = False) -> pa.Table:
    """Every field as text, columns "0", "1", ...; one row per physical line (header skipped for frame lists).

    CSV files split on commas (no quoting); frame lists on runs of whitespace, as Python's ``str.split()``.
    """
    compression = _compression(path)
    skip = 1 if frame_list else 0
    table = _read_arrow(path, " " if frame_list else ",", skip, compression)
    if table is not None and frame_list:
        # single spaces only: double spaces (empty fields) or tabs need whitespace-run splitting
        odd = any(
            pc.any(pc.equal(c, "")).as_py() or pc.any(pc.match_substring(c, "\t")).as_py()
            for c in table.columns
        )
        if odd or table.num_columns != n_columns:
            table = None
    if table is None:
        table = _read_pandas(path, n_columns, r"\s+" if frame_list else ",", skip, compression)
    return table


def _compression(path: Path) -> str | None:
    """The file's compression (None: plain text); raises for a missing file or a format not read here."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    compression = sniff_compression(path)
    if compression is not None and compression not in READABLE:
        raise _error(path, None, None, unsupported_message(compression))
    return compression


def _python_parse(values: Sequence[str], parse: Callable[[str], object]) -> int | None:
    """Index of the first value that ``parse`` rejects, or None."""
    for i, text in enumerate(values):
        try:
            parse(text)
        except ValueError:
            return i
    return None


def _to_numeric(text: pa.ChunkedArray | pa.Array, kind: str, path: Path, column: int, name: str) -> np.ndarray:
    """Parse a text column as PySlowFast does (``int(text)`` / ``float(text)``); errors name the line and the
    field (``name``) and quote the text as written."""
    target = pa.float64() if kind == "float" else pa.int64()
    if kind == "label":
        text = pc.if_else(pc.equal(text, ""), "-1", text)
    try:
        # pyarrow's parser rounds exactly as Python's float(); it rejects some text Python accepts
        # (surrounding spaces, "1_0"), which the slow path below then parses the Python way.
        values = pc.cast(text, target).to_numpy()
    except pa.ArrowInvalid:
        texts = text.to_pylist()
        parse: Callable[[str], object] = float if kind == "float" else int
        bad = _python_parse(texts, parse)
        if bad is not None:
            raise _error(path, bad + 1, column, f"{name} {texts[bad]!r} is not {_EXPECTED[kind]}") from None
        values = np.array([parse(t) for t in texts], dtype=np.float64 if kind == "float" else np.int64)
    if kind == "float":
        finite = np.isfinite(values)
        if not finite.all():
            bad = int(np.argmin(finite))
            raise _error(path, bad + 1, column, f"{name} {text[bad].as_py()!r} is not {_EXPECTED[kind]}")
    return values


def _empty_description(path: Path) -> str:
    """How an input without content is described: "empty file (0 bytes)", or empty after decompression."""
    size = path.stat().st_size
    return "empty file (0 bytes)" if size == 0 else f"empty file ({size} bytes, no text after decompression)"


def _first_empty(text: pa.ChunkedArray) -> int | None:
    empty = pc.equal(text, "")
    if not pc.any(empty).as_py():
        return None
    return int(pc.index(empty, True).as_py())


def _parse_table(path: Path, spec: Sequence[_Col], *, with_source: bool) -> pd.DataFrame:
    raw = _read_raw(path, len(spec))
    if raw.num_rows == 0:
        logger.warning("%s: %s: the table has no rows", path, _empty_description(path))
    n_min = sum(c.required for c in spec)
    n_cols = raw.num_columns
    if raw.num_rows and not (n_min <= n_cols <= len(spec)):
        expected = str(len(spec)) if n_min == len(spec) else f"{n_min} or {len(spec)}"
        names = ",".join(c.name for c in spec)
        raise _error(path, 1, None, f"{n_cols} fields, expected {expected} ({names})")
    out: dict[str, pa.ChunkedArray | pa.Array | np.ndarray] = {}
    for j, col in enumerate(spec):
        if j >= n_cols:
            out[col.name] = np.full(raw.num_rows, -1, dtype=np.int64)
            continue
        text = raw.column(j)
        if col.kind == "str":
            bad = _first_empty(text)
            if bad is not None:
                blank = all(raw.column(k)[bad].as_py() == "" for k in range(n_cols))
                what = "empty line" if blank else "empty field"
                raise _error(
                    path, bad + 1, j + 1, f"{what}; expected {col.name} ({_EXPECTED['str']})"
                )
            out[col.name] = text
        else:
            out[col.name] = _to_numeric(text, col.kind, path, j + 1, col.name)
    if with_source:
        out["line"] = np.arange(1, raw.num_rows + 1, dtype=np.int64)
        out["box_text"] = pc.binary_join_element_wise(*(raw.column(k) for k in range(2, 6)), ",")
    return pa.table(out).to_pandas()


def read_annotations(path: str | os.PathLike[str], *, with_source: bool = False) -> pd.DataFrame:
    """Read an AVA annotation CSV (ground truth).

    Args:
        path: CSV without header, ``video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]``.
        with_source: also return ``line`` (1-based line number) and ``box_text`` (the four coordinate fields'
            text joined by commas, PySlowFast's key for merging rows of the same box).

    Returns:
        DataFrame with columns :data:`ANNOTATION_COLUMNS` (+ ``line``, ``box_text``): ``timestamp`` int64 s,
        ``x1..y2`` float64 normalised, ``action_id`` int64 (-1 where empty), ``person_id`` int64 (-1 where
        absent or empty). Rows in file order.

    Raises:
        AvaFormatError: wrong field count, empty video id, non-numeric / non-finite value.
        FileNotFoundError: no such file.
    """
    return _parse_table(Path(path), _ANNOTATION_SPEC, with_source=with_source)


def read_predicted_boxes(
    path: str | os.PathLike[str], *, score_thresh: float | None = None, with_source: bool = False
) -> pd.DataFrame:
    """Read a predicted-person-box CSV (``video_id,timestamp,x1,y1,x2,y2,action_id,score``).

    Args:
        path: CSV without header; ``action_id`` may be empty.
        score_thresh: drop rows whose score is below it (PySlowFast: ``score < AVA.DETECTION_SCORE_THRESH``
            is dropped, equal is kept). None keeps all rows.
        with_source: also return ``line`` and ``box_text`` (see :func:`read_annotations`).

    Returns:
        DataFrame with columns :data:`PREDICTED_BOX_COLUMNS` (+ ``line``, ``box_text``); ``action_id`` is -1
        where empty; ``score`` float64. Rows in file order.
    """
    frame = _parse_table(Path(path), _PREDICTED_SPEC, with_source=with_source)
    if score_thresh is not None:
        frame = frame[~(frame["score"].to_numpy() < score_thresh)].reset_index(drop=True)
    return frame


def read_exclusions(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an exclusion CSV (``video_id,second``, no header): keyframes the evaluator ignores.

    Returns:
        DataFrame with columns ``video_id`` (str) and ``timestamp`` (int64 seconds), file order.
    """
    return _parse_table(Path(path), _EXCLUSION_SPEC, with_source=False)


def read_frame_list_table(path: str | os.PathLike[str]) -> pa.Table:
    """:func:`read_frame_list` as an Arrow table (compact: no Python object per field; for 6M-line lists)."""
    path = Path(path)
    compression = _compression(path)
    try:
        with open_text(path, compression, errors="replace") as f:
            first_line = f.readline()
    except DECODE_ERRORS as exc:
        raise _error(path, None, None, f"corrupt or truncated {compression} data ({exc})") from exc
    if not first_line:
        raise _error(
            path, None, None, f"{_empty_description(path)}; expected a frame list with the header line "
            f"'{' '.join(FRAME_LIST_COLUMNS)}'"
        )
    header = first_line.split()
    if not header or header[0] not in _FRAME_LIST_HEADER_FIRST:
        raise _error(
            path,
            1,
            None,
            f"expected the header line '{' '.join(FRAME_LIST_COLUMNS)}', got {' '.join(header)!r}",
        )
    raw = _read_raw(path, 5, frame_list=True)
    if raw.num_rows == 0:
        return pa.table({name: pa.array([], type=pa.string()) for name in FRAME_LIST_COLUMNS})
    if raw.num_columns != 5:
        raise _error(
            path, 2, None, f"{raw.num_columns} fields, expected 5 ({' '.join(FRAME_LIST_COLUMNS)})"
        )
    bad = _first_empty(raw.column(4))
    first = _first_empty(raw.column(0))
    if first is not None and (bad is None or first < bad):
        bad = first
    if bad is not None:
        n_fields = sum(raw.column(k)[bad].as_py() != "" for k in range(5))
        raise _error(
            path, bad + 2, None, f"{n_fields} fields, expected 5 ({' '.join(FRAME_LIST_COLUMNS)})"
        )
    return raw.rename_columns(list(FRAME_LIST_COLUMNS))


def read_frame_list(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a frame list (space separated, header ``original_vido_id video_id frame_id path labels``).

    The header line is required and skipped (PySlowFast's AVA loader skips the first line unread; a list
    without one would silently lose its first frame, so it is an error here). Fields are split on runs of
    whitespace as Python's ``str.split()`` does; every line needs exactly 5 fields.

    Returns:
        DataFrame with the five columns of :data:`FRAME_LIST_COLUMNS`, all text, in file order.

    Raises:
        AvaFormatError: missing header, a line with other than 5 fields.
    """
    return read_frame_list_table(path).to_pandas()
