"""Install detectron2 v0.6 without its C++ extension (``slowfast-install-detectron2``); see
:mod:`slowfast_det.detection.install` for what it does and why.

Example::

    slowfast-install-detectron2            # from the package index, sha256-checked
    slowfast-install-detectron2 --sdist pb1-detectron2-0.6.tar.gz --force
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ava_tools.cli import add_common_arguments, run_cli
from slowfast_det.detection.install import (
    DEFAULT_INDEX,
    InstallError,
    install,
    installed_detectron2,
    needs_upgrade,
)
from slowfast_det.detection.install import __doc__ as install_doc

__all__ = ["cli", "get_args_parser", "main"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=install_doc.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--sdist", type=Path, default=None, help="local pb1-detectron2-0.6.tar.gz (offline)")
    parser.add_argument("--python", default=sys.executable, help="interpreter whose environment gets detectron2")
    parser.add_argument("--index-url", default=os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX))
    parser.add_argument("--target", type=Path, default=None,
                        help="install into this folder (pip --target) instead of the interpreter's environment")
    parser.add_argument("--force", action="store_true", help="reinstall even if detectron2 is present")
    return parser


def main(args: argparse.Namespace) -> int:
    try:
        if not args.force and args.target is None:
            found = installed_detectron2(args.python)
            if found is not None and not needs_upgrade(found):
                print(f"detectron2 {found['version']} is already installed; use --force to reinstall")
                return 0
            if found is not None:
                print("detectron2 0.6 was installed by an older version of this script (no stand-in detectron2/_C.py "
                      "or an older one, Pillow fix missing): upgrading it")
        where = install(args.sdist, args.python, args.index_url, target=args.target)
    except InstallError:
        raise  # a user error: run_cli prints it as one line (exit 2)
    print(f"detectron2 0.6 (Python only, pure-Python stand-in for its C++ ops) installed and importable: {where}")
    return 0


def cli(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(main, get_args_parser(), argv))


if __name__ == "__main__":
    cli()
