"""detect-video on live streams: a real ffmpeg (imageio-ffmpeg's binary) streams real MP4s to 127.0.0.1.

Only the loopback address is used. The models are the tiny real ones of tests/test_detect_video.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import test_detect_video
from test_detect_video import DETECTOR_CONFIG, DETECTOR_OPTS, Assets, _cli, _figure
from test_streaming import cfr_times, write_index_video

from slowfast_det.pipeline.live import LatencyStats, _grid_after
from slowfast_det.pipeline.tables import ACTION_COLUMNS
from slowfast_det.video.live import ReconnectPolicy, is_stream_input, stream_name

pytestmark = pytest.mark.usefixtures("one_torch_thread")
assets = test_detect_video.assets  # the tiny real models (module-scoped fixture)
REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def streamer(ffmpeg: str, video: Path, url: str, *extra: str, realtime: bool = False) -> subprocess.Popen[bytes]:
    """ffmpeg sending ``video`` (stream copy, MPEG-TS) to ``url``; ``realtime``: at 1x speed (-re)."""
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", *(["-re"] if realtime else []), *extra, "-i", str(video),
           "-an", "-c", "copy", "-f", "mpegts", url]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def tool_argv(assets: Assets, inputs: list[str], out: Path, *extra: str) -> list[str]:
    """The console script's command line (for subprocess runs)."""
    return [sys.executable, "-m", "slowfast_det.tools.detect_video", *inputs, "--config", str(assets.config),
            "--weights", str(assets.slowfast_weights), "--detector-config", DETECTOR_CONFIG, "--detector-weights",
            str(assets.detector_everywhere), "--detector-opts", *DETECTOR_OPTS, "--detector-threshold", "0.5",
            "--output-dir", str(out), "--device", "cpu", "--batch-size", "2", "--no-progress", "--cache-dir",
            str(assets.config.parent / "cache"), *extra]


def tool_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def read_table(path: Path) -> pd.DataFrame:
    """The CSV, checked to be well-formed: a header, whole rows of 11 fields ending in a newline."""
    text = path.read_text()
    assert text.endswith("\n")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ACTION_COLUMNS
    assert all(len(row) == len(ACTION_COLUMNS) for row in rows), "a partial or malformed row"
    return pd.read_csv(path)


def assert_same_rows(file_table: pd.DataFrame, live_table: pd.DataFrame, *, min_common: int) -> list[float]:
    """Boxes, detector scores and action scores agree on the keyframes both tables have (ids are not compared:
    a live run that skipped keyframes tracks over other gaps)."""
    common = sorted(set(file_table["timestamp"]) & set(live_table["timestamp"]))
    assert len(common) >= min_common, (sorted(set(file_table["timestamp"])), sorted(set(live_table["timestamp"])))
    keys = ["timestamp", "x1", "y1", "x2", "y2", "action_id"]
    for t in common:
        a, b = (table[table["timestamp"] == t].drop(columns=["person_id", "video_id"]).sort_values(keys)
                .reset_index(drop=True) for table in (file_table, live_table))
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-6)
    return common


