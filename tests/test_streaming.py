"""Streaming clip sampling: frames are taken at the right times (CFR 30/25 fps, VFR), memory stays bounded,
damaged files give clear errors. Synthetic videos carry their frame index as big black/white blocks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from slowfast_det.video.probe import VideoDecodeError, probe_video
from slowfast_det.video.stream import ClipStream, clip_offsets, displayed_frame_index

BITS = 10  # frame indices up to 1023
GRID = (2, 5)  # block rows x cols holding the bits, most significant first


def index_image(index: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame whose 2x5 blocks spell ``index`` in binary (white = 1)."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rows, cols = GRID
    for bit in range(BITS):
        r, c = divmod(bit, cols)
        if (index >> (BITS - 1 - bit)) & 1:
            rgb[r * height // rows : (r + 1) * height // rows, c * width // cols : (c + 1) * width // cols] = 255
    return rgb


def read_index(image: np.ndarray) -> int:
    """Inverse of :func:`index_image` on any resized, colour-converted, lossy copy (block centres)."""
    height, width = image.shape[:2]
    rows, cols = GRID
    value = 0
    for bit in range(BITS):
        r, c = divmod(bit, cols)
        y0, y1 = r * height // rows, (r + 1) * height // rows
        x0, x1 = c * width // cols, (c + 1) * width // cols
        centre = image[y0 + (y1 - y0) // 4 : y1 - (y1 - y0) // 4, x0 + (x1 - x0) // 4 : x1 - (x1 - x0) // 4]
        value = (value << 1) | int(centre.mean() > 127)
    return value


def write_index_video(
    path: Path,
    times: Sequence[Fraction],
    *,
    width: int = 160,
    height: int = 96,
    time_base: Fraction = Fraction(1, 30000),
    rotation: int = 0,
    faststart: bool = False,
    keyint: int = 250,
    image=index_image,
) -> Path:
    """H.264 MP4 whose frame i is shown at ``times[i]`` seconds (any, e.g. variable, frame rate)."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        stream.options = {
            "crf": "10",
            "preset": "ultrafast",
            "threads": "1",
            "x264-params": f"keyint={keyint}",
        }
        if rotation:
            stream.set_display_rotation(rotation)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(image(i, width, height), format="rgb24")
            frame.pts = int(t / time_base)
            assert frame.pts * time_base == t, "times must be multiples of the time base"
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def cfr_times(n: int, fps: Fraction) -> list[Fraction]:
    return [i / fps for i in range(n)]


def _reference_indices(frame_times: list[Fraction], needed: list[Fraction]) -> list[int]:
    """Naive loop: the last frame whose time <= t; before the first frame: frame 0."""
    out = []
    for t in needed:
        best = 0
        for i, ft in enumerate(frame_times):
            if ft <= t:
                best = i
        out.append(best)
    return out


def _collect(path: Path, **kwargs) -> tuple[ClipStream, list]:
    stream = ClipStream(path, **kwargs)
    return stream, list(stream)


def test_30fps_equals_pyslowfast_index_rule(tmp_path: Path) -> None:
    """At 30 fps the clip around second s is PySlowFast's clamped range(c - T*r/2, c + T*r/2, r), c = 30 s."""
    n = 100  # 3.33 s: the first and last clips run over both ends and clamp
    video = write_index_video(tmp_path / "cfr30.mp4", cfr_times(n, Fraction(30)))
    stream, clips = _collect(video, num_frames=8, sampling_rate=4, stride=1)
    assert [c.time for c in clips] == [0, 1, 2, 3]
    for clip in clips:
        centre = int(clip.time * 30)
        expected = [min(max(i, 0), n - 1) for i in range(centre - 16, centre + 16, 4)]
        assert [read_index(f) for f in clip.frames] == expected
        assert [int(t * 30) for t in clip.frame_times] == expected
        assert read_index(clip.keyframe) == centre == expected[4]  # keyframe = element T/2
    assert stream.frames_converted <= stream.frames_decoded == n


