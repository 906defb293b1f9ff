"""Install detectron2 v0.6 (Python code only) from the PyPI sdist ``pb1-detectron2==0.6``, ready to import on its own.

Why this exists: detectron2 is not on PyPI under its own name. The sdist ``pb1-detectron2==0.6`` holds the
official v0.6 Python tree byte for byte but no C++ sources, so ``pip install pb1-detectron2`` fails, and current
pip refuses even ``pip download`` of it (its ``all`` extra names a direct-URL dependency). This script:

1. takes the sdist from a local file (``--sdist``) or downloads it from the package index's simple API;
2. checks its sha256 against the pinned value (refuses anything else);
3. extracts only ``detectron2/`` (safe extraction, no path escapes) and makes two additions so that the
   installed package imports without any help from ``slowfast_det`` (a user's own detectron2 script just works):

   * ``detectron2/_C.py``: a copy of :mod:`slowfast_det.detection.ext_standin`, a pure-Python stand-in for the
     C++ extension whose ops raise an error naming the op and the README section. Faster R-CNN needs none of
     them (it uses torchvision's nms/roi_align).
   * ``detectron2/data/transforms/transform.py``: the one use of ``PIL.Image.LINEAR`` (removed in Pillow 10,
     evaluated at import of ``detectron2.data``) becomes ``Image.BILINEAR``, the same filter -- upstream's own
     fix after v0.6 (facebookresearch/detectron2 commit ff53992, issue #5010). This source edit is needed
     because ``import detectron2.data`` reaches that line before anything imports ``detectron2._C``.
4. installs it as the ``detectron2`` distribution, version 0.6 (``pip install --no-deps --no-build-isolation``),
   then checks in a fresh interpreter, without importing ``slowfast_det``, that ``detectron2.data``,
   ``detectron2.model_zoo`` and ``detectron2.engine`` import.

Without ``--force`` an existing detectron2 is kept, except an install made by an older version of this script
(no stand-in, or an older one), which is upgraded in place. The alternative route on machines with internet is
the official build from source: ``pip install 'git+https://github.com/facebookresearch/detectron2.git@v0.6'``.

Command line: ``slowfast-install-detectron2`` / ``python -m slowfast_det.tools.install_detectron2 [--sdist FILE]
[--python PY] [--target DIR] [--force]`` (:mod:`slowfast_det.tools.install_detectron2`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from ava_tools.cli import UserError

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_FILENAME = "pb1-detectron2-0.6.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
DEFAULT_INDEX = "https://pypi.org/simple"
# The distribution's summary; an installed detectron2 with this summary was made by this script.
SUMMARY = "detectron2 v0.6 Python code from the pb1-detectron2 sdist, installed without the C++ extension"

# The stand-in for detectron2's C++ extension, shipped as detectron2/_C.py (see module docstring).
STANDIN_SOURCE = Path(__file__).with_name("ext_standin.py")
# (file inside the package, text in v0.6, replacement): Pillow >= 10 has no Image.LINEAR (see module docstring)
PILLOW_FIX = ("detectron2/data/transforms/transform.py", "interp=Image.LINEAR,", "interp=Image.BILINEAR,")

# Run by the target interpreter after installing: imports what a user's script would, never slowfast_det.
_IMPORT_CHECK = """\
import sys
import detectron2._C, detectron2.data, detectron2.engine, detectron2.model_zoo
assert "slowfast_det" not in sys.modules, "detectron2 imported slowfast_det"
print(detectron2.__file__)
"""

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "detectron2"
version = "0.6"
description = "{summary}"
requires-python = ">=3.8"

[tool.setuptools.packages.find]
include = ["detectron2*"]

[tool.setuptools.package-data]
"*" = ["*.yaml", "*.py", "*.json"]
"""


class InstallError(UserError, RuntimeError):
    """The sdist could not be fetched, verified or installed."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sdist(path: Path, expected: str = SDIST_SHA256) -> None:
    """Raise InstallError unless ``path`` has the pinned sha256."""
    got = sha256_of(path)
    if got != expected:
        raise InstallError(f"{path}: sha256 {got} does not match the pinned {expected} of {SDIST_FILENAME}")


def find_sdist_url(index_url: str = DEFAULT_INDEX) -> str:
    """Return the download URL of the sdist from a PEP 691 (JSON) simple index."""
    page = f"{index_url.rstrip('/')}/{SDIST_NAME}/"
    request = urllib.request.Request(page, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            listing = json.load(response)
    except (OSError, ValueError) as exc:
        raise InstallError(f"could not read the package index page {page}: {exc}") from exc
    for entry in listing.get("files", []):
        if entry.get("filename") == SDIST_FILENAME:
            return str(entry["url"])
    raise InstallError(f"{page} lists no file named {SDIST_FILENAME}")


def download(url: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` atomically (temp file then rename)."""
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=120) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        raise InstallError(f"could not download {url}: {exc}") from exc
    os.replace(tmp, dest)
    return dest


def standin_version(text: str) -> int | None:
    """``STANDIN_VERSION`` of a stand-in's source text; None when the text is not our stand-in."""
    match = re.search(r"^STANDIN_VERSION = (\d+)$", text, flags=re.MULTILINE)
    return int(match.group(1)) if match and "is_slowfast_det_stub = True" in text else None


