"""The real-ffmpeg backend: PySlowFast's two ffmpeg commands, run as they are.

::

    ffmpeg -ss START -t DURATION -i SRC cut.mp4                      # default encoder settings
    ffmpeg -i cut.mp4 -r 30 -q:v 1 FRAMES/{vid}/{vid}_%06d.jpg

(plus ``-nostdin -y -loglevel error``, which change no frame). The binary is ``--ffmpeg PATH``, else the
``ffmpeg`` on ``PATH``, else the one inside the ``imageio-ffmpeg`` wheel (``pip install
slowfast_det[ffmpeg]``; it is never downloaded at run time). The build changes which frames come out
(PySlowFast issue #112; see :data:`ava_tools.prepare.framechoice.FFMPEG_9_DIFFERENCES`), so its version
and build lines are recorded in every done marker and in the summary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ava_tools.cli import UserError
from ava_tools.video_io import VideoDecodeError

__all__ = ["FfmpegBinary", "find_ffmpeg", "run_pyslowfast_commands"]


@dataclass(frozen=True)
class FfmpegBinary:
    """An ffmpeg executable and what it says about itself.

    Attributes:
        path: the executable.
        version: the version string, e.g. ``5.1.9-0+deb12u1`` or ``n9.0.2-17-g2a571b6068-20260930``.
        version_line: the first line of ``ffmpeg -version``.
        build_line: the ``built with ...`` line (compiler) and the ``configuration:`` line, joined by ``; ``.
        source: where it was found: ``--ffmpeg``, ``PATH`` or ``imageio-ffmpeg``.
    """

    path: str
    version: str
    version_line: str
    build_line: str
    source: str

    def describe(self) -> str:
        """One line for summaries: version, path and source."""
        return f"ffmpeg {self.version} ({self.path}, from {self.source})"


def _inspect(path: str, source: str) -> FfmpegBinary:
    """Run ``path -version``; raises UserError when it does not run or is not ffmpeg."""
    try:
        proc = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        raise UserError(f"--ffmpeg {path}: cannot run it ({exc}); expected an ffmpeg executable") from exc
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or not lines or not lines[0].startswith("ffmpeg version "):
        raise UserError(f"--ffmpeg {path}: `{path} -version` does not identify an ffmpeg executable")
    version = lines[0].split()[2]
    build = [ln.strip() for ln in lines[1:3] if ln.startswith(("built with", "configuration:"))]
    return FfmpegBinary(path, version, lines[0], "; ".join(build), source)


def _imageio_ffmpeg_exe() -> str | None:
    """The binary inside the imageio-ffmpeg wheel, or None (not installed, or no binary in it: no download)."""
    try:
        from imageio_ffmpeg import get_ffmpeg_exe
    except ImportError:
        return None
    try:
        exe = str(get_ffmpeg_exe())
    except RuntimeError:
        return None
    return exe if os.path.isfile(exe) else None


def find_ffmpeg(choice: str) -> FfmpegBinary | None:
    """The ffmpeg to use for ``--ffmpeg choice``: ``none`` -> None; ``auto`` -> PATH, then imageio-ffmpeg,
    else None; anything else is a path (or a name on PATH) that must be a working ffmpeg.

    Raises:
        UserError: ``choice`` is a path that is not a working ffmpeg.
    """
    if choice == "none":
        return None
    if choice == "auto":
        on_path = shutil.which("ffmpeg")
        if on_path is not None:
            return _inspect(on_path, "PATH")
        wheel = _imageio_ffmpeg_exe()
        return None if wheel is None else _inspect(wheel, "imageio-ffmpeg")
    found = shutil.which(choice) or (choice if os.path.isfile(choice) else None)
    if found is None:
        raise UserError(f"--ffmpeg {choice}: no such executable (expected auto, none or the path of ffmpeg)")
    return _inspect(found, "--ffmpeg")


def _seconds_arg(x: float) -> str:
    """A time for ffmpeg's command line: plain decimal, exactly the value given (900.0 -> '900')."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _run(cmd: list[str], what: str, video_path: Path) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = list(dict.fromkeys(ln.strip() for ln in proc.stderr.splitlines() if ln.strip()))
        detail = " | ".join(lines[:3]) if lines else f"exit status {proc.returncode}"
        raise VideoDecodeError(f"{video_path}: ffmpeg {what} failed: {detail}")


def run_pyslowfast_commands(
    ffmpeg: FfmpegBinary,
    video_path: Path,
    out_dir: Path,
    video_id: str,
    *,
    start_sec: float,
    end_sec: float | None,
    fps: float,
    qscale: int = 1,
) -> int:
    """Write ``out_dir/{video_id}_%06d.jpg`` with PySlowFast's two commands; returns the number of JPEGs.

    ``cut.mp4`` is a temporary file inside ``out_dir`` (removed afterwards). ``end_sec=None`` gives no
    ``-t``.

    Raises:
        VideoDecodeError: either command failed (its first error lines are in the message).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cut = out_dir / "cut.mp4"
    quiet = [ffmpeg.path, "-nostdin", "-y", "-loglevel", "error"]
    cmd1 = [*quiet, "-ss", _seconds_arg(start_sec)]
    if end_sec is not None:
        cmd1 += ["-t", _seconds_arg(end_sec - start_sec)]
    try:
        _run([*cmd1, "-i", str(video_path), str(cut)], "cut", video_path)
        pattern = out_dir / f"{video_id.replace('%', '%%')}_%06d.jpg"
        _run(
            [*quiet, "-i", str(cut), "-r", _seconds_arg(fps), "-q:v", str(qscale), str(pattern)],
            "frame extraction",
            video_path,
        )
    finally:
        cut.unlink(missing_ok=True)
    return sum(1 for p in out_dir.iterdir() if p.name.startswith(f"{video_id}_") and p.suffix == ".jpg")