@pytest.mark.parametrize(
    "name, times",
    [
        ("cfr25", cfr_times(80, Fraction(25))),
        ("ntsc", cfr_times(95, Fraction(30000, 1001))),
        # variable frame rate: bursts, gaps and a long hold, all on the 1/1000 s grid
        ("vfr", [Fraction(int(ms), 1000) for ms in np.cumsum([0] + [7, 33, 90, 12, 41, 250, 5, 66, 33] * 9)]),
    ],
)
def test_clip_frames_are_the_frames_displayed_at_each_time(tmp_path: Path, name: str, times: list[Fraction]) -> None:
    tb = Fraction(1, 30000) if name != "vfr" else Fraction(1, 1000)
    video = write_index_video(tmp_path / f"{name}.mp4", times, time_base=tb)
    stride = Fraction(1, 2)
    stream, clips = _collect(video, num_frames=6, sampling_rate=3, stride="0.5", start="0.25")
    # one clip per stride step from start to the last frame
    expected_count = math.floor((times[-1] - Fraction(1, 4)) / stride) + 1
    assert [c.time for c in clips] == [Fraction(1, 4) + k * stride for k in range(expected_count)]
    offsets = clip_offsets(6, 3)
    assert offsets == [Fraction(3 * j - 9, 30) for j in range(6)]
    for clip in clips:
        needed = [clip.time + o for o in offsets]
        expected = _reference_indices(times, needed)
        assert [read_index(f) for f in clip.frames] == expected, clip.time
        assert clip.frame_times == [times[i] for i in expected]
        assert read_index(clip.keyframe) == _reference_indices(times, [clip.time])[0]
        assert [displayed_frame_index(times, t) for t in needed] == expected


def test_start_end_and_transform(tmp_path: Path) -> None:
    times = cfr_times(150, Fraction(30))  # 5 s
    video = write_index_video(tmp_path / "v.mp4", times, width=176, height=144)
    calls = []

    def halve(bgr: np.ndarray) -> np.ndarray:
        calls.append(bgr.shape)
        return bgr[::2, ::2]

    stream, clips = _collect(video, num_frames=4, sampling_rate=2, stride=1, start=1, end="3.5", frame_transform=halve)
    assert [c.time for c in clips] == [1, 2, 3]
    assert all(f.shape == (72, 88, 3) for c in clips for f in c.frames)
    assert clips[0].keyframe.shape == (144, 176, 3)
    assert len(calls) == len({t for c in clips for t in c.frame_times})  # each frame transformed once
    assert stream.frames_decoded < 150  # decoding stops once the last clip (3 s + 4/30 s) is complete


def test_late_start_seeks_and_takes_the_same_frames(tmp_path: Path) -> None:
    times = cfr_times(300, Fraction(30))  # 10 s, a key frame every second
    video = write_index_video(tmp_path / "long.mp4", times, keyint=30)
    stream, clips = _collect(video, num_frames=8, sampling_rate=2, stride="0.5", start=7)
    assert [c.time for c in clips] == [Fraction(14 + k, 2) for k in range(6)]
    for clip in clips:
        expected = _reference_indices(times, [clip.time + o for o in clip_offsets(8, 2)])
        assert [read_index(f) for f in clip.frames] == expected
    assert stream.frames_decoded <= 300 - 5 * 30  # decoding started at the key frame before 5.5 s


def test_video_shorter_than_one_clip_clamps(tmp_path: Path) -> None:
    video = write_index_video(tmp_path / "short.mp4", cfr_times(5, Fraction(30)))
    _, clips = _collect(video, num_frames=32, sampling_rate=2, stride=1)
    assert len(clips) == 1 and clips[0].time == 0
    indices = [read_index(f) for f in clips[0].frames]
    assert indices == [0] * 16 + [2 * j if 2 * j < 5 else 4 for j in range(16)]


