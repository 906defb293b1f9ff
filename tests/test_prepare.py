"""Tests of ava_tools.prepare: frame choice, real extraction, resume, failures, frame list format."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ava_tools.prepare import (
    DONE_MARKER,
    extract_frames,
    get_args_parser,
    main,
    prepare,
    select_source_frames,
    write_frame_list,
)
from ava_tools.video_io import VideoDecodeError, write_mp4

# Frames carry their own index as 10 black/white blocks (2 rows x 5 columns of 16x16 px), which survive
# lossy H.264 and JPEG coding untouched.
BLOCK = 16
BITS = 10


def index_frame(index: int) -> np.ndarray:
    """(2*BLOCK, 5*BLOCK, 3) uint8 frame showing ``index`` in binary, bit 0 top-left."""
    img = np.zeros((2 * BLOCK, 5 * BLOCK, 3), np.uint8)
    for bit in range(BITS):
        if (index >> bit) & 1:
            r, c = divmod(bit, 5)
            img[r * BLOCK : (r + 1) * BLOCK, c * BLOCK : (c + 1) * BLOCK] = 255
    return img


def read_index(path: Path) -> int:
    """Decode the index drawn by :func:`index_frame` from a JPEG (centre 8x8 of each block)."""
    img = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    value = 0
    for bit in range(BITS):
        r, c = divmod(bit, 5)
        q = BLOCK // 4
        block = img[r * BLOCK + q : (r + 1) * BLOCK - q, c * BLOCK + q : (c + 1) * BLOCK - q]
        assert block.std() < 20, f"{path}: block {bit} is not flat"
        value |= int(block.mean() > 128) << bit
    return value


def make_index_video(path: Path, n_frames: int, fps: int) -> Path:
    write_mp4(path, (index_frame(i) for i in range(n_frames)), fps=fps, crf=12)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {
        "v30": make_index_video(d / "v30.mp4", 120, 30),  # 4 s
        "v25": make_index_video(d / "v25.mp4", 100, 25),  # 4 s
    }


def files_of(frame_dir: Path) -> list[Path]:
    return sorted(frame_dir.glob("*.jpg"))


# ---------------------------------------------------------------------------------------------------------
# Frame choice (pure)
# ---------------------------------------------------------------------------------------------------------


def nearest_reference(times: list[Fraction], start: Fraction, end: Fraction, fps: int) -> list[int]:
    """Naive loop: per output slot, the cut frame nearest in time, ties to the later frame."""
    cut = [(i, t) for i, t in enumerate(times) if start <= t < end]
    out = []
    for k in range(int((end - start) * fps)):
        slot = start + Fraction(k, fps)
        out.append(min(cut, key=lambda it: (abs(it[1] - slot), -it[0]))[0])
    return out


def last_at_or_before_reference(times: list[Fraction], start: Fraction, end: Fraction, fps: int) -> list[int]:
    out = []
    for k in range(int((end - start) * fps)):
        slot = start + Fraction(k, fps)
        out.append(max(i for i, t in enumerate(times) if start <= t <= slot))
    return out


def test_30fps_is_identity_with_offset() -> None:
    times = [Fraction(i, 30) for i in range(600)]
    got = select_source_frames(times, src_rate=30, start_sec=5.0, end_sec=15.0)
    assert got == list(range(150, 450))
    # same for a file without audio (ffmpeg's vscfr sync)
    assert select_source_frames(times, src_rate=30, start_sec=5, end_sec=15, single_stream=True) == got


def test_ava_default_range_frame_count() -> None:
    # 30 fps AVA-like timeline: 901 s -> 27030 frames, file k = source frame 27000 + k - 1
    times = [Fraction(i, 30) for i in range(899 * 30, 1802 * 30)]  # source frames from 899 s
    got = select_source_frames(times, src_rate=30)
    assert len(got) == 27030
    assert times[got[0]] == 900 and times[got[-1]] == Fraction(1801 * 30 - 1, 30)
    # keyframe second s -> 0-based index (s - 900) * 30 shows source time s
    for s in (902, 1000, 1798):
        assert times[got[(s - 900) * 30]] == s


def test_25fps_pattern_by_hand() -> None:
    times = [Fraction(i, 25) for i in range(150)]
    got = select_source_frames(times, src_rate=25, start_sec=2.0, end_sec=4.0)
    cycle = [0, 1, 2, 3, 3, 4]  # worked out by hand from ffmpeg's CFR thresholds
    expected = [50 + 5 * (k // 6) + cycle[k % 6] for k in range(60)]
    assert got == expected


@pytest.mark.parametrize("rate", [25, 24])
def test_24_25fps_equal_nearest_ties_later(rate: int) -> None:
    times = [Fraction(i, rate) for i in range(rate * 15)]
    got = select_source_frames(times, src_rate=rate, start_sec=3, end_sec=13)
    assert got == nearest_reference(times, Fraction(3), Fraction(13), 30)


def test_15fps_holds_frames() -> None:
    times = [Fraction(i, 15) for i in range(15 * 12)]
    got = select_source_frames(times, src_rate=15, start_sec=1, end_sec=11)
    assert got == last_at_or_before_reference(times, Fraction(1), Fraction(11), 30)


def test_60fps_lags_like_ffmpeg() -> None:
    times = [Fraction(i, 60) for i in range(240)]
    got = select_source_frames(times, src_rate=60, start_sec=0, end_sec=2)
    # by hand: delta = pts - slot + 0.5; frames with delta < -1.1 are dropped
    assert got[:4] == [0, 1, 2, 3]
    assert got[4:60] == [2 * n - 3 for n in range(4, 60)]


def test_start_between_frames_snaps_first_frame() -> None:
    times = [Fraction(i, 30) for i in range(300)]
    # 2.01 s is 0.3 frames after frame 60: the first kept frame is 61 (at +0.7 frame), which pass 1
    # repeats to fill slot 0 when the file has audio, and moves to slot 0 when it has not.
    with_audio = select_source_frames(times, src_rate=30, start_sec=2.01, end_sec=8.01)
    assert with_audio[:4] == [61, 61, 62, 63]
    no_audio = select_source_frames(times, src_rate=30, start_sec=2.01, end_sec=8.01, single_stream=True)
    assert no_audio[:3] == [61, 62, 63]


# ---------------------------------------------------------------------------------------------------------
# Real extraction
# ---------------------------------------------------------------------------------------------------------


def test_extract_30fps_nonzero_start(videos: dict[str, Path], tmp_path: Path) -> None:
    n = extract_frames(videos["v30"], tmp_path, "v30", start_sec=1.0, end_sec=3.0)
    files = files_of(tmp_path / "v30")
    assert n == len(files) == 60
    assert files[0].name == "v30_000001.jpg" and files[-1].name == "v30_000060.jpg"
    # file k (1-based) shows source time 1.0 + (k-1)/30, i.e. source frame 30 + k - 1
    assert [read_index(f) for f in files] == [30 + k for k in range(60)]
    assert (tmp_path / "v30" / DONE_MARKER).is_file()


def test_extract_25fps_nonzero_start(videos: dict[str, Path], tmp_path: Path) -> None:
    n = extract_frames(videos["v25"], tmp_path, "v25", start_sec=1.0, end_sec=3.0, fps=30)
    files = files_of(tmp_path / "v25")
    assert n == len(files) == 60
    cycle = [0, 1, 2, 3, 3, 4]
    assert [read_index(f) for f in files] == [25 + 5 * (k // 6) + cycle[k % 6] for k in range(60)]


def test_extract_to_end_of_video(videos: dict[str, Path], tmp_path: Path) -> None:
    n = extract_frames(videos["v30"], tmp_path, "v30", start_sec=0.0, end_sec=None)
    assert n == 120
    assert [read_index(f) for f in files_of(tmp_path / "v30")][::17] == list(range(0, 120, 17))


def test_resume_skips_done_and_redoes_partial(videos: dict[str, Path], tmp_path: Path) -> None:
    extract_frames(videos["v30"], tmp_path, "v30", start_sec=0.0, end_sec=2.0)
    first = files_of(tmp_path / "v30")[0]
    stamp = first.stat().st_mtime_ns
    # finished: second run does no work
    assert extract_frames(videos["v30"], tmp_path, "v30", start_sec=0.0, end_sec=2.0) == 60
    assert first.stat().st_mtime_ns == stamp
    # partial (no marker, a missing frame, a junk frame): redone completely
    (tmp_path / "v30" / DONE_MARKER).unlink()
    files_of(tmp_path / "v30")[10].unlink()
    (tmp_path / "v30" / "v30_000099.jpg").write_bytes(b"junk")
    assert extract_frames(videos["v30"], tmp_path, "v30", start_sec=0.0, end_sec=2.0) == 60
    files = files_of(tmp_path / "v30")
    assert len(files) == 60 and [read_index(f) for f in files] == list(range(60))
    # other parameters: redone
    assert extract_frames(videos["v30"], tmp_path, "v30", start_sec=1.0, end_sec=2.0) == 30
    assert len(files_of(tmp_path / "v30")) == 30


def test_too_short_keeps_existing_frames_with_a_warning(videos: dict[str, Path], tmp_path: Path) -> None:
    # 4 s video, cut [1, 10): ffmpeg writes the frames that exist; so do we, with a warning, and the frame
    # list agrees with the files
    summary = prepare([videos["v30"]], tmp_path / "f", tmp_path / "l.csv", start_sec=1.0, end_sec=10.0, progress=False)
    assert summary.ok and summary.frames == {"v30": 90}
    (warning,) = summary.warnings["v30"]
    assert "too short" in warning and "90 of 270 frames" in warning
    assert summary.describe().count("too short") == 1  # each message once
    files = files_of(tmp_path / "f" / "v30")
    assert [read_index(f) for f in files] == list(range(30, 120))
    assert len(pd.read_csv(tmp_path / "l.csv", sep=" ")) == 90
    # --strict: today's error, and no orphan JPEGs (nor a temporary folder) left behind
    with pytest.raises(VideoDecodeError, match="too short"):
        extract_frames(videos["v30"], tmp_path / "g", "v30", start_sec=1.0, end_sec=10.0, strict=True)
    assert list((tmp_path / "g").iterdir()) == []
    with pytest.raises(VideoDecodeError, match="no decodable frames"):
        extract_frames(videos["v30"], tmp_path / "g", "v30", start_sec=20.0, end_sec=30.0)
    assert list((tmp_path / "g").iterdir()) == []


def test_prepare_reports_failures_and_continues(videos: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "in"
    bad.mkdir()
    corrupt = bad / "corrupt.mp4"
    data = videos["v30"].read_bytes()
    corrupt.write_bytes(data[: len(data) // 3])  # no moov atom
    text = bad / "notes.mp4"
    text.write_text("this is not a video\n")
    audio_only = bad / "audio.wav"
    _write_wav(audio_only)
    frames = tmp_path / "frames"
    summary = prepare(
        [videos["v30"], corrupt, text, audio_only, videos["v25"]],
        frames,
        tmp_path / "lists" / "train.csv",
        start_sec=0.0,
        end_sec=3.0,
        progress=False,
    )
    assert set(summary.failed) == {str(corrupt), str(text), str(audio_only)}
    assert "no video stream" in summary.failed[str(audio_only)]
    assert summary.frames == {"v30": 90, "v25": 90}
    assert not summary.ok
    df = pd.read_csv(tmp_path / "lists" / "train.csv", sep=" ")
    assert list(df["original_vido_id"].unique()) == ["v30", "v25"]
    # rerun: nothing to do for the good ones
    again = prepare([videos["v30"], videos["v25"]], frames, tmp_path / "l2.csv", start_sec=0, end_sec=3.0)
    assert sorted(again.skipped) == ["v25", "v30"] and again.ok


def _write_wav(path: Path) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(8000, np.int16).tobytes())


def test_prepare_with_worker_processes_and_cli(videos: dict[str, Path], tmp_path: Path) -> None:
    args = get_args_parser().parse_args(
        [
            str(videos["v30"]),
            str(videos["v25"]),
            "--frames",
            str(tmp_path / "frames"),
            "--frame-list",
            str(tmp_path / "val.csv"),
            "--start-sec",
            "1",
            "--end-sec",
            "2",
            "--workers",
            "2",
            "--no-progress",
        ]
    )
    assert main(args) == 0
    assert [read_index(f) for f in files_of(tmp_path / "frames" / "v30")] == list(range(30, 60))
    df = pd.read_csv(tmp_path / "val.csv", sep=" ")
    assert len(df) == 60
    args.videos.append(str(tmp_path / "missing.mp4"))
    assert main(args) == 1


def test_frame_list_format(tmp_path: Path) -> None:
    for vid, n in (("-5KQ66BBWC4", 3), ("vid_b", 2)):
        (tmp_path / vid).mkdir()
        for k in range(1, n + 1):
            (tmp_path / vid / f"{vid}_{k:06d}.jpg").write_bytes(b"x")
    out = write_frame_list(tmp_path, ["-5KQ66BBWC4", "vid_b"], tmp_path / "lists" / "val.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "original_vido_id video_id frame_id path labels"
    assert lines[1] == '-5KQ66BBWC4 0 0 -5KQ66BBWC4/-5KQ66BBWC4_000001.jpg ""'
    assert lines[5] == 'vid_b 1 1 vid_b/vid_b_000002.jpg ""'
    df = pd.read_csv(out, sep=" ")
    assert list(df.columns) == ["original_vido_id", "video_id", "frame_id", "path", "labels"]
    assert df["frame_id"].tolist() == [0, 1, 2, 0, 1] and df["video_id"].tolist() == [0, 0, 0, 1, 1]
    assert df["labels"].isna().all()  # "" parses as empty
    # PySlowFast's reader: header skipped, 5 whitespace-separated fields per row
    assert all(len(line.split()) == 5 for line in lines[1:])
    # a gap in the numbering is refused, naming the folder
    (tmp_path / "vid_b" / "vid_b_000001.jpg").unlink()
    with pytest.raises(ValueError, match="vid_b.*without gaps"):
        write_frame_list(tmp_path, ["vid_b"], tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="nope"):
        write_frame_list(tmp_path, ["nope"], tmp_path / "x.csv")


def test_real_29_97fps_video(carphone_mp4: Path, tmp_path: Path) -> None:
    """A third-party 30000/1001 fps file: each JPEG is the source frame the ffmpeg emulation picks."""
    from ava_tools.video_io import decode_rgb_frames

    source = list(decode_rgb_frames(carphone_mp4))
    times = [t for t, _ in source]
    n = extract_frames(carphone_mp4, tmp_path, "carphone", start_sec=1.0, end_sec=3.0)
    assert n == 60
    picked = select_source_frames(
        times, src_rate=Fraction(30000, 1001), start_sec=1.0, end_sec=3.0, single_stream=True
    )
    assert len(picked) == n
    for k, f in enumerate(files_of(tmp_path / "carphone")):
        jpeg = np.asarray(Image.open(f).convert("RGB")).astype(np.int16)
        near = range(max(0, picked[k] - 3), min(len(source), picked[k] + 4))
        errors = {i: np.abs(jpeg - source[i][1]).mean() for i in near}
        assert min(errors, key=errors.__getitem__) == picked[k], (k, errors)
