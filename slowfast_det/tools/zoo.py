"""The model zoo from the command line (``slowfast-zoo``): list the models, download them, verify the cache.

Examples::

    slowfast-zoo list                                   # name, kind, AVA version, mAP, GFLOPs, size, cached
    slowfast-zoo download SLOWFAST_32x2_R101_50_50 COCO-Detection/faster_rcnn_R_50_FPN_3x
    slowfast-zoo download --all --cache-dir /shared/weights
    slowfast-zoo verify                                 # re-hash every file recorded in the cache

Environment: ``SLOWFAST_DET_CACHE`` (cache folder), ``SLOWFAST_DET_ZOO_URL`` (mirror of
https://dl.fbaipublicfiles.com/ with the same relative paths), ``SLOWFAST_DET_ZOO_FILE`` (JSON that adds or
changes entries), ``SLOWFAST_DET_OFFLINE=1`` (cache only).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ava_tools.cli import add_common_arguments, run_cli

__all__ = ["cli", "get_args_parser", "main"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slowfast-zoo", description=__doc__.splitlines()[0], allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1],
    )
    add_common_arguments(parser)
    parser.add_argument("--cache-dir", default=None,
                        help="download cache (default $SLOWFAST_DET_CACHE or ~/.cache/slowfast_det/weights)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = sub.add_parser("list", help="the zoo's models")
    ls.add_argument("--kind", choices=("action", "pretrain", "detector"), default=None, help="only this kind")
    dl = sub.add_parser("download", help="download models into the cache (each once; verified)")
    dl.add_argument("names", nargs="*", metavar="NAME", help="zoo model names (slowfast-zoo list)")
    dl.add_argument("--all", action="store_true", help="every model of the zoo")
    dl.add_argument("--force", action="store_true",
                    help="forget the cached file and its recorded sha256 first, then download it again")
    dl.add_argument("--offline", action="store_true", help="only check that the files are cached and unchanged")
    sub.add_parser("verify", help="re-hash every cached file against the sha256 recorded at its first download")
    return parser


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def _list(args: argparse.Namespace) -> int:
    import pandas as pd

    from slowfast_det.checkpoint.cache import is_cached
    from slowfast_det.model_zoo import all_entries

    rows = []
    for e in all_entries():
        if args.kind is not None and e.kind != args.kind:
            continue
        cached = is_cached(e.url, args.cache_dir) if "://" in e.url else None
        size = cached.stat().st_size if cached is not None else e.size
        rows.append({
            "name": e.name, "kind": e.kind, "AVA": e.ava_version or "-",
            "mAP": f"{e.map:.1f}" if e.map is not None else "-",
            "GFLOPs": f"{e.gflops:.1f}" if e.gflops is not None else "-",
            "size": _size(size), "cached": "yes" if cached is not None else "no",
        })
    table = pd.DataFrame(rows)
    widths = {c: max(len(c), *(len(v) for v in table[c])) if len(table) else len(c) for c in table.columns}
    print("  ".join(c.ljust(widths[c]) for c in table.columns).rstrip())
    for _, row in table.iterrows():
        print("  ".join(str(row[c]).ljust(widths[c]) for c in table.columns).rstrip())
    return 0


def _download(args: argparse.Namespace) -> int:
    from pathlib import Path

    from slowfast_det.checkpoint.cache import default_cache_dir, forget, read_cache_lock
    from slowfast_det.model_zoo import ZooError, all_entries, get_entry, weights_path

    if args.all == bool(args.names):
        raise ZooError("name the models to download (slowfast-zoo list), or pass --all and no names")
    entries = all_entries() if args.all else [get_entry(n) for n in args.names]
    root = Path(args.cache_dir) if args.cache_dir is not None else default_cache_dir()
    for entry in entries:
        if args.force and "://" in entry.url:
            forget(entry.url, root)
        path = weights_path(entry, cache_dir=root, offline=args.offline or None, progress=not args.no_progress)
        record = read_cache_lock(root).get(path.relative_to(root).as_posix()) if root in path.parents else None
        how = "pinned" if entry.sha256 else "recorded"
        sha = f"sha256 {record['sha256']} {how}" if record else "local file"
        print(f"{entry.name}: {path} ({sha})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from slowfast_det.checkpoint.cache import cache_lock_path, verify_cache

    checks = verify_cache(args.cache_dir, progress=not args.no_progress)
    if not checks:
        print(f"nothing recorded in {cache_lock_path(args.cache_dir)}")
        return 0
    for c in checks:
        detail = {"ok": "", "missing": " (recorded, but the file is gone)",
                  "changed": f" (sha256 {c.sha256}, recorded {c.recorded_sha256})"}[c.status]
        print(f"{c.status.upper():8s}{c.path}{detail}")
    bad = sum(c.status != "ok" for c in checks)
    print(f"{len(checks)} files, {bad} changed or missing")
    if any(c.status == "changed" for c in checks):
        print("a changed file is refused on its next use: `slowfast-zoo download --force NAME` fetches it again",
              file=sys.stderr)
    return 1 if bad else 0


def main(args: argparse.Namespace) -> int:
    """Run one ``slowfast-zoo`` command; returns the exit status (verify: 1 if a file changed or is missing)."""
    return {"list": _list, "download": _download, "verify": _verify}[args.command](args)


def cli(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_cli(main, get_args_parser(), argv))


if __name__ == "__main__":
    cli()