def test_rotation_is_applied(tmp_path: Path) -> None:
    def marker(i: int, width: int, height: int) -> np.ndarray:
        rgb = np.zeros((height, width, 3), np.uint8)
        rgb[: height // 3, : width // 4] = 255  # top-left block of the stored frame
        return rgb

    video = write_index_video(
        tmp_path / "rot.mp4", cfr_times(10, Fraction(30)), width=160, height=96, rotation=90, image=marker
    )
    info = probe_video(video)
    assert (info.width, info.height, info.rotation) == (96, 160, 90)
    _, clips = _collect(video, num_frames=2, sampling_rate=1, stride=1)
    key = clips[0].keyframe
    assert key.shape == (160, 96, 3)
    # a 90 degree counter-clockwise display rotation moves the stored top-left corner to the bottom-left
    assert key[150, 5].mean() > 200 and key[5, 5].mean() < 50 and key[150, 90].mean() < 50


def _clip_count_and_peak(tmp_path: Path, seconds: int) -> tuple[int, int]:
    video = write_index_video(
        tmp_path / f"long{seconds}.mp4",
        cfr_times(seconds * 15, Fraction(15)),
        width=32,
        height=32,
        image=lambda i, w, h: np.full((h, w, 3), i % 256, np.uint8),
    )
    stream, clips = _collect(video, num_frames=8, sampling_rate=8, stride="0.5")
    return len(clips), stream.max_frames_held


def test_memory_is_bounded_independent_of_length(tmp_path: Path) -> None:
    short_clips, short_peak = _clip_count_and_peak(tmp_path, 10)
    long_clips, long_peak = _clip_count_and_peak(tmp_path, 60)
    assert (short_clips, long_clips) == (20, 120)
    stream = ClipStream(tmp_path / "long60.mp4", num_frames=8, sampling_rate=8, stride="0.5")
    bound = stream.max_pending_clips() * (8 + 1)
    assert short_peak == long_peak <= bound


# ---------------------------------------------------------------------------------------------------------
# damaged and unusual input
# ---------------------------------------------------------------------------------------------------------


def test_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoDecodeError, match="notes.mp4: cannot open as a media file"):
        list(ClipStream(path, num_frames=4, sampling_rate=2))
    with pytest.raises(VideoDecodeError, match="absent.mp4: no such file"):
        list(ClipStream(tmp_path / "absent.mp4", num_frames=4, sampling_rate=2))
    (tmp_path / "zero.mp4").touch()  # e.g. a download or copy that never started
    with pytest.raises(VideoDecodeError, match=r"zero.mp4: empty file \(0 bytes\)"):
        list(ClipStream(tmp_path / "zero.mp4", num_frames=4, sampling_rate=2))
    with pytest.raises(VideoDecodeError, match="zero.mp4: empty file"):
        probe_video(tmp_path / "zero.mp4")


def test_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(VideoDecodeError, match="audio.mp4: no video stream"):
        list(ClipStream(path, num_frames=4, sampling_rate=2))


def test_truncated_files(tmp_path: Path) -> None:
    times = cfr_times(90, Fraction(30))
    normal = write_index_video(tmp_path / "normal.mp4", times)
    data = normal.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: nothing is readable
    with pytest.raises(VideoDecodeError, match="cut.mp4: cannot open as a media file"):
        list(ClipStream(cut, num_frames=4, sampling_rate=2))

    fast = write_index_video(tmp_path / "fast.mp4", times, faststart=True)
    data = fast.read_bytes()
    cut_fast = tmp_path / "cut_fast.mp4"
    cut_fast.write_bytes(data[: len(data) // 2])  # index first: half of the frames decode
    with pytest.raises(VideoDecodeError, match=r"cut_fast.mp4: truncated .* announces 3.000 s .* stopped at"):
        list(ClipStream(cut_fast, num_frames=4, sampling_rate=2))
    stream = ClipStream(cut_fast, num_frames=4, sampling_rate=2, allow_truncated=True)
    clips = list(stream)
    assert stream.truncated and 0 < len(clips) < 3
    assert all(read_index(c.keyframe) == int(c.time * 30) for c in clips)


def test_corrupt_packets_are_skipped(tmp_path: Path) -> None:
    times = cfr_times(90, Fraction(30))
    video = write_index_video(tmp_path / "ok.mp4", times, faststart=True, keyint=15)
    data = bytearray(video.read_bytes())
    rng = np.random.default_rng(0)
    middle = len(data) // 2
    data[middle : middle + 30] = rng.integers(0, 256, 30, dtype=np.uint8).tobytes()  # one or two packets
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    stream = ClipStream(bad, num_frames=4, sampling_rate=2)
    clips = list(stream)  # the damaged GOP is skipped; decoding resumes at the next key frame
    assert stream.packets_skipped > 0 and not stream.truncated
    assert [c.time for c in clips] == [0, 1, 2]
    for clip in clips:  # frames missing from the damaged part: an earlier frame stays on screen
        needed = [clip.time + o for o in clip_offsets(4, 2)]
        assert all(t <= max(n, Fraction(0)) for t, n in zip(clip.frame_times, needed, strict=True))
    assert [read_index(f) for f in clips[0].frames] == [0, 0, 0, 2]  # before the damage: exact


@pytest.mark.parametrize("fmt, suffix", [("mp4", "mp4"), ("matroska", "mkv")])
def test_zero_frames(tmp_path: Path, fmt: str, suffix: str) -> None:
    path = tmp_path / f"empty.{suffix}"
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # header and an empty track, no frame
    with pytest.raises(VideoDecodeError, match=f"empty.{suffix}: (no decodable video frame|cannot open|no video)"):
        list(ClipStream(path, num_frames=4, sampling_rate=2))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stride"):
        ClipStream(tmp_path / "x.mp4", num_frames=4, sampling_rate=2, stride=0)
    with pytest.raises(ValueError, match="before start"):
        ClipStream(tmp_path / "x.mp4", num_frames=4, sampling_rate=2, start=3, end=2)
