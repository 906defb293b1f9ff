"""The shipped YAML configs, found by name from a checkout or an installed wheel.

``path("AVA/SLOWFAST_32x2_R101_50_50")`` (the ``.yaml`` suffix is optional) is the file's path;
``list_configs()`` names every shipped config. Groups: ``AVA/`` (PySlowFast's AVA model zoo), ``Kinetics/``
(the paper's Table 2 backbones) and ``synth/`` (CPU-sized models for SynthAVA and ``make demo``). Reading a
config is :func:`slowfast_det.config.load_config`'s job; this module only locates files.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from ava_tools.cli import UserError

__all__ = ["CONFIG_ROOT", "list_configs", "path", "resolve"]

CONFIG_ROOT = Path(__file__).resolve().parent


def list_configs() -> list[str]:
    """Names of the shipped configs (``GROUP/NAME`` without ``.yaml``), sorted."""
    return sorted(p.relative_to(CONFIG_ROOT).with_suffix("").as_posix() for p in CONFIG_ROOT.rglob("*.yaml"))


def path(name: str) -> Path:
    """Path of the shipped config ``name`` (e.g. ``"AVA/SLOWFAST_32x2_R101_50_50"``, ``.yaml`` optional).

    Raises:
        UserError: no shipped config has that name (the message lists the closest names).
    """
    rel = name.removesuffix(".yaml")
    candidate = (CONFIG_ROOT / f"{rel}.yaml").resolve()
    if CONFIG_ROOT in candidate.parents and candidate.is_file():
        return candidate
    names = list_configs()
    close = difflib.get_close_matches(rel, names, n=3, cutoff=0.4)
    hint = f"; closest: {', '.join(close)}" if close else f"; shipped configs: {', '.join(names)}"
    raise UserError(f"no shipped config named {name!r}{hint}")


def resolve(spec: str | Path) -> Path:
    """A config given as a file path, or else as a shipped config name (:func:`path`)."""
    p = Path(spec)
    if p.is_file():
        return p
    return path(str(spec))
