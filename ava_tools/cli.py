"""What every console script of this project shares: ``--version``, ``--debug`` and user-error reporting.

A *user error* is a problem with the input a person gave (a bad config or CSV row, a missing or corrupt file, a
checkpoint that doesn't fit, a device that isn't there). It prints one line, ``PROG: error: MESSAGE``, and exits
with status 2; ``--debug`` shows the traceback instead. Anything else is a bug and keeps its traceback.

Library code raises :class:`UserError` (or a subclass) for user errors. ``OSError`` subclasses that name a path
(missing file, permission denied, is-a-directory, disk full) count as user errors too. Torch is never imported
here, so ``ava_tools`` stays usable without it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

__all__ = ["UserError", "add_common_arguments", "is_user_error", "run_cli", "version_string"]

USER_ERROR_EXIT = 2


class UserError(Exception):
    """A problem with the user's input; the message names the file, line or value and what was expected."""


def version_string() -> str:
    """``slowfast_det X.Y.Z`` from the installed package metadata (``unknown`` in a bare checkout)."""
    try:
        return f"slowfast_det {metadata.version('slowfast_det')}"
    except metadata.PackageNotFoundError:
        return "slowfast_det (not installed)"


def add_common_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--version`` and ``--debug`` to ``parser`` (returned for chaining)."""
    parser.add_argument("--version", action="version", version=version_string())
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def is_user_error(exc: BaseException) -> bool:
    """True for :class:`UserError` and for OS errors about a named file (not for bugs)."""
    if isinstance(exc, UserError):
        return True
    if isinstance(exc, OSError) and getattr(exc, "filename", None) is not None:
        return True
    return isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError))


def run_cli(
    main: Callable[[argparse.Namespace], int | None],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    *,
    cleanup: Callable[[], None] | None = None,
) -> int:
    """Parse ``argv``, run ``main`` and turn a user error into one line on stderr and exit status 2.

    Returns the exit status (``main``'s return value, 0 for ``None``); the console-script wrappers pass it to
    ``sys.exit``. ``cleanup`` runs however ``main`` ends (e.g. closing a torchrun process group).
    """
    args = parser.parse_args(argv)
    try:
        return int(main(args) or 0)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - only user errors are reported briefly, the rest re-raised
        if getattr(args, "debug", False) or not is_user_error(exc):
            raise
        print(f"{parser.prog}: error: {_one_line(exc)}", file=sys.stderr)
        print(f"{parser.prog}: (run with --debug for the traceback)", file=sys.stderr)
        return USER_ERROR_EXIT
    finally:
        if cleanup is not None:
            cleanup()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc).strip() or type(exc).__name__
