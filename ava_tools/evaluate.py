"""AVA frame-level action detection evaluation with exactly the official ActivityNet numbers, fast.

A drop-in replacement for ActivityNet's ``Evaluation/get_ava_performance.py``::

    python -m ava_tools.evaluate -l LABELMAP.pbtxt -g GROUNDTRUTH.csv -d DETECTIONS.csv \
        [-e EXCLUSIONS.csv] [--json OUT.json] [--plot OUT.png] [--sort {id,name,ap}] [--iou 0.3 0.75]

The metrics dict (``EvalResult.metrics``, ``--json``) holds exactly the official keys and values:
``PascalBoxes_Precision/mAP@0.5IOU`` and one ``PascalBoxes_PerformanceByCategory/AP@0.5IOU/<name>`` per
label-map name. Reproduced behaviours (``shared/field-notes.md`` section 4):

* Keyframe keys: ``"%s,%.6f" % (video_id, Decimal(timestamp))`` (so ``902``, ``0902`` and ``906.0000001``
  are one keyframe). Only keys present anywhere in the ground-truth file are scored (2-column rows and
  out-of-map rows included); detections elsewhere are ignored; 2-column detection rows are ignored.
* With ``-e`` (or ``legacy=True``) the whole earlier official release applies instead (the one that still
  took ``-e``, whose per-image evaluation has no NMS step): keys ``"%s,%04d" % (video_id, int(timestamp))``,
  excluded keys dropped from both files, every other detection keyframe scored (those absent from the
  ground truth are all false positives), 2-column rows rejected.
* Rows whose class is not in the label map are dropped first (silently, as the official does).
* At most 50 detections per keyframe, chosen by the official min-heap of ``(score, action_id, y1, x1, y2,
  x2)`` filled in file order (a row enters a full heap only if its score is strictly above the smallest
  score, evicting the smallest *tuple*), then stably sorted by descending score over the heap's array order.
  Ground truth goes through the same heap without cap, person_id acting as the score.
* Detection boxes with ``x1 >= x2`` or ``y1 >= y2`` use a cap slot and are then dropped.
* VOC greedy matching per keyframe and class in float64 with the official IoU formula: each detection takes
  the first arg-max-IoU ground-truth box of its class; true positive iff IoU >= 0.5 and that box is not yet
  matched (no fall-back to the next best box).
* All-points VOC AP per class; classes without ground truth are NaN and left out of the mean
  (``np.nanmean``); classes with ground truth but no detections score 0.

How it is fast: CSVs are parsed in 32 MB pieces by pyarrow (explicit column types), rows that cannot enter
any keyframe's top 50 are discarded on the fly, the cap is resolved with vectorised order statistics (the
exact outcome of the heap, ties included, follows from the first 50 rows scoring at or above the 50th-best
score), and matching is vectorised over all keyframes and classes. The heap's array order is only needed to
order detections of one keyframe and class with *equal* scores and different boxes whose true/false-positive
labels differ; those few keyframes are re-read and replayed through a literal heap (``heapq``). Files that
the fast reader cannot judge exactly (mixed 7/8-column rows, fields pyarrow rejects but Python's float()/int()
accept, errors whose line is unknown) are read again line by line with the ``csv`` module, like the official.

Order-dependent official behaviour: per class, the official concatenates the detections of all keyframes
(keyframes in order of first appearance in the detection file) and sorts with ``np.argsort(scores)[::-1]``,
an unstable sort, so with tied scores the AP can depend on the numpy version. We build the same array in the
same order and call the same numpy function, so we match the official run on the installed numpy.

Bad input raises :class:`AvaFormatError` naming the file, line and problem (the CLI prints it and exits 2):
wrong column count, non-numeric field, bad timestamp, NaN score, and (unless ``check_range=False`` /
``--no-range-check``) coordinates outside [0, 1] and inverted ground-truth boxes. Where the official defines a
behaviour it is kept: unknown class ids are dropped, inverted detection boxes take a cap slot then vanish,
an empty detection file gives AP 0 for every class with ground truth (the CLI warns that it has no rows).
The CLI checks that its --json / --plot outputs can be written before evaluating.
"""

from __future__ import annotations

import argparse
import csv
import decimal
import heapq
import json
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from queue import Full, Queue
from typing import TYPE_CHECKING, Any, TypeGuard, cast

import numpy as np

if TYPE_CHECKING:  # pandas is imported lazily: the CLI path does not need it (saves ~1 s of start-up)
    import pandas as pd

from ava_tools.atomic import atomic_output, write_text_atomic
from ava_tools.cli import UserError, add_common_arguments, is_user_error, run_cli
from ava_tools.labelmap import (
    AVA_V22_ACTIVITYNET,
    AVA_V22_ALL,
    CATEGORY_GROUPS,
    AvaFormatError,
    LabelMap,
    bundled_labelmap_path,
    load_bundled_labelmap,
    read_labelmap,
)

__all__ = [
    "AvaFormatError",
    "EvalResult",
    "evaluate",
    "read_groundtruth_csv",
    "read_detections_csv",
    "read_exclusions_csv",
    "metric_key",
    "MAP_KEY",
    "format_report",
    "write_metrics_json",
    "plot_per_class",
    "check_output_path",
    "get_args_parser",
    "main",
    "cli",
]

DETECTION_CAPACITY = 50
OFFICIAL_IOU = 0.5
MAP_KEY = "PascalBoxes_Precision/mAP@0.5IOU"
_CLASS_KEY = "PascalBoxes_PerformanceByCategory/AP@0.5IOU/{}"
_CHUNK_BYTES = 32 << 20
_POOL_LIMIT = 6_000_000  # candidate rows kept before re-pruning the pool
_COORDS = ("x1", "y1", "x2", "y2")
_MAX_CLASS_ID = 1_000_000  # the evaluator allocates one slot per id up to the largest


def metric_key(class_name: str) -> str:
    """Official per-class metric key for ``class_name``."""
    return _CLASS_KEY.format(class_name)


class _SlowPath(Exception):
    """The fast CSV reader met something only the line-by-line reader can judge or locate exactly."""


# ----------------------------------------------------------------------------------------------------------
# Keyframe keys
# ----------------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------------
# Row containers
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _Rows:
    """Boxes in file order. ``score`` is the person_id for ground truth; ``row`` the 0-based data-row index."""

    key: np.ndarray  # (N,) int64 keyframe id
    action: np.ndarray  # (N,) int64
    score: np.ndarray  # (N,) float64
    x1: np.ndarray  # (N,) float64, normalised
    y1: np.ndarray
    x2: np.ndarray
    y2: np.ndarray
    row: np.ndarray  # (N,) int64

    _FIELDS = ("key", "action", "score", "x1", "y1", "x2", "y2", "row")

    def __len__(self) -> int:
        return len(self.key)

    def take(self, index: np.ndarray) -> _Rows:
        return _Rows(*(getattr(self, f)[index] for f in self._FIELDS))

    def slice(self, start: int, stop: int) -> _Rows:
        """Rows ``start:stop`` as views (no copy)."""
        return _Rows(*(getattr(self, f)[start:stop] for f in self._FIELDS))

    @staticmethod
    def concat(parts: Sequence[_Rows]) -> _Rows:
        if not parts:
            return _Rows.empty()
        if len(parts) == 1:
            return parts[0]
        return _Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in _Rows._FIELDS))

    @staticmethod
    def empty() -> _Rows:
        i, f = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return _Rows(i, i, f, f, f, f, f, i)


@dataclass
class _RawBatch:
    """One parsed piece of a CSV before key/label-map filtering (numeric columns as numpy arrays)."""

    key: np.ndarray  # (N,) int64
    action: np.ndarray
    score: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    x2: np.ndarray
    y2: np.ndarray
    row0: int  # data-row index of the first row
    where: Callable[[int], str | None]  # local row -> "file, line N" / "<DataFrame>, row N"; None: unknown
    empty_keys: list[int]  # keys of 2-column rows in this piece
    piece: int  # index of the piece in the file, for re-reading
    piece_row0: int = 0  # data-row index of the piece's first row


# ----------------------------------------------------------------------------------------------------------
# CSV reading: fast (pyarrow) and exact line-by-line (csv module)
# ----------------------------------------------------------------------------------------------------------
_NAMES8 = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score"]


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise AvaFormatError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise AvaFormatError(f"{path}: not a regular file")


def _sniff_width(path: str) -> int:
    """Column count of the first row that is not a 2-column row (2 if all are; 0 for an empty file)."""
    width = 0
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.reader(f):
                if len(row) != 2:
                    return len(row)
                width = 2
    except csv.Error as e:
        raise AvaFormatError(f"{path}: unreadable CSV ({e})") from None
    return width


