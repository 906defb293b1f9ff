"""Tests of ava_tools.labelmap: the official line-based parsing rules and the bundled AVA v2.2 label maps."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import pytest

from ava_tools.labelmap import (
    AVA_V22_ACTIVITYNET,
    AVA_V22_ALL,
    CATEGORY_GROUPS,
    AvaFormatError,
    LabelMap,
    category_group,
    load_bundled_labelmap,
    parse_labelmap,
    read_labelmap,
)


def test_official_line_rules() -> None:
    """Only lines starting with exactly two spaces count; `id:` and `label_id:` both append (id, last name);
    the id is the last space-separated token; everything else (braces, label_type, tabs, 4 spaces) is ignored."""
    text = [
        "item {\n",
        '  name: "walk"\n',
        "  id: 14\n",
        "}\n",
        "label {\n",
        '  name: "sit" # comment "x"\n',
        "  label_type: PERSON_MOVEMENT\n",
        "  label_id: 11\n",
        '    name: "ignored: four spaces"\n',
        '\tname: "ignored: tab"\n',
        "    id: 99\n",
        "}\n",
    ]
    lm = parse_labelmap(text)
    assert lm.entries == ((14, "walk"), (11, "sit"))
    assert lm.num_classes == 14 and lm.class_ids == [11, 14]
    assert lm.names() == {11: "sit", 14: "walk"}


def test_id_reuses_the_last_name_and_duplicate_ids_keep_the_last_name() -> None:
    """An id line without a new name line gets the previous name; for a repeated id the last name wins (the
    official category index is a dict filled in file order)."""
    lm = parse_labelmap(['  name: "a"', "  id: 1", "  id: 2", '  name: "b"', "  id: 1"])
    assert lm.entries == ((1, "a"), (2, "a"), (1, "b"))
    assert lm.name(1) == "b" and lm.name(2) == "a" and lm.class_ids == [1, 2]
    with pytest.raises(KeyError):
        lm.name(3)


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (["  name: no quotes", "  id: 1"], "line 1: expected name"),
        (['  name: "a"', "  id:1"], "line 2: expected an integer class id"),
        (['  name: "a"', "  id: 0"], "ids must be >= 1"),
        (['item { name: "a" id: 1 }'], "no '  id:'"),
    ],
)
def test_bad_label_maps(lines: list[str], match: str) -> None:
    with pytest.raises(AvaFormatError, match=match):
        parse_labelmap(lines, source="x.pbtxt")


def test_read_labelmap_file_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "m.pbtxt"
    p.write_text('item {\n  name: "a"\n  id: 3\n}\n')
    assert read_labelmap(p) == LabelMap(((3, "a"),), source=str(p))
    with pytest.raises(AvaFormatError, match="cannot read label map"):
        read_labelmap(tmp_path / "missing.pbtxt")


def test_compressed_label_maps(tmp_path: Path) -> None:
    text = load_bundled_labelmap(AVA_V22_ALL)
    plain = Path(text.source).read_bytes()
    for name, data in [("m.pbtxt.gz", gzip.compress(plain)), ("m_gz.pbtxt", gzip.compress(plain)),
                       ("m.pbtxt.bz2", bz2.compress(plain))]:
        (tmp_path / name).write_bytes(data)
        assert read_labelmap(tmp_path / name).entries == text.entries
    (tmp_path / "m.pbtxt.xz").write_bytes(lzma.compress(plain))
    with pytest.raises(AvaFormatError, match=r"m\.pbtxt\.xz: xz-compressed data; decompress it first"):
        read_labelmap(tmp_path / "m.pbtxt.xz")
    (tmp_path / "t.pbtxt.gz").write_bytes(gzip.compress(plain)[:100])
    with pytest.raises(AvaFormatError, match=r"t\.pbtxt\.gz: corrupt or truncated gzip data"):
        read_labelmap(tmp_path / "t.pbtxt.gz")


def test_empty_and_binary_label_maps_are_named(tmp_path: Path) -> None:
    (tmp_path / "e.pbtxt").write_bytes(b"")
    with pytest.raises(AvaFormatError, match=r"e\.pbtxt: empty file \(0 bytes\); expected a label map with '  id:'"):
        read_labelmap(tmp_path / "e.pbtxt")
    (tmp_path / "e.pbtxt.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(AvaFormatError, match=r"no text inside; expected a label map"):
        read_labelmap(tmp_path / "e.pbtxt.gz")
    (tmp_path / "b.pbtxt").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(AvaFormatError, match=r"b\.pbtxt: not UTF-8 text, expected a \.pbtxt label map"):
        read_labelmap(tmp_path / "b.pbtxt")


def test_bundled_ava_v22_maps() -> None:
    """80 classes 1..80 in the full list; 60 evaluated classes (the ActivityNet 2019 list), a subset with the
    same names; spot checks of well-known ids."""
    full = load_bundled_labelmap(AVA_V22_ALL)
    evaluated = load_bundled_labelmap(AVA_V22_ACTIVITYNET)
    assert full.class_ids == list(range(1, 81)) and len(full.entries) == 80
    assert len(evaluated.entries) == 60 and evaluated.num_classes == 80
    names = full.names()
    assert all(names[c] == n for c, n in evaluated.names().items())
    assert names[1] == "bend/bow (at the waist)" and names[12] == "stand" and names[14] == "walk"
    assert names[17] == "carry/hold (an object)" and names[80] == "watch (a person)"
    missing = sorted(set(full.class_ids) - set(evaluated.class_ids))
    assert missing == [2, 16, 18, 19, 21, 23, 25, 31, 32, 33, 35, 39, 40, 42, 44, 50, 53, 55, 71, 75]


def test_category_groups_cover_the_80_classes() -> None:
    """pose 1-14, person-object 15-63, person-person 64-80 (14 + 49 + 17 = 80)."""
    sizes = {g: hi - lo + 1 for g, (lo, hi) in CATEGORY_GROUPS.items()}
    assert sizes == {"pose": 14, "person-object": 49, "person-person": 17}
    assert [category_group(c) for c in (1, 14, 15, 63, 64, 80, 81)] == [
        "pose",
        "pose",
        "person-object",
        "person-object",
        "person-person",
        "person-person",
        None,
    ]
