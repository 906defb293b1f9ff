"""Two CPU processes under real torchrun (gloo) give the single-process results (same global batch)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_train_test import make_synth, run_tool, write_config

from slowfast_det.checkpoint import load_checkpoint
from slowfast_det.pipeline.tables import AVA_DETECTION_COLUMNS
from slowfast_det.tools import test_net, train_net

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")
# frozen BN (statistics not batch-dependent) and no dropout: a 2-process step must equal a 1-process step
EXACT = ["BN.FREEZE", "True", "MODEL.DROPOUT_RATE", "0.0", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "4",
         "SOLVER.BASE_LR", "0.005", "SOLVER.WARMUP_START_LR", "0.001"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(calls: list[tuple[str, list[str]]], nproc: int = 2) -> None:
    """In each of ``nproc`` torchrun workers, run ``module.main(module.get_args_parser().parse_args(args))`` for
    each call in turn, then close the process group (what each ``cli()`` does after its ``main``).

    One torchrun launch for several commands: starting the workers (importing torch) is the slow part; the
    process group is created once (creating it again after destroying it can hang with torchrun's store).
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    code = "import importlib\n" + "".join(
        f"m = importlib.import_module({module!r}); m.main(m.get_args_parser().parse_args({args!r}))\n"
        for module, args in calls
    ) + "from slowfast_det.engine.distributed import shutdown_distributed; shutdown_distributed()\n"
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={free_port()}", "--no-python", sys.executable, "-c", code]
    # own session: on a timeout the whole group (torchrun and its workers) is killed, leaving no orphans
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} timed out after 400 s:\n{stdout[-4000:]}\n{stderr[-6000:]}")
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{stdout[-4000:]}\n{stderr[-6000:]}"


@pytest.fixture(scope="module")
def cfg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    synth = make_synth(tmp_path_factory.getbasetemp() / "synth_engine")
    return write_config(tmp_path_factory.mktemp("cfg_dist") / "tiny.yaml", synth)


@pytest.fixture(scope="module")
def runs(cfg_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Training (2 epochs x 2 steps of global batch 4) and testing, with 1 process and with 2 under torchrun.

    Both tests use the 2-process run's final checkpoint.
    """
    dirs = {name: tmp_path_factory.mktemp(name) for name in ("train1", "train2", "test1", "test2")}
    ckpt = dirs["train2"] / "checkpoints" / "checkpoint_epoch_00002.pyth"
    base = ["--cfg", str(cfg_file), "--no-progress", *EXACT]
    test_args = [*base, "TEST.CHECKPOINT_FILE_PATH", str(ckpt)]
    torchrun(
        [
            ("slowfast_det.tools.train_net", [*base, "OUTPUT_DIR", str(dirs["train2"])]),
            ("slowfast_det.tools.test_net", [*test_args, "OUTPUT_DIR", str(dirs["test2"])]),
        ]
    )
    run_tool(train_net, [*base, "OUTPUT_DIR", str(dirs["train1"])])
    run_tool(test_net, [*test_args, "OUTPUT_DIR", str(dirs["test1"])])
    return dirs


def test_two_process_training_equals_one_process(runs: dict[str, Path]) -> None:
    one, two = runs["train1"], runs["train2"]
    a = pd.read_csv(one / "train_iters.csv")
    b = pd.read_csv(two / "train_iters.csv")
    assert len(a) == len(b) == 4  # 10 training keyframes // 4 = 2 steps per epoch, 2 epochs
    assert (a["lr"] == b["lr"]).all()
    # fp32 gradients all-reduced over 2 processes sum in another order than 1 process's: the step-4 loss drifts
    # by ~2e-5 relative (as the weights, compared at 1e-4 below)
    pd.testing.assert_series_equal(a["loss"], b["loss"], rtol=1e-4, atol=1e-6)
    wa = load_checkpoint(one / "checkpoints" / "checkpoint_epoch_00002.pyth")["model_state"]
    wb = load_checkpoint(two / "checkpoints" / "checkpoint_epoch_00002.pyth")["model_state"]
    init = load_checkpoint(one / "checkpoints" / "checkpoint_epoch_00001.pyth")["model_state"]
    assert not torch.equal(wa["head.projection.weight"], init["head.projection.weight"])  # it did train
    # epoch 2's update of every tensor agrees to 5% of its largest element: fp32 gradients summed in another order
    # (2 processes) drift by ~1% of an update over these steps (a loss spike at step 3 amplifies it), while a wrong
    # gradient scale (e.g. a missing world-size factor) would be off by 50% or more
    for key, value in wa.items():
        if not value.dtype.is_floating_point:
            assert torch.equal(wb[key], value), key
            continue
        update_a, update_b = value - init[key], wb[key] - init[key]
        worst = (update_a - update_b).abs().max().item()
        assert worst <= 0.05 * update_a.abs().max().item() + 1e-7, f"{key}: updates differ by {worst:.2e}"
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == sorted(
        p.name for p in (one / "checkpoints").iterdir()
    )  # rank 0 alone wrote, atomically (no temp files left)
    ea = [json.loads(x) for x in (one / "train_epochs.jsonl").read_text().splitlines()]
    eb = [json.loads(x) for x in (two / "train_epochs.jsonl").read_text().splitlines()]
    assert ea[-1]["eval/mAP"] == pytest.approx(eb[-1]["eval/mAP"], abs=1e-6)  # gathered evaluation


def test_two_process_testing_equals_one_process(runs: dict[str, Path]) -> None:
    one, two = runs["test1"], runs["test2"]
    read = lambda p: pd.read_csv(p, header=None, names=AVA_DETECTION_COLUMNS, dtype={"video_id": str})
    a, b = read(one / "detections.csv"), read(two / "detections.csv")
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a.drop(columns="score"), b.drop(columns="score"))  # same rows, same order
    pd.testing.assert_series_equal(a["score"], b["score"], rtol=1e-5, atol=1e-6)
    ma = json.loads((one / "metrics.json").read_text())
    mb = json.loads((two / "metrics.json").read_text())
    assert ma["mAP"] == pytest.approx(mb["mAP"], abs=1e-9) and ma["num_boxes"] == mb["num_boxes"]
    assert (one / "groundtruth.csv").read_bytes() == (two / "groundtruth.csv").read_bytes()