@pytest.fixture(scope="module")
def bikes_file_table(assets: Assets, bikes_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The file run on the first 6 s of bikes.mp4 (the reference)."""
    out = tmp_path_factory.mktemp("file_run")
    assert _cli(assets, [str(bikes_mp4)], out, "--duration", "6", "--batch-size", "2") == 0
    return read_table(out / "bikes.actions.csv")


# ---------------------------------------------------------------------------------------------------------
# small pieces
# ---------------------------------------------------------------------------------------------------------


def test_stream_inputs_names_and_policies() -> None:
    for spec in ["rtsp://cam/live", "rtmp://h/app/key", "http://h/live.m3u8", "https://h/x", "tcp://127.0.0.1:5",
                 "udp://127.0.0.1:5", "srt://h:1", "/dev/video0", "-"]:
        assert is_stream_input(spec), spec
    for spec in ["video.mp4", "/dev/sda", "clips/", "file:///a.mp4", "./-"]:
        assert not is_stream_input(spec), spec
    assert stream_name("-") == "stdin" and stream_name("/dev/video2") == "video2"
    assert stream_name("rtsp://cam:554/live/door.sdp") == "door"
    assert stream_name("tcp://127.0.0.1:5000") == "127.0.0.1_5000"
    assert stream_name("http://h/hls/index.m3u8") == "index"
    policy = ReconnectPolicy(attempts=6, initial_s=0.5, factor=2, max_s=4)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]
    assert _grid_after(Fraction(0), Fraction(0), Fraction(1)) == 0
    assert _grid_after(Fraction(23, 10), Fraction(1, 2), Fraction(1)) == Fraction(5, 2)
    assert _grid_after(Fraction(5, 2), Fraction(1, 2), Fraction(1)) == Fraction(5, 2)


def test_latency_percentiles_in_constant_memory() -> None:
    stats = LatencyStats()
    rng = np.random.default_rng(0)
    values = rng.uniform(0.2, 3.0, 20000)
    for v in values:
        stats.add(float(v))
    for q in (50, 95):
        assert stats.percentile(q) == pytest.approx(np.percentile(values, q), rel=0.011)
    assert stats.max == pytest.approx(values.max()) and stats.counts.nbytes == 1600 * 8
    assert LatencyStats().percentile(50) is None


# ---------------------------------------------------------------------------------------------------------
# streams against files
# ---------------------------------------------------------------------------------------------------------


def test_tcp_stream_equals_file_and_renders(
    assets: Assets, ffmpeg: str, bikes_mp4: Path, bikes_file_table: pd.DataFrame, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """TCP has back-pressure: with --skip none every keyframe is processed, so the whole table equals the file's."""
    port = free_port()
    sender = streamer(ffmpeg, bikes_mp4, f"tcp://{LOOPBACK}:{port}?listen", "-t", "7")
    out = tmp_path / "out"
    try:
        time.sleep(0.3)  # the listening socket is up
        status = _cli(assets, [f"tcp://{LOOPBACK}:{port}"], out, "--skip", "none", "--duration", "6",
                      "--batch-size", "2", "--flush-every", "2", "--render", str(out / "live.mp4"), "--json",
                      "--render-short-side", "96")
    finally:
        stop(sender)
    assert status == 0
    report = capsys.readouterr().out
    assert "reached --end/--duration" in report and "skipped 0" in report
    live = read_table(out / f"{LOOPBACK}_{port}.actions.csv")
    assert set(live["video_id"]) == {f"{LOOPBACK}_{port}"}
    common = assert_same_rows(bikes_file_table, live, min_common=6)
    assert common == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    # no keyframe was skipped, so the tracker saw the same sequence: the ids agree too
    assert list(live["person_id"]) == list(bikes_file_table["person_id"])
    stats = json.loads((out / f"{LOOPBACK}_{port}.live.json").read_text())
    assert stats["keyframes_done"] == 6 and stats["keyframes_skipped"] == stats["keyframes_late"] == 0
    assert stats["latency"]["count"] == 6 and 0 < stats["latency"]["p50_s"] <= stats["latency"]["p95_s"]
    assert stats["connections"] == 1 and stats["rows"] == len(live)
    lines = (out / f"{LOOPBACK}_{port}.actions.jsonl").read_text().splitlines()
    assert [json.loads(line)["timestamp"] for line in lines] == common
    import av

    with av.open(str(out / "live.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert 130 <= frames <= 136  # every frame read: up to the last clip, keyframe 5 + 8 x 2 / 2 / 30 s (25 fps)


def test_udp_stream_realtime_and_ctrl_c(
    assets: Assets, ffmpeg: str, bikes_mp4: Path, bikes_file_table: pd.DataFrame, tmp_path: Path
) -> None:
    """UDP has no back-pressure: ffmpeg sends at 1x (-re); the run keeps up (the newest policy may skip) and
    SIGINT ends it with a summary and whole rows."""
    port = free_port(socket.SOCK_DGRAM)
    out = tmp_path / "out"
    run = subprocess.Popen(tool_argv(assets, [f"udp://{LOOPBACK}:{port}"], out, "--flush-every", "1",
                                     "--stream-timeout", "20"),
                           env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    sender = None
    try:
        assert run.stderr is not None
        line = run.stderr.readline()
        while line and "reading udp://" not in line:
            line = run.stderr.readline()
        assert line, "detect-video ended before reading the stream"
        time.sleep(1.0)  # the receiving socket is bound just after that line
        sender = streamer(ffmpeg, bikes_mp4, f"udp://{LOOPBACK}:{port}?pkt_size=1316", "-t", "7", realtime=True)
        table = out / f"{LOOPBACK}_{port}.actions.csv"
        deadline = time.monotonic() + 120
        while not (table.is_file() and len(set(pd.read_csv(table)["timestamp"])) >= 4):
            assert run.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if sender is not None:
            stop(sender)
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 0, stderr
    assert "interrupted (Ctrl-C/SIGTERM)" in stdout and "latency: p50" in stdout
    live = read_table(out / f"{LOOPBACK}_{port}.actions.csv")
    assert_same_rows(bikes_file_table, live, min_common=3)
    stats = json.loads((out / f"{LOOPBACK}_{port}.live.json").read_text())
    assert stats["ended_by"].startswith("interrupted") and stats["keyframes_done"] >= 4
    assert stats["latency"]["p95_s"] < 10  # bounded by --max-latency (default 10 s)


def test_stdin_pipe_equals_file(
    assets: Assets, ffmpeg: str, bikes_mp4: Path, bikes_file_table: pd.DataFrame, tmp_path: Path
) -> None:
    """``cat video.mp4 | detect-video -``: an MP4 with its index first reads from a pipe; one with its index at
    the end (bikes.mp4 itself) is refused with how to fix it."""
    video = tmp_path / "bikes_faststart.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-i", str(bikes_mp4), "-t", "7", "-c", "copy",
                    "-movflags", "+faststart", str(video)], check=True)
    out = tmp_path / "out"
    with subprocess.Popen(["cat", str(video)], stdout=subprocess.PIPE) as cat:
        run = subprocess.run(tool_argv(assets, ["-"], out, "--duration", "6"), stdin=cat.stdout, env=tool_env(),
                             capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    live = read_table(out / "stdin.actions.csv")
    assert assert_same_rows(bikes_file_table, live, min_common=6) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(live["person_id"]) == list(bikes_file_table["person_id"])  # a pipe skips nothing (--skip auto)

    with subprocess.Popen(["cat", str(bikes_mp4)], stdout=subprocess.PIPE) as cat:
        run = subprocess.run(tool_argv(assets, ["-"], tmp_path / "out2"), stdin=cat.stdout, env=tool_env(),
                             capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert "moov" in run.stderr and "faststart" in run.stderr and "Traceback" not in run.stderr


@pytest.fixture(scope="module")
def still_figure(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s at 25 fps of the same bright figure (the presence detector finds it at the same place every time)."""
    folder = tmp_path_factory.mktemp("still")
    return write_index_video(folder / "figure.mp4", cfr_times(100, Fraction(25)), image=_figure, keyint=25)


def _restart_midway(ffmpeg: str, video: Path, port: int, kill_after: float, done: threading.Event,
                    senders: list[subprocess.Popen[bytes]]) -> None:
    """Stream ``video`` at 1x, kill the streamer after ``kill_after`` s, restart it at once (from the start)."""
    url = f"tcp://{LOOPBACK}:{port}?listen"
    senders.append(streamer(ffmpeg, video, url, realtime=True))
    done.wait(kill_after)
    stop(senders[0])
    senders.append(streamer(ffmpeg, video, url, realtime=True))


@pytest.mark.parametrize("track_gap", ["30", "0"])
def test_reconnect_after_the_streamer_dies(
    assets: Assets, ffmpeg: str, still_figure: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    track_gap: str,
) -> None:
    """The streamer is killed mid-way and restarted: the run reconnects, the CSV stays whole rows; the person
    keeps its id over the short outage (--track-gap 30) or gets a new one (--track-gap 0)."""
    port = free_port()
    done = threading.Event()
    senders: list[subprocess.Popen[bytes]] = []
    thread = threading.Thread(target=_restart_midway, args=(ffmpeg, still_figure, port, 2.5, done, senders))
    thread.start()
    out = tmp_path / "out"
    try:
        time.sleep(0.3)
        status = _cli(assets, [f"tcp://{LOOPBACK}:{port}"], out, "--reconnect", "2", "--flush-every", "1",
                      "--track-gap", track_gap, "--name", "door", "--tracker-max-age", "30",
                      detector_weights=assets.detector_presence)
    finally:
        done.set()
        thread.join()
        for proc in senders:
            stop(proc)
    assert status == 0
    report = capsys.readouterr().out
    assert "gave up after 2 reconnection attempts" in report, report
    stats = json.loads((out / "door.live.json").read_text())
    assert stats["connections"] == 2 and stats["reconnects"] == 1
    table = read_table(out / "door.actions.csv")
    times = sorted(set(table["timestamp"]))
    # keyframes before the drop (~0-2 s) and after it (a second run of 4 s later on the same clock)
    assert times[0] == 0.0 and times[-1] >= 5.0 and times == sorted(times)
    gap = max(b - a for a, b in zip(times, times[1:], strict=False))
    before = table[table["timestamp"] < times[0] + 1.5]
    after = table[table["timestamp"] > times[-1] - 1.5]
    assert len(before) and len(after)
    if track_gap == "30":
        assert set(after["person_id"]) <= set(before["person_id"]), (gap, table)
    else:
        assert not set(after["person_id"]) & set(before["person_id"]), (gap, table)


def test_slow_inference_skips_whole_keyframes_and_keeps_up(
    assets: Assets, ffmpeg: str, bikes_mp4: Path, bikes_file_table: pd.DataFrame, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A sender faster than inference (no -re) with the keep-the-newest policy: whole keyframes are skipped
    and counted, the ones processed are exact, the run does not fall behind."""
    port = free_port()
    sender = streamer(ffmpeg, bikes_mp4, f"tcp://{LOOPBACK}:{port}?listen", "-t", "7")
    out = tmp_path / "out"
    try:
        time.sleep(0.3)
        status = _cli(assets, [f"tcp://{LOOPBACK}:{port}"], out, "--skip", "newest", "--max-queue", "1",
                      "--batch-size", "1", "--reconnect", "0", "--name", "fast")
    finally:
        stop(sender)
    assert status == 0
    stats = json.loads((out / "fast.live.json").read_text())
    skipped = stats["keyframes_skipped"] + stats["keyframes_late"]
    # keyframes 0..7 of the 7 s sent (-t 7 keeps a frame at 7.0 s): all accounted for, processed or skipped
    assert skipped > 0 and stats["keyframes_done"] + skipped == 8, stats
    assert stats["last_keyframe"] == 7.0  # the newest is kept
    live = read_table(out / "fast.actions.csv")
    assert_same_rows(bikes_file_table, live, min_common=1)
    assert f"skipped {skipped}" in capsys.readouterr().out


def test_stream_errors_are_one_line(assets: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nobody listens: refused at once
    assert _cli(assets, [f"tcp://{LOOPBACK}:{port}"], tmp_path / "out", "--reconnect", "1") == 2
    err = capsys.readouterr().err
    assert f"tcp://{LOOPBACK}:{port}: cannot open the stream" in err
    assert _cli(assets, [f"tcp://{LOOPBACK}:{port}", "other.mp4"], tmp_path / "out") == 2
    assert "must be the only input" in capsys.readouterr().err
    out = tmp_path / "out3"
    out.mkdir()
    (out / "cam.actions.csv").write_text("x\n")
    assert _cli(assets, [f"rtsp://{LOOPBACK}:{port}/cam"], out) == 2
    assert "cam.actions.csv already exist(s)" in capsys.readouterr().err
