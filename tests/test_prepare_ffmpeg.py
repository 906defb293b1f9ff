"""ava_tools.prepare against real ffmpeg binaries.

* The built-in frame choice equals Debian 12's ffmpeg 5.1 on generated frame-index-coded videos (rates x
  audio x start x end x variable frame rate), and its JPEGs equal 5.1's pixels on a real video. These
  tests need ffmpeg 5.1 on PATH (``apt-get install -y ffmpeg`` on Debian 12; ``.ci/run`` does it) and skip
  without it.
* The real-ffmpeg backend runs the imageio-ffmpeg wheel's binary (test extra), so it runs offline anywhere.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from ffmpeg_cases import (
    builtin_choice,
    cfr_times,
    jittered_times,
    read_index,
    run_pyslowfast_commands,
    write_index_video,
)
from PIL import Image

from ava_tools.prepare import DONE_MARKER, extract_frames, get_args_parser, main, prepare
from ava_tools.prepare.extract import BUILTIN_BACKEND
from ava_tools.prepare.ffmpeg import FfmpegBinary, find_ffmpeg
from ava_tools.video_io import VideoDecodeError


def _ffmpeg_51() -> str | None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, check=False).stdout
    return exe if out.startswith("ffmpeg version 5.1") else None


FFMPEG_51 = _ffmpeg_51()
needs_51 = pytest.mark.skipif(
    FFMPEG_51 is None,
    reason="needs ffmpeg 5.1 on PATH (Debian 12: `apt-get install -y ffmpeg`; .ci/run installs it)",
)


@pytest.fixture(scope="module")
def wheel_ffmpeg() -> FfmpegBinary:
    """The imageio-ffmpeg wheel's binary (test extra)."""
    try:
        from imageio_ffmpeg import get_ffmpeg_exe
    except ImportError:
        pytest.skip("imageio-ffmpeg (test extra: pip install -e .[test]) is not installed")
    binary = find_ffmpeg(get_ffmpeg_exe())
    assert binary is not None
    return binary


# (name, rate, audio, suffix, variable frame rate, cuts as (start, duration))
# The cuts cover: on a frame boundary; the first kept frame after the start (-t then counts from it, and a
# video-only cut.mp4 gets a start offset); an exact half-way time (ffmpeg's 2^-17 nudge); to the end.
CASES = [
    ("r30", Fraction(30), False, ".mp4", False, [(1.0, 2.0), (2.01, 1.5)]),
    ("r30a", Fraction(30), True, ".mp4", False, [(0.99, 2.0)]),
    ("r25", Fraction(25), False, ".mp4", False, [(3.3, 1.5), (2.01, 1.5), (1.5, 2.0)]),
    ("r25a", Fraction(25), True, ".mp4", False, [(3.3, 1.5), (2.01, 1.5)]),
    ("r24", Fraction(24), False, ".mp4", False, [(2.01, 1.5), (0.99, 2.2)]),
    ("r2997a", Fraction(30000, 1001), True, ".mp4", False, [(2.01, 1.5), (1.0, 1.0)]),
    ("r2997", Fraction(30000, 1001), False, ".mp4", False, [(2.01, 1.5)]),
    ("r23976", Fraction(24000, 1001), False, ".mp4", False, [(2.01, 1.5), (3.3, 1.0)]),
    ("r23976a", Fraction(24000, 1001), True, ".mp4", False, [(2.01, 1.5)]),
    ("r15", Fraction(15), False, ".mp4", False, [(3.3, 1.5), (1.5, 1.0)]),
    ("r60a", Fraction(60), True, ".mp4", False, [(0.99, 1.5), (2.01, 1.0)]),
    ("r50", Fraction(50), False, ".mp4", False, [(2.01, 1.5)]),
    ("r12", Fraction(12), False, ".mp4", False, [(1.0, 2.0)]),
    ("r20a", Fraction(20), True, ".mp4", False, [(2.01, 1.5)]),
    ("vfr_mp4", Fraction(25), False, ".mp4", True, [(1.0, 2.0), (2.01, 1.5)]),
    ("vfr_mp4a", Fraction(25), True, ".mp4", True, [(3.3, 1.5)]),
    ("vfr_mkv", Fraction(25), False, ".mkv", True, [(1.5, 2.0)]),
    ("vfr_mkva", Fraction(25), True, ".mkv", True, [(0.0, 2.0), (2.01, 1.5), (4.0, None)]),
]