class _FastCsv:
    """Reads a uniform 7- or 8-column AVA CSV with pyarrow in byte pieces; 2-column rows are collected apart.

    Raises ``_SlowPath`` on anything else (other widths, mixed 7/8 widths, unparsable fields).
    """

    def __init__(self, path: str, width: int) -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        self.path, self.width = path, width
        self._pa, self._pacsv = pa, pacsv
        dict_str = pa.dictionary(pa.int32(), pa.string())
        names = _NAMES8[:width]
        types = {n: pa.float64() for n in names[2:]}
        types.update(video_id=dict_str, timestamp=dict_str, action_id=pa.int64())
        self._read_opts = pacsv.ReadOptions(column_names=names, use_threads=True, block_size=8 << 20)
        self._convert_opts = pacsv.ConvertOptions(
            column_types=types, null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False
        )
        self.pieces: list[tuple[int, int]] = []  # (byte offset, length)
        self.short_pieces: set[int] = set()  # pieces with 2-column rows (data row != line)

    def _parse(self, data: Any) -> tuple[Any, list[str]]:
        pa, pacsv = self._pa, self._pacsv
        short_rows: list[str] = []
        bad: list[int] = []

        def handler(row: Any) -> str:
            (short_rows if row.actual_columns == 2 else bad).append(row.text)
            return "skip"

        parse_opts = pacsv.ParseOptions(invalid_row_handler=handler, ignore_empty_lines=False)
        try:
            table = pacsv.read_csv(
                pa.py_buffer(data), read_options=self._read_opts, parse_options=parse_opts,
                convert_options=self._convert_opts,
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            raise _SlowPath(str(e)) from None
        if bad:
            raise _SlowPath(f"rows with other than {self.width} or 2 columns")
        return table, short_rows

    def _pieces(self) -> Iterator[tuple[int, Any, list[str]]]:
        """(piece index, pyarrow Table, texts of 2-column rows) in file order, read and parsed here."""
        buf = bytearray(_CHUNK_BYTES + (1 << 20))
        view = memoryview(buf)
        offset = carry = 0
        with open(self.path, "rb", buffering=0) as f:
            while True:
                room = len(buf) - carry
                if room < (1 << 20):  # a single line longer than a piece: grow the buffer
                    view.release()
                    buf.extend(bytes(len(buf)))
                    view = memoryview(buf)
                    room = len(buf) - carry
                got = f.readinto(view[carry : carry + min(room, _CHUNK_BYTES)]) or 0
                end = carry + got
                if end == 0:
                    return
                cut = buf.rfind(b"\n", 0, end) + 1 if got else end
                if cut == 0:  # no newline yet: read more
                    carry = end
                    continue
                self.pieces.append((offset, cut))
                table, short_rows = self._parse(view[:cut])  # the table owns its memory: buf can be reused
                if short_rows:
                    self.short_pieces.add(len(self.pieces) - 1)
                yield len(self.pieces) - 1, table, short_rows
                del table
                rest = end - cut
                buf[:rest] = buf[cut:end]
                offset += cut
                carry = rest
                if not got:
                    return

    def pieces_iter(self) -> Iterator[tuple[int, Any, list[str]]]:
        """Like ``_pieces`` but reading and parsing the next piece in a background thread (pyarrow releases
        the GIL), so parsing overlaps the caller's numpy work on the current piece."""
        done = object()
        queue: Queue[Any] = Queue(maxsize=1)
        stop = threading.Event()

        def produce() -> None:
            item: Any
            try:
                for item in self._pieces():
                    while not stop.is_set():
                        try:
                            queue.put(item, timeout=0.1)
                            break
                        except Full:
                            continue
                    if stop.is_set():
                        return
                item = done
            except BaseException as e:  # handed to the consumer, raised there
                item = e
            while not stop.is_set():
                try:
                    queue.put(item, timeout=0.1)
                    return
                except Full:
                    continue

        worker = threading.Thread(target=produce, name="ava-csv-reader", daemon=True)
        worker.start()
        try:
            while True:
                item = queue.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

    def reread(self, piece: int, first: int, last: int) -> tuple[Any, list[str]]:
        """Parse data rows ``first..last`` of a piece again (the whole piece if it had 2-column rows)."""
        offset, length = self.pieces[piece]
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        if piece not in self.short_pieces:
            ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)  # every line of a piece ends with \n
            begin = int(ends[first - 1]) + 1 if first > 0 else 0
            stop = int(ends[last]) + 1 if last < len(ends) else len(data)  # last line may lack \n at EOF
            data = data[begin:stop]
        return self._parse(data)


