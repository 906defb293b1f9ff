"""ava_tools.atomic: all-or-nothing writes, permissions, round-trips."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from ava_tools.atomic import (
    atomic_output,
    default_file_mode,
    write_bytes_atomic,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_failure_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(target) as tmp:
        tmp.write_text("half of the new")
        assert tmp.parent == target.parent and tmp != target
        raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_failing_serializer_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.json"
    with pytest.raises(ValueError):
        write_json_atomic({"a": float("nan")}, target, allow_nan=False)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_permissions_follow_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        assert default_file_mode() == 0o640
        path = write_bytes_atomic(b"x", tmp_path / "a.bin")
        assert _mode(path) == 0o640
        # a plain open gives the same mode
        plain = tmp_path / "plain.bin"
        plain.write_bytes(b"x")
        assert _mode(plain) == _mode(path)
    finally:
        os.umask(old)


def test_replaces_existing_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "t.txt"
    write_text_atomic("one\n", path)
    write_text_atomic("two\r\nthree\n", path)
    assert path.read_bytes() == b"two\r\nthree\n"
    data = bytes(range(256))
    assert write_bytes_atomic(data, path).read_bytes() == data
    obj = {"b": [1, 2.5, None], "a": "é"}
    assert json.loads(write_json_atomic(obj, tmp_path / "o.json").read_text(encoding="utf-8")) == obj
    assert (tmp_path / "o.json").read_text(encoding="utf-8").endswith("}\n")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "o.json", "t.txt"]


def test_csv_defaults_and_overrides(tmp_path: Path) -> None:
    frame = pd.DataFrame({"v": ["a", "b"], "x": [1.25, 2.0]})
    path = write_csv_atomic(frame, tmp_path / "f.csv")
    assert path.read_bytes() == b"v,x\na,1.25\nb,2.0\n"
    write_csv_atomic(frame, path, header=False, sep=" ", float_format="%.1f")
    assert path.read_bytes() == b"a 1.2\nb 2.0\n"
    pd.testing.assert_frame_equal(pd.read_csv(write_csv_atomic(frame, path)), frame)