@needs_51
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_builtin_frame_choice_equals_ffmpeg_51(case: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    name, rate, audio, suffix, vfr, cuts = case
    n = int(5 * rate)  # 5 s of video
    if vfr:
        time_base = Fraction(1, 1000) if suffix == ".mkv" else Fraction(1, 90000)
        times = jittered_times(n, rate, time_base, seed=len(name))
    else:
        time_base, times = 1 / rate, cfr_times(n, rate)
    src = write_index_video(tmp_path / f"{name}{suffix}", times, rate=rate, time_base=time_base, audio=audio)
    for start, duration in cuts:
        assert FFMPEG_51 is not None
        real = run_pyslowfast_commands(FFMPEG_51, src, tmp_path / "run", start=start, duration=duration)
        ours = builtin_choice(src, start, duration)
        assert ours == real.indices, (start, duration, len(ours), len(real.indices))


@needs_51
def test_builtin_jpegs_equal_ffmpeg_51_pixels(bikes_mp4: Path, tmp_path: Path) -> None:
    """The JPEG stage: for the same decoded frames (ffmpeg's cut.mp4 of a third-party 25 fps file), the
    built-in JPEGs decode to exactly the pixels of 5.1's ``-r 30 -q:v 1`` JPEGs (Pillow's were ~46 dB away).

    End to end the pixels still differ: ffmpeg re-encodes cut.mp4 (libx264, default quality), which the
    built-in path does not (see tests/benchmarks/bench_prepare_ffmpeg.py for the PSNR).
    """
    assert FFMPEG_51 is not None
    cut = tmp_path / "cut.mp4"
    quiet = [FFMPEG_51, "-nostdin", "-y", "-loglevel", "error"]
    subprocess.run([*quiet, "-ss", "1", "-t", "1.5", "-i", str(bikes_mp4), str(cut)], check=True)
    (tmp_path / "real").mkdir()
    jpg = str(tmp_path / "real" / "%06d.jpg")
    subprocess.run([*quiet, "-i", str(cut), "-r", "30", "-q:v", "1", jpg], check=True)
    n = extract_frames(cut, tmp_path / "builtin", "cut", start_sec=0.0, end_sec=None)
    real = sorted((tmp_path / "real").glob("*.jpg"))
    assert n == len(real) == 45
    for k, b in enumerate(real):
        a = tmp_path / "builtin" / "cut" / f"cut_{k + 1:06d}.jpg"
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a.name


@needs_51
def test_short_source_gives_what_ffmpeg_gives(tmp_path: Path) -> None:
    src = write_index_video(
        tmp_path / "short.mp4", cfr_times(60, Fraction(25)), rate=Fraction(25), time_base=Fraction(1, 25), audio=True
    )
    assert FFMPEG_51 is not None
    real = run_pyslowfast_commands(FFMPEG_51, src, tmp_path / "run", start=1.0, duration=5.0)
    summary = prepare([src], tmp_path / "f", tmp_path / "l.csv", start_sec=1.0, end_sec=6.0, progress=False)
    files = sorted((tmp_path / "f" / "short").glob("*.jpg"))
    assert [read_index(f) for f in files] == real.indices
    assert summary.frames == {"short": len(real.indices)} and "too short" in summary.warnings["short"][0]


def test_real_ffmpeg_backend(wheel_ffmpeg: FfmpegBinary, tmp_path: Path) -> None:
    src = write_index_video(
        tmp_path / "v30.mp4", cfr_times(90, Fraction(30)), rate=Fraction(30), time_base=Fraction(1, 30), audio=False
    )
    frames = tmp_path / "frames"
    summary = prepare(
        [src], frames, tmp_path / "list.csv", start_sec=1.0, end_sec=2.0, ffmpeg=wheel_ffmpeg, progress=False
    )
    assert summary.ok and summary.frames == {"v30": 30}
    files = sorted((frames / "v30").glob("*.jpg"))
    assert [f.name for f in files] == [f"v30_{k:06d}.jpg" for k in range(1, 31)]
    assert [read_index(f) for f in files] == list(range(30, 60))
    marker = json.loads((frames / "v30" / DONE_MARKER).read_text())
    assert marker["backend"] == "ffmpeg" and marker["ffmpeg_version"] == wheel_ffmpeg.version_line
    assert marker["ffmpeg_build"] == wheel_ffmpeg.build_line and "built with" in marker["ffmpeg_build"]
    text = summary.describe()
    assert wheel_ffmpeg.version in text and "ffmpeg build: built with" in text
    # temporary files (cut.mp4, the temporary folder) are gone
    assert sorted(p.name for p in frames.iterdir()) == ["v30"]
    assert sorted(p.name for p in (frames / "v30").iterdir()) == [DONE_MARKER] + [f.name for f in files]
    # the same parameters with the built-in backend redo the video (the backend is in the marker)
    again = prepare([src], frames, tmp_path / "list.csv", start_sec=1.0, end_sec=2.0, progress=False)
    assert again.skipped == [] and again.backend == BUILTIN_BACKEND
    assert json.loads((frames / "v30" / DONE_MARKER).read_text())["backend"] == BUILTIN_BACKEND


def test_real_ffmpeg_failure_leaves_nothing(wheel_ffmpeg: FfmpegBinary, tmp_path: Path) -> None:
    src = write_index_video(
        tmp_path / "v.mp4", cfr_times(60, Fraction(30)), rate=Fraction(30), time_base=Fraction(1, 30), audio=False
    )
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(src.read_bytes()[:2000])
    frames = tmp_path / "frames"
    summary = prepare([broken], frames, None, start_sec=0.0, end_sec=1.0, ffmpeg=wheel_ffmpeg, progress=False)
    assert list(summary.failed) == [str(broken)] and "ffmpeg" in summary.failed[str(broken)]
    assert summary.describe().count("ffmpeg cut failed") == 1
    assert list(frames.iterdir()) == []
    # short source with the real ffmpeg: the frames that exist, one warning; --strict: an error, no files
    ok = prepare([src], frames, None, start_sec=1.0, end_sec=5.0, ffmpeg=wheel_ffmpeg, progress=False)
    assert ok.frames["v"] in (30, 31) and "too short" in ok.warnings["v"][0]
    with pytest.raises(VideoDecodeError, match="too short"):
        extract_frames(src, tmp_path / "strict", "v", start_sec=1.0, end_sec=5.0, ffmpeg=wheel_ffmpeg, strict=True)
    assert list((tmp_path / "strict").iterdir()) == []


def test_cli_ffmpeg_option(wheel_ffmpeg: FfmpegBinary, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_index_video(
        tmp_path / "v.mp4", cfr_times(60, Fraction(30)), rate=Fraction(30), time_base=Fraction(1, 30), audio=False
    )
    base = [
        str(src),
        "--frames",
        str(tmp_path / "f"),
        "--frame-list",
        str(tmp_path / "l.csv"),
        "--start-sec",
        "0",
        "--end-sec",
        "1",
        "--no-progress",
    ]
    assert get_args_parser().parse_args(base).ffmpeg == "auto"
    assert main(get_args_parser().parse_args([*base, "--ffmpeg", wheel_ffmpeg.path])) == 0
    assert wheel_ffmpeg.version in capsys.readouterr().out
    assert main(get_args_parser().parse_args([*base, "--ffmpeg", "none"])) == 0
    assert BUILTIN_BACKEND in capsys.readouterr().out
    proc = subprocess.run(
        [*_python_module("ava_tools.prepare"), *base, "--ffmpeg", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "nope: no such executable" in proc.stderr


def _python_module(name: str) -> list[str]:
    import sys

    return [sys.executable, "-m", name]
