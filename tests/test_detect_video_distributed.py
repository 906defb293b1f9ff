"""detect-video over a folder of videos under real torchrun (2 CPU processes, gloo), against one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import test_detect_video
from test_detect_video import DETECTOR_CONFIG, DETECTOR_OPTS, Assets
from test_distributed import free_port
from test_streaming import cfr_times, write_index_video

from slowfast_det.pipeline.shard import SUMMARY_NAME, assign_shards

pytestmark = pytest.mark.usefixtures("one_torch_thread")
assets = test_detect_video.assets  # the tiny real models (module-scoped fixture)
REPO = Path(__file__).resolve().parents[1]
SECONDS = [5, 3, 4, 2, 5, 3]  # video lengths: uneven, so that balancing matters


def test_assignment_is_deterministic_and_balanced() -> None:
    videos = [Path(f"v{i}.mp4") for i in range(7)]
    durations: dict[Path, float | None] = {v: d for v, d in zip(videos, [10, 1, 7, 3, 3, None, 6], strict=True)}
    shards = assign_shards(list(reversed(videos)), 2, durations)  # input order does not matter
    assert shards == assign_shards(videos, 2, durations)
    assert sorted(v for s in shards for v in s) == videos  # each video exactly once
    # longest first to the least-loaded rank; the unknown duration counts as the mean (5)
    # (10 -> r0, 7 -> r1, 6 -> r1, 5 -> r0, 3 (v3) -> r1, 3 (v4) -> r0, 1 -> r1: loads 18 and 17)
    assert shards == [[Path("v0.mp4"), Path("v5.mp4"), Path("v4.mp4")],
                      [Path("v2.mp4"), Path("v6.mp4"), Path("v3.mp4"), Path("v1.mp4")]]
    assert assign_shards(videos[:1], 3, durations) == [[Path("v0.mp4")], [], []]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for i, seconds in enumerate(SECONDS):
        write_index_video(root / f"clip{i}.mp4", cfr_times(30 * seconds, Fraction(30)), width=96, height=64)
    (root / "broken.mp4").write_text("not a video\n" * 50)  # fails on whichever rank gets it
    return root


def _args(assets: Assets, folder: Path, out: Path) -> list[str]:
    return [str(folder), "--config", str(assets.config), "--weights", str(assets.slowfast_weights),
            "--detector-config", DETECTOR_CONFIG, "--detector-weights", str(assets.detector_everywhere),
            "--detector-opts", *DETECTOR_OPTS, "--detector-threshold", "0.5", "--output-dir", str(out),
            "--device", "cpu", "--batch-size", "2", "--no-progress", "--cache-dir", str(assets.config.parent / "cache")]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def _torchrun(args: list[str]) -> subprocess.Popen[str]:
    env = _env()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "slowfast_det.tools.detect_video", *args]
    # own session: on a timeout the whole group (torchrun and its workers) is killed, leaving no orphans
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 400) -> tuple[int, str, str]:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun timed out:\n{stdout[-3000:]}\n{stderr[-5000:]}")
    return proc.returncode, stdout, stderr


def _outputs(out: Path) -> dict[str, bytes]:
    """Every output file, with the output folder's own path taken out of the settings records."""
    files = {}
    for p in sorted(out.iterdir()):
        if p.name != SUMMARY_NAME:
            files[p.name] = p.read_bytes().replace(str(out).encode(), b"OUT")
    return files


def test_two_ranks_equal_one_process_and_a_rerun_resumes(
    assets: Assets, folder: Path, tmp_path: Path
) -> None:
    one = tmp_path / "one"  # one process, started as the workers are (a fresh process, one thread)
    run = subprocess.run([sys.executable, "-m", "slowfast_det.tools.detect_video", *_args(assets, folder, one)],
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=400)
    assert run.returncode == 1, run.stderr  # the broken file fails, the others are done
    assert "done: 6, skipped (outputs exist): 0, failed: 1" in run.stdout
    reference = _outputs(one)
    assert len(reference) == 12  # 6 x (actions.csv + meta.json)

    two = tmp_path / "two"
    code, stdout, stderr = _finish(_torchrun(_args(assets, folder, two)))
    assert code != 0, "a failed video makes every rank exit with status 1"
    assert _outputs(two) == reference, stderr[-3000:]
    summary = json.loads((two / SUMMARY_NAME).read_text())
    assert len(summary["done"]) == 6 and summary["skipped"] == [] and summary["world_size"] == 2
    assert [f["video"] for f in summary["failed"]] == [str(folder / "broken.mp4")]
    assert {v["rank"] for v in summary["videos"]} == {0, 1} and all(v["seconds"] > 0 for v in summary["videos"])
    # throughput and the stages' busy seconds: in the merged JSON and the printed summary
    assert summary["keyframes"] == sum(SECONDS) and summary["keyframes_per_s"] > 0, summary
    assert {"decode", "detect", "prepare", "slowfast", "track", "write"} <= set(summary["timings"])
    assert f"{sum(SECONDS)} keyframes in" in stdout and "keyframes/s" in stdout and "stage busy seconds" in stdout
    assert stdout.count("done: 6, skipped (outputs exist): 0, failed: 1") == 1  # rank 0 alone prints it

    # a crash: one rank is killed once some video is finished (torchrun then stops the other)
    three = tmp_path / "three"
    proc = _torchrun(_args(assets, folder, three))
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        if three.is_dir() and any(three.glob("*.meta.json")):
            for lock in three.glob("*.lock"):
                try:
                    killed = int(lock.read_text().split()[0])
                    os.kill(killed, signal.SIGKILL)
                    break
                except (OSError, ValueError, IndexError):
                    killed = None
        time.sleep(0.02)
    code, stdout, stderr = _finish(proc)
    assert killed is not None, "the job ended before a rank could be killed: make the videos longer"
    assert code != 0
    finished = {p.name for p in three.glob("*.meta.json")}
    assert 0 < len(finished) < 6, finished
    code, stdout, stderr = _finish(_torchrun(_args(assets, folder, three)))
    summary = json.loads((three / SUMMARY_NAME).read_text())
    assert len(summary["skipped"]) == len(finished) and len(summary["done"]) == 6 - len(finished), summary
    assert {Path(v).stem + ".meta.json" for v in summary["skipped"]} == finished
    assert _outputs(three) == reference
