"""Every console script in the installed package's metadata answers ``--help`` and ``--version``; user errors
print one line (no traceback) and exit 2, ``--debug`` shows the traceback."""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _console_scripts() -> list[md.EntryPoint]:
    try:
        dist = md.distribution("slowfast_det")
    except md.PackageNotFoundError:
        pytest.skip("slowfast_det is not installed (pip install -e .)")
    eps = [ep for ep in dist.entry_points if ep.group == "console_scripts"]
    assert eps, "the installed slowfast_det declares no console scripts"
    return sorted(eps, key=lambda ep: ep.name)


def _executable(name: str) -> str:
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"console script {name!r} is declared but not installed next to {sys.executable}")
    return found


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = "default"
    return env


def _script_names() -> list[str]:
    try:
        dist = md.distribution("slowfast_det")
    except md.PackageNotFoundError:
        return []
    return sorted(ep.name for ep in dist.entry_points if ep.group == "console_scripts")


SCRIPTS = _script_names()


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_and_version(name: str) -> None:
    exe = _executable(name)
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 0, f"{name} --help failed:\n{r.stderr}"
    assert "usage:" in r.stdout
    assert "--version" in r.stdout and "--debug" in r.stdout
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"slowfast_det {md.version('slowfast_det')}"


def test_every_entry_point_resolves() -> None:
    """Each ``module:function`` target imports and is callable (the ava-prepare/ava-synth ImportError)."""
    for ep in _console_scripts():
        target = ep.load()
        assert callable(target), ep


def test_user_error_is_one_line_and_debug_shows_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    exe = _executable("slowfast-test")
    r = subprocess.run([exe, "--cfg", str(missing)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert str(missing) in r.stderr
    r = subprocess.run([exe, "--debug", "--cfg", str(missing)], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "Traceback" in r.stderr