def _table_batches(
    table: Any, short_rows: list[str], keys: _KeyTable, row0: int, first_line: int, piece: int, path: str
) -> Iterator[_RawBatch]:
    """One raw batch per pyarrow record batch of a piece (no concatenation copies), with key ids."""
    empty_keys = []
    for text in short_rows:
        (video, ts) = next(csv.reader([text]))
        try:
            empty_keys.append(keys.id_of(video, ts))
        except (ValueError, ArithmeticError, TypeError):
            raise _SlowPath("bad timestamp") from None
    exact_lines = not short_rows  # 2-column rows were skipped at unknown places: lines not exact
    offset = 0
    for record_batch in table.to_batches():
        m = record_batch.num_rows
        if m == 0:
            continue
        col = dict(zip(record_batch.schema.names, record_batch.columns, strict=True))
        vdict, tdict = col["video_id"].dictionary.to_pylist(), col["timestamp"].dictionary.to_pylist()
        # (video, timestamp) pair code within this batch's dictionaries -> key id
        code = col["video_id"].indices.to_numpy().astype(np.int64) * len(tdict)
        code += col["timestamp"].indices.to_numpy()
        dense = len(vdict) * len(tdict) <= 4 * m + 1024
        if dense:
            used = np.flatnonzero(np.bincount(code, minlength=len(vdict) * len(tdict)))
            inverse, lut = code, np.full(len(vdict) * len(tdict), -1, np.int64)
        else:
            used, inverse = np.unique(code, return_inverse=True)
            lut = np.full(len(used), -1, np.int64)
        known = keys.known_pair
        nt = len(tdict)
        ids = [known((vdict[c // nt], tdict[c % nt]), -1) for c in used.tolist()]
        for j, c in enumerate(used.tolist()):
            if ids[j] < 0:
                try:
                    ids[j] = keys.id_of(vdict[c // nt], tdict[c % nt])
                except (ValueError, ArithmeticError, TypeError):
                    raise _SlowPath("bad timestamp") from None  # the line-by-line reader names the line
        lut[used if dense else np.arange(len(used))] = ids
        score = col["score"].to_numpy() if "score" in col else np.ones(m)

        def where(i: int, base: int = first_line + offset) -> str | None:
            return f"{path}, line {base + i}" if exact_lines else None

        yield _RawBatch(
            key=lut[inverse], action=col["action_id"].to_numpy().astype(np.int64, copy=False),
            score=np.asarray(score, np.float64), x1=col["x1"].to_numpy(), y1=col["y1"].to_numpy(),
            x2=col["x2"].to_numpy(), y2=col["y2"].to_numpy(), row0=row0 + offset, where=where,
            empty_keys=empty_keys if offset == 0 else [], piece=piece, piece_row0=row0,
        )
        offset += m
    if offset == 0 and empty_keys:
        z = np.zeros(0, np.float64)
        yield _RawBatch(np.zeros(0, np.int64), np.zeros(0, np.int64), z, z, z, z, z, row0, lambda i: None,
                        empty_keys, piece, row0)


def _python_rows(path: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for every CSV row, as the official ``csv.reader`` loop sees them."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            for row in reader:
                yield reader.line_num, row
    except UnicodeDecodeError as e:
        raise AvaFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise AvaFormatError(f"{path}: unreadable CSV ({e})") from None


def _python_batch(path: str, keys: _KeyTable, allow_empty_rows: bool) -> _RawBatch:
    """Exact line-by-line parse following the official ``read_csv`` (float() boxes, int() class, float() score)."""
    cols: dict[str, list[Any]] = {c: [] for c in ("key", "action", "score", "x1", "y1", "x2", "y2")}
    lines: list[int] = []
    empty_keys: list[int] = []
    for line, row in _python_rows(path):
        n = len(row)
        if n not in (2, 7, 8) or (n == 2 and not allow_empty_rows):
            allowed = "7 or 8" if not allow_empty_rows else "2, 7 or 8"
            raise AvaFormatError(f"{path}, line {line}: expected {allowed} columns, got {n}: {','.join(row)!r}")
        try:
            kid = keys.id_of(row[0], row[1])
        except (ValueError, ArithmeticError, TypeError):
            raise _key_error(path, line, row[0], row[1], keys.legacy) from None
        if n == 2:
            empty_keys.append(kid)
            continue
        try:
            box = [float(v) for v in row[2:6]]
        except ValueError:
            raise AvaFormatError(f"{path}, line {line}: box coordinates must be numbers, got {row[2:6]}") from None
        try:
            action = int(row[6])
        except ValueError:
            raise AvaFormatError(f"{path}, line {line}: action id must be an integer, got {row[6]!r}") from None
        try:
            score = float(row[7]) if n == 8 else 1.0
        except ValueError:
            raise AvaFormatError(f"{path}, line {line}: 8th column must be a number, got {row[7]!r}") from None
        cols["key"].append(kid)
        cols["action"].append(action)
        cols["score"].append(score)
        for name, value in zip(_COORDS, box, strict=True):
            cols[name].append(value)
        lines.append(line)
    line_arr = np.asarray(lines, np.int64)
    f64 = {c: np.asarray(cols[c], np.float64) for c in ("score", *_COORDS)}
    return _RawBatch(
        key=np.asarray(cols["key"], np.int64), action=np.asarray(cols["action"], np.int64), score=f64["score"],
        x1=f64["x1"], y1=f64["y1"], x2=f64["x2"], y2=f64["y2"], row0=0,
        where=lambda i: f"{path}, line {int(line_arr[i])}", empty_keys=empty_keys, piece=0,
    )


def _have_pyarrow() -> bool:
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return False
    return True


class _Source:
    """Iterates raw batches of one input (CSV path or DataFrame) and re-reads pieces on demand."""

    def __init__(self, data: str | os.PathLike[str] | pd.DataFrame, keys: _KeyTable, kind: str,
                 allow_empty_rows: bool, engine: str) -> None:
        self.keys, self.kind, self.allow_empty_rows = keys, kind, allow_empty_rows
        self.frame = data if _is_frame(data) else None
        self.path = "<DataFrame>" if self.frame is not None else os.fspath(cast("str | os.PathLike[str]", data))
        self.engine = engine
        self._fast: _FastCsv | None = None
        self._memory: _RawBatch | None = None  # whole input, for DataFrames and the line-by-line path

    def batches(self) -> Iterator[_RawBatch]:
        """Raw batches in file order; the fast reader may raise ``_SlowPath`` midway (callers then retry
        with ``engine="python"``)."""
        if self.frame is not None:
            self._memory = _frame_batch(self.frame, self.keys, self.kind, self.allow_empty_rows)
            yield self._memory
            return
        _check_file(self.path)
        if self.engine == "pyarrow" and _have_pyarrow():
            width = _sniff_width(self.path)
            if width in (7, 8):
                yield from self._fast_batches(width)
                return
        self._fast = None
        self._memory = _python_batch(self.path, self.keys, self.allow_empty_rows)
        yield self._memory

    def _fast_batches(self, width: int) -> Iterator[_RawBatch]:
        fast = self._fast = _FastCsv(self.path, width)
        row0, line = 0, 1
        for piece, table, short_rows in fast.pieces_iter():
            if short_rows and not self.allow_empty_rows:
                raise _SlowPath("2-column rows")
            yield from _table_batches(table, short_rows, self.keys, row0, line, piece, self.path)
            row0 += table.num_rows
            line += table.num_rows + len(short_rows)

    def reread(self, piece: int, first: int, last: int) -> list[_RawBatch]:
        """Rows ``first..last`` (local data rows) of one piece again, same keys, for the exact heap replay;
        may return more rows (the whole piece or input) but never fewer, in file order."""
        if self._fast is None:
            assert self._memory is not None
            return [self._memory]
        table, short_rows = self._fast.reread(piece, first, last)
        return list(_table_batches(table, short_rows, self.keys, 0, 1, piece, self.path))


def _is_frame(data: object) -> TypeGuard[pd.DataFrame]:
    """isinstance(data, pandas.DataFrame) without importing pandas (no pandas loaded: no DataFrame exists)."""
    return "pandas" in sys.modules and isinstance(data, sys.modules["pandas"].DataFrame)


def _frame_batch(frame: pd.DataFrame, keys: _KeyTable, kind: str, allow_empty_rows: bool) -> _RawBatch:
    """A DataFrame (columns video_id, timestamp, x1, y1, x2, y2, action_id[, score|person_id]) as one batch.

    Rows whose box and action_id are all missing are empty-keyframe (2-column) rows.
    """
    import pandas as pd

    third = "score" if kind == "detections" else "person_id"
    missing = [c for c in ("video_id", "timestamp", *_COORDS, "action_id") if c not in frame.columns]
    if missing:
        raise AvaFormatError(f"<DataFrame {kind}>: missing columns {missing}")
    n = len(frame)
    coords = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64) for c in _COORDS}
    action_f = pd.to_numeric(frame["action_id"], errors="coerce").to_numpy(np.float64)
    empty = np.isnan(action_f) & np.all([np.isnan(coords[c]) for c in _COORDS], axis=0)
    if empty.any() and not allow_empty_rows:
        raise AvaFormatError(f"<DataFrame {kind}>, row {int(np.flatnonzero(empty)[0])}: empty keyframe rows "
                             "are not accepted by the legacy (-e) release")
    bad = ~empty & (np.isnan(action_f) | np.any([np.isnan(coords[c]) for c in _COORDS], axis=0))
    if bad.any():
        raise AvaFormatError(f"<DataFrame {kind}>, row {int(np.flatnonzero(bad)[0])}: box or action_id missing")
    if third in frame.columns:
        score = pd.to_numeric(frame[third], errors="coerce").to_numpy(np.float64)
    else:
        score = np.ones(n)
    vcodes, videos = pd.factorize(frame["video_id"])
    tcodes, stamps = pd.factorize(frame["timestamp"])
    used, inverse = np.unique(vcodes.astype(np.int64) * len(stamps) + tcodes, return_inverse=True)
    lut = np.empty(len(used), np.int64)
    for j, c in enumerate(used.tolist()):
        v, t = str(videos[c // len(stamps)]), stamps[c % len(stamps)]
        t = t.item() if isinstance(t, np.generic) else t
        try:
            lut[j] = keys.id_of(v, t)
        except (ValueError, ArithmeticError, TypeError):
            raise _key_error(f"<DataFrame {kind}>", None, v, t, keys.legacy) from None
    key = lut[inverse.reshape(-1)]
    keep = ~empty
    action = np.where(keep, action_f, 0)
    if np.any(action[keep] != np.round(action[keep])):
        raise AvaFormatError(f"<DataFrame {kind}>: action_id values must be integers")
    positions = np.flatnonzero(keep)
    return _RawBatch(
        key=key[keep], action=action[keep].astype(np.int64), score=score[keep], x1=coords["x1"][keep],
        y1=coords["y1"][keep], x2=coords["x2"][keep], y2=coords["y2"][keep], row0=0,
        where=lambda i: f"<DataFrame {kind}>, row {int(positions[i])}", empty_keys=key[empty].tolist(), piece=0,
    )


# ----------------------------------------------------------------------------------------------------------
# Filtering and validation
# ----------------------------------------------------------------------------------------------------------
class _Filter:
    """Which raw rows take part: class in the label map and keyframe scored (per semantics)."""

    def __init__(self, labelmap: LabelMap, legacy: bool, scored_keys: np.ndarray | None,
                 excluded_keys: np.ndarray) -> None:
        self.in_map = np.zeros(labelmap.num_classes + 1, bool)
        self.in_map[labelmap.class_ids] = True
        self.legacy = legacy
        self.scored = scored_keys  # bool per key id (current semantics), None: all but excluded
        self.excluded = excluded_keys  # bool per key id

    def mask(self, action: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Rows (class in the map, keyframe scored); ``key`` ids must be below the key table's size."""
        top = len(self.in_map) - 1
        ok = self.in_map[np.clip(action, 0, top)] & (action <= top)  # in_map[0] is False: covers action < 1
        if self.scored is not None:
            ok &= _lookup(self.scored, key)
        if len(self.excluded):
            ok &= ~_lookup(self.excluded, key)
        return ok


def _lookup(table: np.ndarray, key: np.ndarray) -> np.ndarray:
    """``table[key]``, False for keys past its end (keys first seen after the table was built)."""
    if len(key) and int(key.max()) >= len(table):
        table = np.r_[table, np.zeros(int(key.max()) + 1 - len(table), bool)]
    return table[key]


def _validate(batch: _RawBatch, idx: np.ndarray, path: str, groundtruth: bool, check_range: bool) -> None:
    """Raise AvaFormatError (or _SlowPath when the line is unknown) for bad kept rows ``idx``."""
    whole = len(idx) == len(batch.key)
    pick = (lambda a: a) if whole else (lambda a: a[idx])
    coords = [pick(getattr(batch, c)) for c in _COORDS]
    score = pick(batch.score)
    if check_range:  # one pass per column; NaN fails both comparisons
        ok = (score == score)
        for c in coords:
            ok &= (c >= 0.0) & (c <= 1.0)
        if groundtruth:
            ok &= (coords[0] <= coords[2]) & (coords[1] <= coords[3])
    else:
        ok = ~np.isnan(score)
        for c in coords:
            ok &= ~np.isnan(c)
    if ok.all():
        return
    i = int(idx[np.flatnonzero(~ok)[0]])
    x1, y1, x2, y2 = (float(getattr(batch, c)[i]) for c in _COORDS)
    if np.isnan(batch.score[i]):
        what = "person_id is NaN" if groundtruth else "score is NaN"
    elif np.isnan([x1, y1, x2, y2]).any():
        what = "box coordinate is NaN"
    elif not all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)):
        what = "box coordinate outside [0, 1] (use --no-range-check to accept it)"
    else:
        what = "inverted ground-truth box (x1 > x2 or y1 > y2)"
    where = batch.where(i)
    if where is None:
        raise _SlowPath(what)
    # the 8th column of a ground-truth row is the person id, of a detection row the score
    names = {**{c: c for c in _COORDS}, "action": "action_id", "score": "person_id" if groundtruth else "score"}
    values = ", ".join(f"{name}={_plain(getattr(batch, c)[i])}" for c, name in names.items())
    raise AvaFormatError(f"{where}: {what} ({values})")


def _rows_of(batch: _RawBatch, idx: np.ndarray) -> _Rows:
    if len(idx) == len(batch.key):  # every row kept: views, no copy
        return _Rows(batch.key, batch.action, batch.score, batch.x1, batch.y1, batch.x2, batch.y2,
                     batch.row0 + np.arange(len(idx), dtype=np.int64))
    return _Rows(
        batch.key[idx], batch.action[idx], batch.score[idx], batch.x1[idx], batch.y1[idx], batch.x2[idx],
        batch.y2[idx], batch.row0 + idx.astype(np.int64),
    )


def _release_arrow_memory() -> None:
    """Give pyarrow's freed parse buffers back to the system (its allocator keeps them otherwise)."""
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()


def _with_fallback(source: _Source, run: Callable[[], Any]) -> Any:
    """Run ``run()``; if the fast reader gives up, run it again on the exact line-by-line reader."""
    try:
        return run()
    except _SlowPath:
        source.engine = "python"
        return run()


# ----------------------------------------------------------------------------------------------------------
# Ground truth
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _GroundTruth:
    rows: _Rows  # in-map rows of evaluated keyframes, file order
    file_keys: np.ndarray  # every key id present in the file (2-column and out-of-map rows included)
    n_rows: int  # data rows read


def _read_groundtruth(source: _Source, flt: _Filter, check_range: bool) -> _GroundTruth:
    def run() -> _GroundTruth:
        parts, keys, n = [], [], 0
        for batch in source.batches():
            keys.append(batch.key)
            keys.append(np.asarray(batch.empty_keys, np.int64))
            idx = np.flatnonzero(flt.mask(batch.action, batch.key))
            _validate(batch, idx, source.path, True, check_range)
            parts.append(_rows_of(batch, idx))
            n += len(batch.key) + len(batch.empty_keys)
        file_keys = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
        return _GroundTruth(_Rows.concat(parts), file_keys, n)

    gt = _with_fallback(source, run)
    if gt.n_rows == 0:
        raise AvaFormatError(f"{source.path}: the ground truth has no rows")
    return gt


def _heap_order(rows: list[tuple[float, int, float, float, float, float]], capacity: int) -> list[tuple]:
    """The official per-keyframe selection: min-heap of (score, action, y1, x1, y2, x2) tuples in file order,
    capped at ``capacity`` (0: no cap), then stably sorted by descending score over the heap array."""
    heap: list[tuple] = []
    for item in rows:
        if capacity < 1 or len(heap) < capacity:
            heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:
            heapq.heapreplace(heap, item)
    return sorted(heap, key=lambda t: -t[0])


def _tuples_to_rows(key: int, items: list[tuple]) -> _Rows:
    n = len(items)
    arr = np.asarray(items, np.float64).reshape(n, 6)
    return _Rows(
        np.full(n, key, np.int64), arr[:, 1].astype(np.int64), arr[:, 0], arr[:, 3], arr[:, 2], arr[:, 5],
        arr[:, 4], np.zeros(n, np.int64),
    )


def _tuples_of(rows: _Rows) -> list[tuple]:
    return list(zip(rows.score.tolist(), rows.action.tolist(), rows.y1.tolist(), rows.x1.tolist(),
                    rows.y2.tolist(), rows.x2.tolist(), strict=True))


def _order_groundtruth(rows: _Rows) -> tuple[_Rows, int]:
    """GT rows ordered per keyframe as the official heap (no cap, person_id as score) leaves them.

    Sorted by (key, action, -person_id); keyframes where one class has equal person_ids on different boxes
    (heap-order dependent) are replayed through the literal heap. Returns (rows, replayed keyframe count).
    """
    order = np.lexsort((-rows.score, rows.action, rows.key))
    r = rows.take(order)
    same = (r.key[1:] == r.key[:-1]) & (r.action[1:] == r.action[:-1]) & (r.score[1:] == r.score[:-1])
    differ = np.zeros(len(same), bool)
    for c in _COORDS:
        v = getattr(r, c)
        differ |= v[1:] != v[:-1]
    sensitive = np.unique(r.key[1:][same & differ])
    if len(sensitive) == 0:
        return r, 0
    hit = np.isin(rows.key, sensitive)
    replaced = []
    sub = rows.take(np.flatnonzero(hit))  # file order
    bounds = np.argsort(sub.key, kind="stable")
    sub = sub.take(bounds)
    starts = np.flatnonzero(np.r_[True, sub.key[1:] != sub.key[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], len(sub)], strict=True):
        part = sub.take(np.arange(s, e))
        replaced.append(_tuples_to_rows(int(part.key[0]), _heap_order(_tuples_of(part), 0)))
    keep = r.take(np.flatnonzero(~np.isin(r.key, sensitive)))
    merged = _Rows.concat([keep, *replaced])
    merged = merged.take(np.argsort(merged.key, kind="stable"))
    # Only the order within (key, action) matters for matching: group by action, keeping heap order.
    return merged.take(np.lexsort((np.arange(len(merged)), merged.action, merged.key))), len(sensitive)


# ----------------------------------------------------------------------------------------------------------
# Detections: streaming top-50 candidates, exact cap resolution
# ----------------------------------------------------------------------------------------------------------
def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of runs of equal values in a grouped array."""
    n = len(key)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    return starts, np.diff(np.r_[starts, n])


def _padded(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, pad: float
            ) -> tuple[np.ndarray, np.ndarray] | None:
    """(groups x max length) matrix of ``values`` (``pad`` beyond each group) and its row indices (-1 in the
    padding), or None when padding would more than triple the size."""
    width = int(lengths.max())
    if len(starts) * width > 3 * int(lengths.sum()) + 4096:
        return None
    cols = np.arange(width)
    inside = cols < lengths[:, None]
    idx = np.where(inside, starts[:, None] + cols, 0)
    return np.where(inside, values[idx], pad), np.where(inside, idx, -1)


def _cap_thresholds(neg: np.ndarray, starts: np.ndarray, lengths: np.ndarray, cap: int) -> np.ndarray:
    """Per group, the cap-th smallest of ``neg`` (= minus the cap-th best score); +inf for groups <= cap."""
    threshold = np.full(len(starts), np.inf)
    long = lengths > cap
    if not long.any():
        return threshold
    width = int(lengths[0])
    if (lengths == width).all() and int(starts[-1]) == (len(starts) - 1) * width:
        # Every keyframe has the same number of rows (PySlowFast writes boxes x classes): a reshape, no copy.
        threshold[:] = np.partition(neg[: len(starts) * width].reshape(-1, width), cap - 1, axis=1)[:, cap - 1]
        return threshold
    mat = _padded(neg, starts[long], lengths[long], np.inf)
    if mat is not None:
        threshold[long] = np.partition(mat[0], cap - 1, axis=1)[:, cap - 1]
    else:
        gid = np.repeat(np.arange(int(long.sum())), lengths[long])
        flat = np.concatenate([np.arange(a, a + m) for a, m in zip(starts[long], lengths[long], strict=True)])
        srt = flat[np.lexsort((neg[flat], gid))]
        threshold[long] = neg[srt[np.cumsum(lengths[long]) - lengths[long] + cap - 1]]
    return threshold


def _sorted_candidates(key: np.ndarray, score: np.ndarray, cap: int) -> tuple[np.ndarray, bool]:
    """Rows that may still be among their keyframe's top ``cap``, ordered by (keyframe, -score, file order).

    A row scoring below the cap-th best score of its keyframe *within this set* can never survive, whatever
    comes later, so it is dropped. Keyframes come in order of first appearance. Returns (indices, grouped):
    ``grouped`` tells whether every keyframe formed one contiguous run of rows.
    """
    n = len(key)
    if n == 0:
        return np.zeros(0, np.int64), True
    starts, lengths = _groups(key)
    grouped = len(starts) == len(np.unique(key[starts]))
    order = None
    if not grouped:
        order = np.argsort(key, kind="stable")
        starts, lengths = _groups(key[order])
    neg = -score if order is None else -score[order]
    threshold = _cap_thresholds(neg, starts, lengths, cap)
    if np.isinf(threshold).all():
        kept = np.arange(n)
    else:
        kept = np.flatnonzero(neg <= np.repeat(threshold, lengths))
    # Sort the kept rows of each keyframe by (-score, file order): stable sorts of short padded rows.
    gk = np.searchsorted(starts, kept, side="right") - 1
    kstarts, klengths = _groups(gk)
    mat = _padded(neg[kept], kstarts, klengths, np.inf)
    if mat is not None:
        srt = np.argsort(mat[0], axis=1, kind="stable")
        pos = np.take_along_axis(mat[1], srt, axis=1)
        sel = kept[pos[pos >= 0]]
    else:
        sel = kept[np.lexsort((neg[kept], gk))]
    return (sel if order is None else order[sel]), grouped


class _DetectionPool:
    """Streaming store of the in-map, scored detection rows that can still survive the per-keyframe cap.

    Rows are kept grouped by keyframe and sorted by (-score, file order) when the input is grouped by
    keyframe (the rows of the last keyframe of a batch wait for the next batch); ``presorted`` says so.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[_Rows] = []
        self.n_pool = 0
        self.presorted = True
        self.counts = np.zeros(0, np.int64)  # in-map scored rows per key
        self.first_row = np.zeros(0, np.int64)  # first in-map row per key (keyframe order of the official)
        self._in_pool = np.zeros(0, bool)
        self._carry: _Rows | None = None
        # piece -> (keys, first local row, last local row) of its runs, for the exact replay
        self.piece_runs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _grow(self, n_keys: int) -> None:
        if n_keys > len(self.counts):
            extra = n_keys - len(self.counts)
            self.counts = np.r_[self.counts, np.zeros(extra, np.int64)]
            self.first_row = np.r_[self.first_row, np.full(extra, np.iinfo(np.int64).max)]
            self._in_pool = np.r_[self._in_pool, np.zeros(extra, bool)]

    def add(self, rows: _Rows, piece: int, piece_row0: int) -> None:
        """Take the kept rows (file order) of one batch."""
        if len(rows):
            self._grow(int(rows.key.max()) + 1)
            self.counts += np.bincount(rows.key, minlength=len(self.counts))
            starts, lengths = _groups(rows.key)
            run_keys = rows.key[starts]
            np.minimum.at(self.first_row, run_keys, rows.row[starts])
            local = rows.row - piece_row0
            runs = (run_keys, local[starts], local[starts + lengths - 1])
            if piece in self.piece_runs:
                runs = tuple(np.r_[a, b] for a, b in zip(self.piece_runs[piece], runs, strict=True))  # type: ignore
            self.piece_runs[piece] = runs
        # The last keyframe of a batch may go on in the next one: hold its rows back until then.
        n = len(rows)
        starts, _ = _groups(rows.key)
        if self._carry is not None:
            if n and rows.key[0] == self._carry.key[0]:
                head_end = int(starts[1]) if len(starts) > 1 else n
                self._carry = _Rows.concat([self._carry, rows.slice(0, head_end)])
                if head_end == n:
                    return
                rows, starts, n = rows.slice(head_end, n), starts[1:] - head_end, n - head_end
            self._store(self._carry)
            self._carry = None
        if n:
            tail = int(starts[-1])
            self._carry = rows.take(np.arange(tail, n))  # a copy: views would pin the whole batch
            self._store(rows.slice(0, tail))

    def finish(self) -> _Rows:
        """All candidates, grouped by keyframe and sorted by (-score, file order) within each."""
        if self._carry is not None:
            self._store(self._carry)
            self._carry = None
        pool = _Rows.concat(self.parts)
        self.parts = []
        if not self.presorted:
            pool = pool.take(np.lexsort((pool.row, -pool.score, pool.key)))
        return pool

    def _store(self, rows: _Rows) -> None:
        if len(rows) == 0:
            return
        sel, grouped = _sorted_candidates(rows.key, rows.score, self.cap)
        rows = rows.take(sel)
        run_keys = rows.key[_groups(rows.key)[0]]
        if not grouped or self._in_pool[run_keys].any():
            self.presorted = False
        self._in_pool[run_keys] = True
        self.parts.append(rows)
        self.n_pool += len(rows)
        if self.n_pool > _POOL_LIMIT and len(self.parts) > 1:
            pool = _Rows.concat(self.parts)
            pool = pool.take(np.sort(_sorted_candidates(pool.key, pool.score, self.cap)[0]))  # keep file order
            self.parts, self.n_pool = [pool], len(pool)
            self.presorted = False


def _resolve_cap(pool: _Rows, counts: np.ndarray, cap: int) -> _Rows:
    """Exact survivors of the official per-keyframe heap with a valid box (y1 < y2 and x1 < x2; invalid
    boxes took a slot and are then dropped), in the pool's (key, -score, file order) order.

    With s* the cap-th best score of a keyframe, rows above s* always survive and rows below never do. Of the
    rows at s*: the heap admits the first ``cap`` rows scoring >= s* (file order) and then rejects further
    s*-rows (not strictly above the heap minimum); each later row above s* evicts the smallest s*-tuple
    (by action, y1, x1, y2, x2) still inside.
    """
    p = pool  # grouped by key, sorted by (-score, file order) within each key
    n = len(p)
    if n == 0:
        return p
    starts, lengths = _groups(p.key)
    gid = np.repeat(np.arange(len(starts)), lengths)
    pos = np.arange(n) - starts[gid]
    capped = counts[p.key[starts]] > cap
    sstar = np.full(len(starts), -np.inf)
    sstar[capped] = p.score[starts[capped] + cap - 1]
    above = p.score > sstar[gid]
    at = (p.score == sstar[gid]) & capped[gid]
    n_above = np.bincount(gid, weights=above & capped[gid], minlength=len(starts)).astype(np.int64)
    n_at = np.bincount(gid, weights=at, minlength=len(starts)).astype(np.int64)
    keep = ~capped[gid] | (pos < cap)
    tied = capped & (n_above + n_at > cap)
    if tied.any():
        sel = np.flatnonzero(tied[gid] & (above | at))
        sel = sel[np.lexsort((p.row[sel], gid[sel]))]  # file order within keyframe
        g = gid[sel]
        gs, gl = _groups(g)
        rank = np.arange(len(sel)) - np.repeat(gs, gl)
        early = rank < cap
        early_above = np.bincount(g[early & above[sel]], minlength=len(starts))
        evictions = n_above - early_above
        inside = sel[early & at[sel]]
        inside = inside[np.lexsort((p.x2[inside], p.y2[inside], p.x1[inside], p.y1[inside], p.action[inside],
                                    gid[inside]))]
        gi = gid[inside]
        is_, il = _groups(gi)
        irank = np.arange(len(inside)) - np.repeat(is_, il)
        keep[np.flatnonzero(tied[gid])] = False
        keep[sel[above[sel]]] = True
        keep[inside[irank >= evictions[gi]]] = True
    keep &= (p.y1 < p.y2) & (p.x1 < p.x2)
    return p.take(np.flatnonzero(keep))


# ----------------------------------------------------------------------------------------------------------
# Matching and AP
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _Matches:
    target: np.ndarray  # (D,) index of the arg-max GT box (-1: no GT of that class in the keyframe)
    best_iou: np.ndarray  # (D,) its IoU (NaN propagates as in np.argmax/np.max)


def _match(det: _Rows, gt: _Rows, num_classes: int, max_pairs: int = 1_000_000) -> _Matches:
    """Arg-max IoU ground-truth box of each detection among GT of its keyframe and class (first on ties).

    ``gt`` must be grouped by (key, action) in the official order; ``det`` in any order. Pairs are built in
    slices of about ``max_pairs`` to bound memory.
    """
    n_det = len(det)
    target = np.full(n_det, -1, np.int64)
    best = np.full(n_det, -np.inf)
    if n_det == 0 or len(gt) == 0:
        return _Matches(target, best)
    width = np.int64(num_classes + 1)
    gcode = gt.key * width + gt.action
    gstart, glen = _groups(gcode)
    ucode = gcode[gstart]
    dcode = det.key * width + det.action
    at = np.minimum(np.searchsorted(ucode, dcode), len(ucode) - 1)
    has = ucode[at] == dcode
    dets_all = np.flatnonzero(has)
    if len(dets_all) == 0:
        return _Matches(target, best)
    n_pair_all = glen[at[dets_all]]
    cum = np.cumsum(n_pair_all)
    lo = 0
    while lo < len(dets_all):
        hi = max(lo + 1, int(np.searchsorted(cum, (cum[lo - 1] if lo else 0) + max_pairs, side="right")))
        dets, n_pair = dets_all[lo:hi], n_pair_all[lo:hi]
        rep = np.repeat(dets, n_pair)
        first = np.cumsum(n_pair) - n_pair
        gi = np.repeat(gstart[at[dets]] - first, n_pair) + np.arange(len(rep))
        # Official np_box_ops.iou on [y1, x1, y2, x2] boxes: float64, same operations, same association.
        ih = np.minimum(det.y2[rep], gt.y2[gi])
        ih -= np.maximum(det.y1[rep], gt.y1[gi])
        np.maximum(ih, 0.0, out=ih)
        iw = np.minimum(det.x2[rep], gt.x2[gi])
        iw -= np.maximum(det.x1[rep], gt.x1[gi])
        np.maximum(iw, 0.0, out=iw)
        inter = ih
        inter *= iw
        union = (det.y2[rep] - det.y1[rep]) * (det.x2[rep] - det.x1[rep])
        union += (gt.y2[gi] - gt.y1[gi]) * (gt.x2[gi] - gt.x1[gi])
        union -= inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.divide(inter, union, out=union)
        mx = np.maximum.reduceat(iou, first)
        mx_rep = np.repeat(mx, n_pair)
        is_max = (iou == mx_rep) | (np.isnan(iou) & np.isnan(mx_rep))
        first_max = np.minimum.reduceat(np.where(is_max, np.arange(len(iou)), len(iou)), first)
        target[dets] = gi[first_max]
        best[dets] = mx
        lo = hi
    return _Matches(target, best)


def _true_positives(m: _Matches, threshold: float) -> np.ndarray:
    """Greedy labels of detections given in per-keyframe official order: a detection is a TP iff its
    IoU >= threshold and it is the first to claim its arg-max GT box; no fall-back to other boxes."""
    tp = np.zeros(len(m.target), bool)
    cand = np.flatnonzero(m.best_iou >= threshold)
    if len(cand) == 0:
        return tp
    _, first = np.unique(m.target[cand], return_index=True)  # first occurrence = earliest detection
    tp[cand[first]] = True
    return tp


def _official_ap(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """VOC all-points AP exactly as ActivityNet's metrics.py computes it (same numpy calls, same order)."""
    if n_gt == 0:
        return float("nan")
    if scores.size == 0:
        return 0.0
    sorted_indices = np.argsort(scores)[::-1]
    labels = tp.astype(int)[sorted_indices]
    cum_tp = np.cumsum(labels)
    cum_fp = np.cumsum(1 - labels)
    precision = cum_tp.astype(float) / (cum_tp + cum_fp)
    recall = cum_tp.astype(float) / n_gt
    recall = np.concatenate([[0], recall, [1]])
    precision = np.concatenate([[0], precision, [0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # same values as the official right-to-left loop
    indices = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[indices] - recall[indices - 1]) * precision[indices]))


def _sensitive_keys(det: _Rows, tps: Sequence[np.ndarray]) -> np.ndarray:
    """Keyframes whose result depends on the heap's array order: one class has equal scores on different
    boxes and those detections got different labels (for some threshold). ``det`` is in per-key order."""
    n = len(det)
    if n < 2:
        return np.zeros(0, np.int64)
    same = (det.key[1:] == det.key[:-1]) & (det.score[1:] == det.score[:-1])
    in_run = np.zeros(n, bool)
    in_run[1:] |= same
    in_run[:-1] |= same
    idx = np.flatnonzero(in_run)
    if len(idx) == 0:
        return np.zeros(0, np.int64)
    run = np.cumsum(np.r_[True, ~same])[idx]
    order = np.lexsort((det.x2[idx], det.y2[idx], det.x1[idx], det.y1[idx], det.action[idx], run))
    idx, run = idx[order], run[order]
    new_group = np.r_[True, (run[1:] != run[:-1]) | (det.action[idx][1:] != det.action[idx][:-1])]
    gid = np.cumsum(new_group) - 1
    box_change = np.zeros(len(idx), bool)
    for c in _COORDS:
        v = getattr(det, c)[idx]
        box_change[1:] |= v[1:] != v[:-1]
    distinct = np.bincount(gid, weights=box_change & ~new_group, minlength=gid[-1] + 1) > 0
    mixed = np.zeros(len(distinct), bool)
    for tp in tps:
        n_tp = np.bincount(gid, weights=tp[idx], minlength=len(distinct))
        size = np.bincount(gid, minlength=len(distinct))
        mixed |= (n_tp > 0) & (n_tp < size)
    bad_groups = np.flatnonzero(distinct & mixed)
    if len(bad_groups) == 0:
        return np.zeros(0, np.int64)
    return np.unique(det.key[idx[np.isin(gid, bad_groups)]])


def _read_detections(source: _Source, flt: _Filter, check_range: bool) -> tuple[_DetectionPool, int]:
    pool = _DetectionPool(DETECTION_CAPACITY)
    n_rows = 0
    for batch in source.batches():
        idx = np.flatnonzero(flt.mask(batch.action, batch.key))
        _validate(batch, idx, source.path, False, check_range)
        pool.add(_rows_of(batch, idx), batch.piece, batch.piece_row0)
        n_rows += len(batch.key) + len(batch.empty_keys)
    return pool, n_rows


def _replay(source: _Source, flt: _Filter, pool: _DetectionPool, keys: np.ndarray) -> list[_Rows]:
    """Run the literal official heap on every in-map row of ``keys`` (re-read from the input in file order)."""
    found: dict[int, list[tuple]] = {int(k): [] for k in keys}
    for piece in sorted(pool.piece_runs):
        run_keys, run_first, run_last = pool.piece_runs[piece]
        hit = np.isin(run_keys, keys)
        if not hit.any():
            continue
        for batch in source.reread(piece, int(run_first[hit].min()), int(run_last[hit].max())):
            idx = np.flatnonzero(flt.mask(batch.action, batch.key) & np.isin(batch.key, keys))
            rows = _rows_of(batch, idx)
            for k, item in zip(rows.key.tolist(), _tuples_of(rows), strict=True):
                found[k].append(item)
    return [_tuples_to_rows(k, _heap_order(items, DETECTION_CAPACITY)) for k, items in found.items()]


def _class_aps(dets: _Rows, tps: Sequence[np.ndarray], n_gt: np.ndarray, first_row: np.ndarray,
               num_classes: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Official per-class AP (index id - 1, NaN without GT) for each TP labelling, and detections per class.

    Each class's detections are concatenated keyframe by keyframe in order of first appearance in the
    detection file (``first_row``), in the official order inside a keyframe (``dets`` is in that order).
    """
    rank = np.empty(len(first_row), np.int64)
    rank[np.argsort(first_row, kind="stable")] = np.arange(len(first_row))
    order = np.argsort(dets.action * np.int64(len(first_row) + 1) + rank[dets.key], kind="stable")
    sorted_action = dets.action[order]
    ids = np.arange(num_classes + 1)
    lo = np.searchsorted(sorted_action, ids, side="left")
    hi = np.searchsorted(sorted_action, ids, side="right")
    scores = dets.score[order]
    result = []
    for tp in tps:
        ap = np.full(num_classes, np.nan)
        tp_sorted = tp[order]
        for cid in range(1, num_classes + 1):
            if n_gt[cid] > 0:
                ap[cid - 1] = _official_ap(scores[lo[cid] : hi[cid]], tp_sorted[lo[cid] : hi[cid]], int(n_gt[cid]))
        result.append(ap)
    return result, hi - lo


# ----------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """Result of :func:`evaluate`.

    Attributes:
        metrics: the official flat dict: ``MAP_KEY`` then one ``metric_key(name)`` per label-map name, values
            exactly as ActivityNet's evaluator returns them (NaN for classes without ground truth).
        per_class: DataFrame with columns id, name, ap, n_gt, n_det (one row per label-map id, ascending);
            built from ``class_table`` (the same columns as lists).
        mean_ap: ``metrics[MAP_KEY]``.
        group_ap: NOT official. Mean AP of the classes of each AVA category (pose, person-object,
            person-person), NaN classes left out.
        iou_metrics: NOT official. ``{threshold: {"mAP": ..., <class name>: AP}}`` for the extra IoU thresholds.
        stats: counts (rows read, detections scored, keyframes, keyframes replayed through the exact heap).
        legacy: True when the earlier release's semantics (``-e``) were used.
    """

    metrics: dict[str, float]
    class_table: dict[str, list[Any]]  # the per_class columns as lists
    mean_ap: float
    group_ap: dict[str, float] = field(default_factory=dict)
    iou_metrics: dict[float, dict[str, float]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    legacy: bool = False

    @property
    def per_class(self) -> pd.DataFrame:
        """Columns id, name, ap, n_gt (GT boxes evaluated), n_det (detections evaluated), ascending id."""
        import pandas as pd

        return pd.DataFrame(self.class_table)


def _as_labelmap(labelmap: str | os.PathLike[str] | LabelMap | None) -> LabelMap:
    if labelmap is None:
        return read_labelmap(bundled_labelmap_path(AVA_V22_ACTIVITYNET))
    if isinstance(labelmap, LabelMap):
        return labelmap
    return read_labelmap(labelmap)


def _nanmean(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values))


def _exclusion_keys(exclusions: str | os.PathLike[str] | pd.DataFrame, keys: _KeyTable) -> np.ndarray:
    frame = exclusions if _is_frame(exclusions) else read_exclusions_csv(cast("str | os.PathLike[str]", exclusions))
    ids = []
    for video, ts in zip(frame["video_id"].tolist(), frame["timestamp"].tolist(), strict=True):
        try:
            ids.append(keys.id_of(str(video), ts))
        except (ValueError, ArithmeticError, TypeError):
            raise _key_error("exclusions", None, video, ts, keys.legacy) from None
    excluded = np.zeros(len(keys), bool)
    excluded[ids] = True
    return excluded


def evaluate(
    groundtruth: str | os.PathLike[str] | pd.DataFrame,
    detections: str | os.PathLike[str] | pd.DataFrame,
    labelmap: str | os.PathLike[str] | LabelMap | None = None,
    exclusions: str | os.PathLike[str] | pd.DataFrame | None = None,
    *,
    legacy: bool | None = None,
    iou_thresholds: Sequence[float] = (),
    check_range: bool = True,
    engine: str = "pyarrow",
) -> EvalResult:
    """Evaluate AVA detections exactly like ActivityNet's ``get_ava_performance.py``.

    Args:
        groundtruth: CSV path or DataFrame (video_id, timestamp, x1, y1, x2, y2, action_id, person_id);
            boxes normalised to [0, 1]; DataFrame rows with no box and no action_id are empty keyframes.
        detections: CSV path or DataFrame (same columns with ``score`` instead of person_id).
        labelmap: ``.pbtxt`` path or LabelMap; None: the bundled 60-class AVA v2.2 ActivityNet map.
        exclusions: CSV (video_id,second) or DataFrame of excluded keyframes; implies ``legacy``.
        legacy: the earlier official release's semantics (int() keys, exclusions, all detection keyframes
            scored, no 2-column rows). None: True iff ``exclusions`` is given.
        iou_thresholds: extra IoU thresholds for the NOT-official ``iou_metrics``.
        check_range: reject coordinates outside [0, 1] and inverted GT boxes (the official accepts them).
        engine: "pyarrow" (fast, falls back to line-by-line where needed) or "python" (line-by-line only).

    Returns:
        EvalResult; ``metrics`` equals the official dict.

    Raises:
        AvaFormatError: missing/empty/malformed input (message names file, line and problem).
    """
    if engine not in ("pyarrow", "python"):
        raise ValueError(f"engine must be 'pyarrow' or 'python', got {engine!r}")
    lm = _as_labelmap(labelmap)
    if lm.num_classes > _MAX_CLASS_ID:
        raise AvaFormatError(f"{lm.source}: class id {lm.num_classes} is too large (at most {_MAX_CLASS_ID})")
    if legacy is None:
        legacy = exclusions is not None
    if exclusions is not None and not legacy:
        raise ValueError("exclusions belong to the earlier official release: use legacy=True (or None)")
    keys = _KeyTable(legacy)
    excluded = _exclusion_keys(exclusions, keys) if exclusions is not None else np.zeros(0, bool)

    gt_source = _Source(groundtruth, keys, "groundtruth", not legacy, engine)
    gt = _read_groundtruth(gt_source, _Filter(lm, legacy, None, excluded), check_range)
    scored: np.ndarray | None = None
    if not legacy:
        scored = np.zeros(len(keys), bool)
        scored[gt.file_keys] = True
    det_flt = _Filter(lm, legacy, scored, excluded)
    det_source = _Source(detections, keys, "detections", not legacy, engine)
    pool, n_det_rows = _with_fallback(det_source, lambda: _read_detections(det_source, det_flt, check_range))

    _release_arrow_memory()
    dets = _resolve_cap(pool.finish(), pool.counts, DETECTION_CAPACITY)  # official per-keyframe order
    gt_rows, n_gt_replayed = _order_groundtruth(gt.rows)
    thresholds = [OFFICIAL_IOU, *[float(t) for t in iou_thresholds if float(t) != OFFICIAL_IOU]]
    matches = _match(dets, gt_rows, lm.num_classes)
    tps = [_true_positives(matches, t) for t in thresholds]
    sensitive = _sensitive_keys(dets, tps)
    if len(sensitive):
        replayed = _replay(det_source, det_flt, pool, sensitive)
        replayed = [r.take(np.flatnonzero((r.y1 < r.y2) & (r.x1 < r.x2))) for r in replayed]
        del matches, tps
        # Same survivors, exact order: overwrite each replayed keyframe's (contiguous) block in place.
        starts, lengths = _groups(dets.key)
        block = {int(k): (int(b), int(n)) for k, b, n in zip(dets.key[starts], starts, lengths, strict=True)}
        for r in replayed:
            b, n = block[int(r.key[0])]
            if n != len(r):
                raise AssertionError(f"exact heap replay kept {len(r)} boxes, the vectorised cap {n}")
            for f in ("action", "score", *_COORDS):
                getattr(dets, f)[b : b + n] = getattr(r, f)
        matches = _match(dets, gt_rows, lm.num_classes)
        tps = [_true_positives(matches, t) for t in thresholds]
    del matches

    n_gt = np.bincount(gt_rows.action, minlength=lm.num_classes + 1)
    ap_by_thr, n_det = _class_aps(dets, tps, n_gt, pool.first_row, lm.num_classes)

    names = lm.names()
    ap05 = ap_by_thr[0]
    metrics: dict[str, float] = {MAP_KEY: _nanmean(ap05)}
    for cid, name in names.items():
        metrics[metric_key(name)] = float(ap05[cid - 1])
    class_table: dict[str, list[Any]] = {
        "id": list(names), "name": list(names.values()),
        "ap": [float(ap05[c - 1]) for c in names],
        "n_gt": [int(n_gt[c]) for c in names],
        "n_det": [int(n_det[c]) for c in names],
    }
    group_ap = {}
    # AVA's category groups are id ranges of AVA's own classes: only meaningful when the names are AVA's
    ava_names = dict(load_bundled_labelmap(AVA_V22_ALL).entries)
    is_ava = all(ava_names.get(cid) == name for cid, name in names.items())
    for group, (g_lo, g_hi) in CATEGORY_GROUPS.items() if is_ava else ():
        ids = [c for c in names if g_lo <= c <= g_hi]
        group_ap[group] = _nanmean(ap05[np.asarray(ids, np.int64) - 1]) if ids else float("nan")
    iou_metrics = {}
    for t, ap in zip(thresholds[1:], ap_by_thr[1:], strict=True):
        iou_metrics[t] = {"mAP": _nanmean(ap), **{name: float(ap[c - 1]) for c, name in names.items()}}
    stats = {
        "groundtruth_rows": gt.n_rows,
        "groundtruth_boxes_evaluated": len(gt_rows),
        "detection_rows": n_det_rows,
        "detections_evaluated": len(dets),
        "keyframes_with_detections": int(np.count_nonzero(pool.counts)),
        "keyframes_replayed_exact_heap": int(len(sensitive)),
        "groundtruth_keyframes_replayed_exact_heap": n_gt_replayed,
    }
    return EvalResult(metrics, class_table, metrics[MAP_KEY], group_ap, iou_metrics, stats, legacy)


# ----------------------------------------------------------------------------------------------------------
# CSV -> DataFrame readers
# ----------------------------------------------------------------------------------------------------------
def _read_frame(path: str | os.PathLike[str], third: str) -> pd.DataFrame:
    """Rows of an AVA CSV as a DataFrame, file order kept; 2-column rows get NaN boxes and <NA> action_id."""
    import pandas as pd

    path = os.fspath(path)
    _check_file(path)
    records: dict[str, list[Any]] = {c: [] for c in ("video_id", "timestamp", *_COORDS, "action_id", third)}
    for line, row in _python_rows(path):
        n = len(row)
        if n not in (2, 7, 8):
            raise AvaFormatError(f"{path}, line {line}: expected 2, 7 or 8 columns, got {n}: {','.join(row)!r}")
        records["video_id"].append(row[0])
        records["timestamp"].append(row[1])
        try:
            values = [float(v) for v in row[2:6]] if n > 2 else [np.nan] * 4
            action = int(row[6]) if n > 2 else None
            extra = float(row[7]) if n == 8 else (1.0 if n == 7 else np.nan)
        except ValueError:
            raise AvaFormatError(f"{path}, line {line}: non-numeric field in {','.join(row)!r}") from None
        for c, v in zip(_COORDS, values, strict=True):
            records[c].append(v)
        records["action_id"].append(action)
        records[third].append(extra)
    frame = pd.DataFrame(records)
    frame["action_id"] = frame["action_id"].astype("Int64")
    for c in (*_COORDS, third):
        frame[c] = frame[c].astype(np.float64)
    return frame


def _read_frame_fast(path: str | os.PathLike[str], third: str) -> pd.DataFrame:
    path = os.fspath(path)
    _check_file(path)
    width = _sniff_width(path) if _have_pyarrow() else 0
    if width not in (7, 8):
        return _read_frame(path, third)
    import pyarrow as pa

    try:
        tables = []
        for _, table, short_rows in _FastCsv(path, width).pieces_iter():
            if short_rows:
                raise _SlowPath("2-column rows")
            tables.append(table)
    except _SlowPath:
        return _read_frame(path, third)
    frame = pa.concat_tables(tables).unify_dictionaries().to_pandas()  # strings -> Categorical
    if width == 8:
        frame = frame.rename(columns={"score": third})
    else:
        frame[third] = 1.0
    frame["action_id"] = frame["action_id"].astype("Int64")
    return frame


def read_groundtruth_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an AVA annotation CSV (no header) into a DataFrame.

    Columns: video_id, timestamp (the strings as written; pandas Categorical when read by pyarrow), x1, y1,
    x2, y2 (float64, normalised), action_id (Int64), person_id (float64; 1.0 for 7-column rows). 2-column rows
    (empty keyframes) have NaN boxes and <NA> action_id. Raises AvaFormatError for a missing file or a
    malformed row (file and line named).
    """
    return _read_frame_fast(path, "person_id")


def read_detections_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an AVA detection CSV (no header): like :func:`read_groundtruth_csv` with ``score`` as 8th column."""
    return _read_frame_fast(path, "score")


def read_exclusions_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an excluded-timestamps CSV (``video_id,second`` rows) into columns video_id, timestamp (str)."""
    path = os.fspath(path)
    _check_file(path)
    import pandas as pd

    videos, stamps = [], []
    for line, row in _python_rows(path):
        if len(row) != 2:
            raise AvaFormatError(f"{path}, line {line}: expected 2 columns (video_id,second), got {len(row)}")
        videos.append(row[0])
        stamps.append(row[1])
    return pd.DataFrame({"video_id": videos, "timestamp": stamps})


# ----------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------
def _table_order(result: EvalResult, sort: str) -> list[int]:
    """Row order of ``class_table`` for ``--sort`` (id, name, or AP descending with NaN last)."""
    t = result.class_table
    rows = range(len(t["id"]))
    if sort == "name":
        return sorted(rows, key=lambda i: t["name"][i])
    if sort == "ap":
        return sorted(rows, key=lambda i: (np.isnan(t["ap"][i]), -np.nan_to_num(t["ap"][i])))
    return sorted(rows, key=lambda i: t["id"][i])


def format_report(result: EvalResult, sort: str = "id") -> str:
    """Readable per-class table (name, AP, #GT, #detections), the official mAP, then the NOT-official extras."""
    t = result.class_table
    order = _table_order(result, sort)
    width = max([len("class"), *(len(n) for n in t["name"])])
    lines = [f"{'id':>3}  {'class':<{width}}  {'AP':>7}  {'#GT':>7}  {'#det':>9}"]
    for i in order:
        ap = "    nan" if np.isnan(t["ap"][i]) else f"{t['ap'][i]:7.4f}"
        lines.append(f"{t['id'][i]:>3}  {t['name'][i]:<{width}}  {ap}  {t['n_gt'][i]:>7}  {t['n_det'][i]:>9}")
    lines.append(f"{MAP_KEY}: {result.mean_ap:.6f}")
    extras = [f"  {group}: {value:.4f}" for group, value in result.group_ap.items()]
    extras += [f"  frame-mAP@{t_}IOU: {m['mAP']:.6f}" for t_, m in result.iou_metrics.items()]
    if extras:
        lines.append("Not official (category means of the class APs above; other IoU thresholds):")
        lines.extend(extras)
    return "\n".join(lines)


def write_metrics_json(metrics: dict[str, float], path: str) -> None:
    """Write the flat official dict as JSON (NaN written as ``NaN``), atomically."""
    text = json.dumps({k: float(v) for k, v in metrics.items()}, indent=2, allow_nan=True)
    write_text_atomic(text + "\n", path)


def plot_per_class(result: EvalResult, path: str, sort: str = "id") -> None:
    """Bar chart of per-class AP (PNG, matplotlib Agg backend), atomically written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = _table_order(result, sort)
    names = [result.class_table["name"][i] for i in order]
    aps = np.nan_to_num(np.asarray([result.class_table["ap"][i] for i in order], float), nan=0.0)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.22 * len(order)), 5.0))
    ax.bar(np.arange(len(order)), aps, color="tab:blue")
    ax.set_xticks(np.arange(len(order)))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_ylabel("AP@0.5IOU")
    ax.set_ylim(0, 1)
    ax.set_title(f"AVA per-class AP (mAP {result.mean_ap:.4f})")
    fig.tight_layout()

    try:
        with atomic_output(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------
def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ava_tools.evaluate",
        description="AVA frame-mAP, numerically identical to ActivityNet's get_ava_performance.py, fast.",
    )
    add_common_arguments(parser)
    parser.add_argument("-l", "--labelmap", default=None,
                        help="label map .pbtxt (default: the bundled ava_action_list_v2.2_for_activitynet_2019)")
    parser.add_argument("-g", "--groundtruth", required=True, help="ground-truth CSV")
    parser.add_argument("-d", "--detections", required=True, help="detections CSV")
    parser.add_argument("-e", "--exclusions", default=None,
                        help="excluded timestamps CSV; selects the earlier official release's semantics")
    parser.add_argument("--json", default=None, help="write the official metrics dict to this JSON file")
    parser.add_argument("--plot", default=None, help="write a per-class AP bar chart (PNG) to this file")
    parser.add_argument("--sort", choices=("id", "name", "ap"), default="id", help="table order")
    parser.add_argument("--iou", type=float, nargs="+", default=[],
                        help="also report (not official) frame-mAP at these IoU thresholds")
    parser.add_argument("--no-range-check", action="store_true",
                        help="accept coordinates outside [0, 1] and inverted GT boxes like the official")
    return parser


def check_output_path(path: str | os.PathLike[str], option: str) -> None:
    """Check, before any work, that a file can be written at ``path`` (the folder is created if missing).

    Raises:
        UserError: ``path`` is a folder, a parent is not a folder, or the (nearest existing) folder does not
            take new files (permissions, read-only file system, immutable); the message names ``option`` and
            the path as given.
    """
    import tempfile

    target = os.path.abspath(os.fspath(path))
    if os.path.isdir(target):
        raise UserError(f"{option} {os.fspath(path)}: is a folder; give a file name")
    folder = os.path.dirname(target)
    while not os.path.exists(folder):  # atomic_output creates the missing folders
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise UserError(f"{option} {os.fspath(path)}: {folder} is not a folder")
    try:  # the same operation the atomic write starts with: a new file in that folder
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{option} {os.fspath(path)}: cannot write in {folder} ({e.strerror or e})") from None


def _write_output(option: str, path: str, write: Callable[[], None]) -> None:
    """Run ``write``; an OS error names the user's path, not the temporary file of the atomic write."""
    try:
        write()
    except OSError as e:
        raise UserError(f"{option} {path}: cannot write it ({e.strerror or e})") from e


def _empty_detections_warning(result: EvalResult, detections: str) -> str | None:
    """A warning when the detections cannot score anything (the mAP is then 0 for reasons of input)."""
    rows = result.stats["detection_rows"]
    if rows == 0:
        return f"{detections}: the detection file has no rows; every class with ground truth gets AP 0"
    if result.stats["detections_evaluated"] == 0:
        return (
            f"{detections}: none of its {rows} row(s) is a detection of a label-map class on a scored "
            "ground-truth keyframe (check video ids, timestamps and class ids); every class with ground truth "
            "gets AP 0"
        )
    return None


def main(args: argparse.Namespace) -> int:
    """Run the evaluation; returns the exit status (2 on bad input, message on stderr)."""
    try:
        for t in args.iou:
            if not 0.0 <= t <= 1.0:
                raise AvaFormatError(f"--iou thresholds must lie in [0, 1], got {t}")
        # before the evaluation: a bad output path must not cost the computed metrics
        for option, path in (("--json", args.json), ("--plot", args.plot)):
            if path:
                check_output_path(path, option)
        result = evaluate(args.groundtruth, args.detections, args.labelmap, args.exclusions,
                          iou_thresholds=args.iou, check_range=not args.no_range_check)
        if args.json:
            _write_output("--json", args.json, lambda: write_metrics_json(result.metrics, args.json))
        if args.plot:
            _write_output("--plot", args.plot, lambda: plot_per_class(result, args.plot, args.sort))
    except (UserError, OSError) as e:
        if getattr(args, "debug", False) or not is_user_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(f"{MAP_KEY}: {result.mean_ap:.6f}  (metrics written to {args.json})")
    else:
        print(format_report(result, args.sort))
    if (warning := _empty_detections_warning(result, args.detections)) is not None:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cli(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``ava-evaluate``."""
    sys.exit(run_cli(main, get_args_parser(), argv))


if __name__ == "__main__":
    cli()
