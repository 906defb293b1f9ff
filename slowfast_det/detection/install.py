"""Install detectron2 v0.6 (Python code only) from the PyPI sdist ``pb1-detectron2==0.6``.

Why this exists: detectron2 is not on PyPI under its own name. The sdist ``pb1-detectron2==0.6`` holds the
official v0.6 Python tree byte for byte but no C++ sources, so ``pip install pb1-detectron2`` fails, and current
pip refuses even ``pip download`` of it (its ``all`` extra names a direct-URL dependency). This script:

1. takes the sdist from a local file (``--sdist``) or downloads it from the package index's simple API;
2. checks its sha256 against the pinned value (refuses anything else);
3. extracts only ``detectron2/`` (safe extraction, no path escapes) and installs it as the ``detectron2``
   distribution, version 0.6, without the C++ extension (``pip install --no-deps --no-build-isolation``).

Faster R-CNN needs none of the C++ ops (it uses torchvision's nms/roi_align); ``slowfast_det.detection.compat`` supplies
the two shims v0.6 needs on a current stack. The alternative route on machines with internet is the official
build from source: ``pip install 'git+https://github.com/facebookresearch/detectron2.git@v0.6'``.

Usage: ``python -m slowfast_det.detection.install [--sdist FILE] [--python PY] [--force]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ava_tools.cli import UserError, add_common_arguments, run_cli

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_FILENAME = "pb1-detectron2-0.6.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
DEFAULT_INDEX = "https://pypi.org/simple"

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "detectron2"
version = "0.6"
description = "detectron2 v0.6 Python code from the pb1-detectron2 sdist, installed without the C++ extension"
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


def extract_package(sdist: Path, out_dir: Path) -> Path:
    """Extract only the ``detectron2/`` package of the sdist into ``out_dir``; return the project dir."""
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
    (project / "pyproject.toml").write_text(_PYPROJECT)
    return project


def install(sdist: Path | None, python: str, index_url: str) -> None:
    """Fetch (or take), verify and install detectron2 0.6's Python package with ``python -m pip``."""
    with tempfile.TemporaryDirectory(prefix="d2-install-") as tmp:
        work = Path(tmp)
        if sdist is None:
            sdist = download(find_sdist_url(index_url), work / SDIST_FILENAME)
        verify_sdist(sdist)
        project = extract_package(sdist, work)
        cmd = [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", str(project)]
        if subprocess.run(cmd).returncode != 0:
            raise InstallError(f"pip failed installing the extracted detectron2 package: {' '.join(cmd)}")


def detectron2_installed(python: str) -> bool:
    """True when ``python`` already has a detectron2 distribution installed."""
    code = "import importlib.metadata as m; m.version('detectron2')"
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--sdist", type=Path, default=None, help="local pb1-detectron2-0.6.tar.gz (offline)")
    parser.add_argument("--python", default=sys.executable, help="interpreter whose environment gets detectron2")
    parser.add_argument("--index-url", default=os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX))
    parser.add_argument("--force", action="store_true", help="reinstall even if detectron2 is present")
    return parser


def main(args: argparse.Namespace) -> int:
    if not args.force and detectron2_installed(args.python):
        print("detectron2 is already installed; use --force to reinstall")
        return 0
    try:
        install(args.sdist, args.python, args.index_url)
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("detectron2 0.6 (Python only) installed; C++ ops are replaced by slowfast_det.detection.compat's stand-in")
    return 0


def cli(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(main, get_args_parser(), argv))


if __name__ == "__main__":
    cli()
