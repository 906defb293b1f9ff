"""AVA label maps, parsed exactly like the official ActivityNet evaluator (line-based, not protobuf).

The official ``read_labelmap`` looks at each line on its own:

* a line starting with exactly two spaces then ``name:`` sets the current name (the text between the
  first two ``"``);
* a line starting with ``  id:`` or ``  label_id:`` appends ``{id, current name}``, the id being the last
  space-separated token of the stripped line;
* every other line (``item {``, ``label_type: ...``, four-space indents, tabs) is ignored.

The evaluator then uses ``max(id)`` classes, maps an id to the *last* name given for it, and one metric key
per name (two ids with the same name share one key). Two label maps ship with the package (data files under
``ava_tools/labelmaps/``): the 80 AVA v2.2 classes and the 60 classes evaluated by ActivityNet 2019.
A gzip- or bz2-compressed label map is read as well (see :mod:`ava_tools.compression`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ava_tools.cli import UserError
from ava_tools.compression import DECODE_ERRORS, READABLE, open_text, sniff_compression, unsupported_message

#: The 80-class AVA v2.2 action list (``label {name, label_id, label_type}`` entries).
AVA_V22_ALL = "ava_action_list_v2.2.pbtxt"
#: The 60 classes evaluated in the ActivityNet 2019 AVA challenge (``item {name, id}`` entries).
AVA_V22_ACTIVITYNET = "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
BUNDLED_LABELMAPS = (AVA_V22_ALL, AVA_V22_ACTIVITYNET)

#: AVA's three action categories, as inclusive id ranges of the 80-class list (AVA paper: 14 pose,
#: 49 person-object and 17 person-person classes; label_type PERSON_MOVEMENT, OBJECT_MANIPULATION,
#: PERSON_INTERACTION in ava_action_list_v2.2.pbtxt).
CATEGORY_GROUPS: dict[str, tuple[int, int]] = {
    "pose": (1, 14),
    "person-object": (15, 63),
    "person-person": (64, 80),
}


class AvaFormatError(UserError, ValueError):
    """An AVA input file (label map, CSV) or table that cannot be read; the message names file, line, problem.

    The one error class of every AVA reader. Given ``path`` (and ``line``, ``column``: 1-based, None when the
    problem is not one line or field), the message is prefixed with ``"PATH, line L, column C: "`` and the
    location is kept in the attributes of the same names.
    """

    def __init__(
        self, message: str, *, path: str | os.PathLike[str] | None = None, line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        if self.path is not None:
            where = self.path + (f", line {line}" if line is not None else "")
            where += f", column {column}" if column is not None else ""
            message = f"{where}: {message}"
        super().__init__(message)


@dataclass(frozen=True)
class LabelMap:
    """A label map as the official evaluator sees it.

    Attributes:
        entries: ``(id, name)`` pairs in file order, duplicates kept (the official ``categories`` list).
        source: where it was read from, for messages.
    """

    entries: tuple[tuple[int, str], ...]
    source: str = "<labelmap>"

    def __post_init__(self) -> None:
        if not self.entries:
            raise AvaFormatError(f"{self.source}: the label map has no '  id:' or '  label_id:' line")
        bad = [cid for cid, _ in self.entries if cid < 1]
        if bad:
            raise AvaFormatError(f"{self.source}: class ids must be >= 1 (the evaluator is 1-indexed), got {bad[0]}")

    @property
    def num_classes(self) -> int:
        """Number of class slots the evaluator allocates: the largest id."""
        return max(cid for cid, _ in self.entries)

    @property
    def class_ids(self) -> list[int]:
        """The distinct class ids, ascending (rows with any other action id are dropped)."""
        return sorted({cid for cid, _ in self.entries})

    def name(self, class_id: int) -> str:
        """Name of ``class_id``: the last name given for that id, as the official category index keeps."""
        found = [n for cid, n in self.entries if cid == class_id]
        if not found:
            raise KeyError(f"class id {class_id} is not in {self.source}")
        return found[-1]

    def names(self) -> dict[int, str]:
        """``{id: name}`` for every distinct id, ascending by id (last name wins)."""
        return {cid: self.name(cid) for cid in self.class_ids}


def parse_labelmap(lines: Iterable[str], source: str = "<labelmap>") -> LabelMap:
    """Parse label-map text line by line with the official rules (see the module docstring).

    Args:
        lines: the file's lines (with or without trailing newlines).
        source: file name used in error messages.

    Raises:
        AvaFormatError: a ``name:`` line without quotes, an id line whose last token is not an integer,
            an id below 1, or no id line at all.
    """
    entries: list[tuple[int, str]] = []
    name = ""
    for lineno, line in enumerate(lines, start=1):
        if line.startswith("  name:"):
            parts = line.split('"')
            if len(parts) < 2:
                raise AvaFormatError(f'{source}, line {lineno}: expected name: "..." but got {line.rstrip()!r}')
            name = parts[1]
        elif line.startswith("  id:") or line.startswith("  label_id:"):
            token = line.strip().split(" ")[-1]
            try:
                class_id = int(token)
            except ValueError:
                raise AvaFormatError(
                    f"{source}, line {lineno}: expected an integer class id but got {line.rstrip()!r}"
                ) from None
            entries.append((class_id, name))
    return LabelMap(entries=tuple(entries), source=source)


def read_labelmap(path: str | os.PathLike[str]) -> LabelMap:
    """Read a ``.pbtxt`` label map file with the official line-based rules.

    Raises:
        AvaFormatError: the file is missing, unreadable, empty, compressed in a format not read here, not UTF-8
            text, or malformed.
    """
    try:
        compression = sniff_compression(path)
        size = os.stat(path).st_size
    except OSError as e:
        raise AvaFormatError(f"{path}: cannot read label map ({e.strerror or e})") from None
    if compression is not None and compression not in READABLE:
        raise AvaFormatError(f"{path}: {unsupported_message(compression)}")
    try:
        with open_text(path, compression) as f:
            lines = f.readlines()
    except UnicodeDecodeError as e:
        inside = "" if compression is None else f" inside the {compression} data"
        raise AvaFormatError(f"{path}: not UTF-8 text{inside}, expected a .pbtxt label map ({e})") from None
    except DECODE_ERRORS as e:
        what = f"corrupt or truncated {compression} data" if compression else "cannot read label map"
        raise AvaFormatError(f"{path}: {what} ({getattr(e, 'strerror', None) or e})") from None
    if not "".join(lines).strip():
        empty = "empty file (0 bytes)" if size == 0 else "only whitespace" if compression is None else "no text inside"
        raise AvaFormatError(f"{path}: {empty}; expected a label map with '  id:' or '  label_id:' lines")
    return parse_labelmap(lines, source=str(path))


def bundled_labelmap_path(name: str = AVA_V22_ACTIVITYNET) -> Path:
    """Path of a label map shipped with ava_tools (``AVA_V22_ALL`` or ``AVA_V22_ACTIVITYNET``)."""
    if name not in BUNDLED_LABELMAPS:
        raise KeyError(f"no bundled label map {name!r}; choose one of {BUNDLED_LABELMAPS}")
    return Path(str(resources.files("ava_tools").joinpath("labelmaps", name)))


def load_bundled_labelmap(name: str = AVA_V22_ACTIVITYNET) -> LabelMap:
    """Parse a label map shipped with ava_tools (default: the 60 evaluated AVA v2.2 classes)."""
    return read_labelmap(bundled_labelmap_path(name))


def category_group(class_id: int) -> str | None:
    """AVA category of an 80-class id (``pose``, ``person-object``, ``person-person``), None outside 1..80."""
    for group, (lo, hi) in CATEGORY_GROUPS.items():
        if lo <= class_id <= hi:
            return group
    return None