def add_standalone_support(project: Path) -> None:
    """Add the ``_C`` stand-in and the Pillow fix to an extracted ``detectron2/`` package (see module docstring).

    Raises:
        InstallError: the file to fix does not hold the v0.6 text exactly once (not the pinned sdist).
    """
    relative, old, new = PILLOW_FIX
    path = project / relative
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if text.count(old) != 1:
        raise InstallError(f"{relative} in the sdist does not contain {old!r} exactly once; is it detectron2 v0.6?")
    path.write_text(text.replace(old, new), encoding="utf-8")
    shutil.copyfile(STANDIN_SOURCE, project / "detectron2" / "_C.py")


def extract_package(sdist: Path, out_dir: Path) -> Path:
    """Extract only the ``detectron2/`` package of the sdist into ``out_dir``, ready to install (stand-in ``_C``
    and Pillow fix added); return the project dir."""
    project = out_dir / "detectron2-src"
    project.mkdir(parents=True, exist_ok=True)
    prefix = f"{SDIST_NAME}-{SDIST_VERSION}/detectron2/"
    with tarfile.open(sdist, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            if not member.name.startswith(prefix) or not (member.isfile() or member.isdir()):
                continue
            member.name = member.name[len(f"{SDIST_NAME}-{SDIST_VERSION}/") :]
            members.append(member)
        if not members:
            raise InstallError(f"{sdist}: no {prefix} folder inside")
        try:
            tar.extractall(project, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise InstallError(f"{sdist}: refusing an unsafe archive member: {exc}") from exc
    add_standalone_support(project)
    (project / "pyproject.toml").write_text(_PYPROJECT.format(summary=SUMMARY))
    return project


def check_import(python: str, target: Path | None = None) -> str:
    """Import detectron2 in a fresh ``python`` (from ``target`` when given) without slowfast_det; return its path.

    Raises:
        InstallError: the import failed (the message holds the interpreter's last error line).
    """
    env = dict(os.environ)
    if target is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [env.get("PYTHONPATH")])])
    # cwd: a fresh folder, so that a source checkout in the current directory is not what gets imported
    with tempfile.TemporaryDirectory(prefix="d2-check-") as cwd:
        result = subprocess.run([python, "-c", _IMPORT_CHECK], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        raise InstallError(f"the installed detectron2 does not import on its own with {python}: {lines[-1]}")
    return result.stdout.strip()


def install(
    sdist: Path | None,
    python: str,
    index_url: str,
    *,
    target: Path | None = None,
    sha256: str = SDIST_SHA256,
) -> str:
    """Fetch (or take), verify and install detectron2 0.6's Python package with ``python -m pip``; check it.

    Args:
        sdist: local sdist, or None to download it from ``index_url``.
        python: interpreter whose environment gets detectron2.
        index_url: simple index (PEP 691 JSON) to download from.
        target: install into this folder (``pip install --target``) instead of the environment.
        sha256: the sdist's required sha256 (the pinned one; tests pass their own).

    Returns:
        The installed ``detectron2/__init__.py`` path, as imported by the check.
    """
    with tempfile.TemporaryDirectory(prefix="d2-install-") as tmp:
        work = Path(tmp)
        if sdist is None:
            sdist = download(find_sdist_url(index_url), work / SDIST_FILENAME)
        verify_sdist(sdist, sha256)
        project = extract_package(sdist, work)
        cmd = [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
        if target is not None:
            cmd += ["--target", str(target), "--upgrade"]  # --upgrade: replace an existing detectron2/ there
        if subprocess.run([*cmd, str(project)]).returncode != 0:
            raise InstallError(f"pip failed installing the extracted detectron2 package: {' '.join(cmd)}")
    return check_import(python, target)


# Prints JSON: null, or the installed detectron2's version, summary and its _C.py text (None when absent).
_INSTALLED_PROBE = """\
import importlib.metadata as m, json
try:
    dist = m.distribution("detectron2")
except m.PackageNotFoundError:
    print("null")
else:
    paths = [dist.locate_file(f) for f in dist.files or [] if f.as_posix() == "detectron2/_C.py"]
    standin = paths[0].read_text(encoding="utf-8") if paths and paths[0].is_file() else None
    print(json.dumps({"version": dist.version, "summary": dist.metadata["Summary"], "standin": standin}))
"""


def installed_detectron2(python: str) -> dict[str, str | None] | None:
    """What detectron2 ``python`` has (version, summary, the text of a ``_C.py``), or None; detectron2 is not
    imported (the official build is left untouched, also when it does not import)."""
    result = subprocess.run([python, "-c", _INSTALLED_PROBE], capture_output=True, text=True)
    if result.returncode != 0:
        raise InstallError(f"could not inspect the environment of {python}: {result.stderr.strip()[-300:]}")
    found: dict[str, str | None] | None = json.loads(result.stdout)
    return found


def needs_upgrade(found: dict[str, str | None]) -> bool:
    """True for a detectron2 installed by an older version of this script (no or an older ``_C`` stand-in)."""
    if found.get("summary") != SUMMARY:
        return False  # not ours (e.g. the official build): never replaced without --force
    ours = standin_version(STANDIN_SOURCE.read_text(encoding="utf-8"))
    return standin_version(found.get("standin") or "") != ours
