"""Reading ground-truth, detection and exclusion CSVs: fast (pyarrow, 32 MB pieces) and exact
line-by-line (``csv`` module, as the official) paths, filtering and validation with file:line errors."""

from __future__ import annotations

import csv
import os
import sys
import threading
from collections.abc import Callable, Iterator
from queue import Full, Queue
from typing import TYPE_CHECKING, Any, TypeGuard, cast

import numpy as np

if TYPE_CHECKING:  # pandas is imported lazily: the CLI path does not need it (saves ~1 s of start-up)
    import pandas as pd

from ava_tools.evaluate.keys import _key_error, _KeyTable, _plain
from ava_tools.evaluate.rows import _COORDS, _RawBatch, _Rows, _SlowPath
from ava_tools.labelmap import (
    AvaFormatError,
    LabelMap,
)

_CHUNK_BYTES = 32 << 20


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
