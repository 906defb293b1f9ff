"""ava_tools.io: AVA CSV and frame-list readers (PySlowFast parsing; errors name file, line, column)."""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pytest

from ava_tools.io import (
    AvaFormatError,
    read_annotations,
    read_exclusions,
    read_frame_list,
    read_predicted_boxes,
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_annotations_values_and_source(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "gt.csv",
        "vidA,0902,0.077,0.151,0.283,0.811,80,1\n"
        "vidA,902,0.10,0.2,0.3,0.4,,2\n"
        "vid-B_c,1798,1,0,0.5,0.25,12,0\r\n",
    )
    t = read_annotations(f, with_source=True)
    assert list(t["video_id"]) == ["vidA", "vidA", "vid-B_c"]
    assert t["timestamp"].tolist() == [902, 902, 1798]
    assert t["x1"].tolist() == [0.077, 0.10, 1.0]
    assert t["y2"].tolist() == [0.811, 0.4, 0.25]
    assert t["action_id"].tolist() == [80, -1, 12]
    assert t["person_id"].tolist() == [1, 2, 0]
    assert t["line"].tolist() == [1, 2, 3]
    # the coordinate text exactly as written (PySlowFast's dedup key): "0.10" is not "0.1"
    assert t["box_text"].tolist() == ["0.077,0.151,0.283,0.811", "0.10,0.2,0.3,0.4", "1,0,0.5,0.25"]


def test_annotations_without_person_id(tmp_path: Path) -> None:
    t = read_annotations(_write(tmp_path / "v1.csv", "v,1000,0.1,0.2,0.3,0.4,5\n"))
    assert t["person_id"].tolist() == [-1]
    assert t["action_id"].tolist() == [5]


def test_floats_round_like_python(tmp_path: Path) -> None:
    texts = ["0.1", "0.30000000000000004", "1e-3", ".5", "0.123456789012345678901", "5.", " 0.25"]
    rows = "".join(f"v,902,{t},0,1,1,1,1\n" for t in texts)
    t = read_annotations(_write(tmp_path / "f.csv", rows))
    assert t["x1"].tolist() == [float(s) for s in texts]


def test_predicted_boxes_threshold(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "pred.csv",
        "v,902,0.1,0.1,0.5,0.5,,0.8\n"  # equal to the threshold: kept
        "v,902,0.2,0.1,0.5,0.5,,0.7999999\n"  # below: dropped
        "v,903,0.3,0.1,0.5,0.5,7,0.95\n",
    )
    all_rows = read_predicted_boxes(f)
    assert all_rows["score"].tolist() == [0.8, 0.7999999, 0.95]
    kept = read_predicted_boxes(f, score_thresh=0.8, with_source=True)
    assert kept["x1"].tolist() == [0.1, 0.3]
    assert kept["action_id"].tolist() == [-1, 7]
    assert kept["line"].tolist() == [1, 3]


def test_exclusions(tmp_path: Path) -> None:
    t = read_exclusions(_write(tmp_path / "ex.csv", "a,0905\nb,1200\n"))
    assert t["video_id"].tolist() == ["a", "b"]
    assert t["timestamp"].tolist() == [905, 1200]


def test_empty_file_is_empty_table(tmp_path: Path) -> None:
    assert len(read_predicted_boxes(_write(tmp_path / "e.csv", ""))) == 0


@pytest.mark.parametrize(
    ("text", "line", "column", "needle"),
    [
        ("v,902,0.1,0.2,0.3,0.4,1,1\nv,9o2,0.1,0.2,0.3,0.4,1,1\n", 2, 2, "'9o2'"),
        ("v,902,0.1,0.2,0.3,0.4,1,1\nv,902,0.1,0.2,0.3,abc,1,1\n", 2, 6, "'abc'"),
        ("v,902,0.1,0.2,0.3,0.4,1,1\nv,902,0.1,0.2,0.3,0.4,1.5,1\n", 2, 7, "'1.5'"),
        ("v,902,0.1,0.2,0.3,0.4,1,1\nv,902,0.1,nan,0.3,0.4,1,1\n", 2, 4, "finite"),
        ("v,902,0.1,0.2,0.3,0.4,1,1\n,902,0.1,0.2,0.3,0.4,1,1\n", 2, 1, "empty field"),
        ("v,902,0.1,0.2,0.3,0.4,1,1\n\nv,902,0.1,0.2,0.3,0.4,1,1\n", 2, 1, "empty line"),
        ("v,902,0.1,0.2,0.3,0.4,1,1\nv,902,0.1,0.2,0.3,0.4,1,1,9\n", 2, None, "9 fields"),
        ("v,902,0.1,0.2,0.3,0.4,1,1,9\n", 1, None, "9 fields"),
        ("v,902,0.1,0.2,0.3\n", 1, None, "5 fields"),
    ],
)
def test_annotation_errors_name_file_line_column(
    tmp_path: Path, text: str, line: int, column: int | None, needle: str
) -> None:
    f = _write(tmp_path / "bad.csv", text)
    with pytest.raises(AvaFormatError) as info:
        read_annotations(f)
    err = info.value
    assert (err.path, err.line, err.column) == (str(f), line, column)
    assert str(f) in str(err) and f"line {line}" in str(err) and needle in str(err)


def test_predicted_boxes_need_a_score(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.csv", "v,902,0.1,0.2,0.3,0.4,1,0.9\nv,902,0.1,0.2,0.3,0.4,1\n")
    with pytest.raises(AvaFormatError, match=r"line 2, column 8: score '' is not a finite number"):
        read_predicted_boxes(f)
    f7 = _write(tmp_path / "p7.csv", "v,902,0.1,0.2,0.3,0.4,1\n")
    with pytest.raises(AvaFormatError, match="7 fields, expected 8"):
        read_predicted_boxes(f7)


def test_frame_list(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "val.csv",
        "original_vido_id video_id frame_id path labels\n"
        'vidA 0 0 vidA/vidA_000001.jpg ""\n'
        'vidA  0 1   vidA/vidA_000002.jpg ""\n'
        'vidB 1 0 /abs/vidB_000001.jpg ""\n',
    )
    t = read_frame_list(f)
    assert t["original_vido_id"].tolist() == ["vidA", "vidA", "vidB"]
    assert t["path"].tolist() == ["vidA/vidA_000001.jpg", "vidA/vidA_000002.jpg", "/abs/vidB_000001.jpg"]


def test_frame_list_errors(tmp_path: Path) -> None:
    no_header = _write(tmp_path / "a.csv", 'vidA 0 0 vidA/vidA_000001.jpg ""\n')
    with pytest.raises(AvaFormatError, match="line 1: expected the header line"):
        read_frame_list(no_header)
    short = _write(
        tmp_path / "b.csv",
        'original_vido_id video_id frame_id path labels\nv 0 0 v/1.jpg ""\nv 0 1 v/2.jpg\n',
    )
    with pytest.raises(AvaFormatError, match=r"b.csv, line 3: 4 fields, expected 5"):
        read_frame_list(short)
    long = _write(
        tmp_path / "c.csv",
        'original_vido_id video_id frame_id path labels\nv 0 0 v/1.jpg ""\nv 0 1 v/2.jpg "" x\n',
    )
    with pytest.raises(AvaFormatError, match=r"c.csv, line 3: 6 fields"):
        read_frame_list(long)


def test_many_rows_parse_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.random((2000, 4))
    digits = rng.integers(1, 18, size=values.shape)
    texts = [
        [f"{v:.{d}f}" for v, d in zip(row, drow, strict=True)]
        for row, drow in zip(values, digits, strict=True)
    ]
    rows = "".join(f"v,{900 + i % 900},{','.join(t)},1,{i}\n" for i, t in enumerate(texts))
    t = read_annotations(_write(tmp_path / "many.csv", rows))
    expected = np.array([[float(s) for s in row] for row in texts])
    np.testing.assert_array_equal(t[["x1", "y1", "x2", "y2"]].to_numpy(), expected)


_GT = "v,0902,0.1,0.2,0.3,0.4,1,7\nv,903,0.5,0.25,0.75,1.0,,\n"
_PRED = "v,0902,0.1,0.2,0.3,0.4,,0.875\nv,903,0.5,0.25,0.75,1.0,3,0.5\n"
_EXCL = "v,0905\nw,1200\n"
_FRAMES = 'original_vido_id video_id frame_id path labels\nv 0 0 v/v_000001.jpg ""\nv  0 1   v/v_000002.jpg ""\n'
_READERS = [
    (read_annotations, _GT), (read_predicted_boxes, _PRED), (read_exclusions, _EXCL), (read_frame_list, _FRAMES)
]


@pytest.mark.parametrize(("reader", "text"), _READERS, ids=["gt", "predicted", "exclusions", "frame_list"])
@pytest.mark.parametrize(
    ("opener", "name"),
    [(gzip.open, "x.csv.gz"), (gzip.open, "gzip_named_plain.csv"), (bz2.open, "x.csv.bz2")],
    ids=["gz", "gz-without-suffix", "bz2"],
)
def test_compressed_files_read_like_plain_ones(
    reader: Callable[[Path], pd.DataFrame], text: str, opener: Callable[..., IO[str]], name: str, tmp_path: Path
) -> None:
    plain = _write(tmp_path / "plain.csv", text)
    packed = tmp_path / name
    with opener(packed, "wt") as f:
        f.write(text)
    got, want = reader(packed), reader(plain)
    assert len(want) == 2
    assert got.to_dict("list") == want.to_dict("list")


def test_plain_text_named_gz_is_read_as_text(tmp_path: Path) -> None:
    assert read_annotations(_write(tmp_path / "a.csv.gz", _GT))["person_id"].tolist() == [7, -1]


def test_other_compression_and_corrupt_gzip_are_named(tmp_path: Path) -> None:
    xz = tmp_path / "a.csv.xz"
    xz.write_bytes(lzma.compress(_GT.encode()))
    for reader in (read_annotations, read_frame_list):
        with pytest.raises(AvaFormatError, match=r"a\.csv\.xz: xz-compressed data; decompress it first"):
            reader(xz)
    truncated = tmp_path / "t.csv.gz"
    truncated.write_bytes(gzip.compress((_GT * 50).encode())[:60])
    with pytest.raises(AvaFormatError, match=r"t\.csv\.gz: corrupt or truncated gzip data"):
        read_annotations(truncated)


def test_zero_byte_inputs_say_empty_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    empty = _write(tmp_path / "e.csv", "")
    with caplog.at_level(logging.WARNING, logger="ava_tools.io"):
        for reader in (read_annotations, read_predicted_boxes, read_exclusions):
            assert len(reader(empty)) == 0  # a CSV without rows is valid (e.g. no detections)
    assert caplog.messages == [f"{empty}: empty file (0 bytes): the table has no rows"] * 3
    with pytest.raises(AvaFormatError, match=r"e\.csv: empty file \(0 bytes\); expected a frame list with the header"):
        read_frame_list(empty)
    empty_gz = tmp_path / "e.csv.gz"
    empty_gz.write_bytes(gzip.compress(b""))
    with pytest.raises(AvaFormatError, match=r"empty file \(\d+ bytes, no text after decompression\)"):
        read_frame_list(empty_gz)


def test_messages_name_the_field_and_quote_the_text(tmp_path: Path) -> None:
    """The 8th column is person_id in ground truth and score in predictions; values are quoted as written."""
    gt = _write(tmp_path / "gt.csv", "v,902,0.1,0.2,0.3,0.4,1,7\nv,902,0.1,0.2,0.3,0.4,1,0.9\n")
    with pytest.raises(AvaFormatError) as info:
        read_annotations(gt)
    assert str(info.value) == f"{gt}, line 2, column 8: person_id '0.9' is not an integer or nothing"
    pred = _write(tmp_path / "p.csv", "v,902,-0.1,0.2,0.3,0.4,1,inf\n")
    with pytest.raises(AvaFormatError) as info:
        read_predicted_boxes(pred)
    assert str(info.value) == f"{pred}, line 1, column 8: score 'inf' is not a finite number"
    with pytest.raises(AvaFormatError, match=r"column 3: x1 '-0\.1x' is not a finite number"):
        read_annotations(_write(tmp_path / "x.csv", "v,902,-0.1x,0.2,0.3,0.4,1,1\n"))
