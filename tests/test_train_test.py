"""Training and testing on SynthAVA with a tiny SlowFast: resume, CSV/metrics outputs, bad samples, pieces."""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import slowfast_r50_stages_yaml

from ava_tools.evaluate import evaluate, read_detections_csv, read_groundtruth_csv
from ava_tools.synth import generate
from slowfast_det import builders
from slowfast_det.checkpoint import load_checkpoint, save_checkpoint
from slowfast_det.config import load_config
from slowfast_det.data import SampleError
from slowfast_det.engine.launch import load_initial_weights
from slowfast_det.engine.loader import SeededSamples, ShardedSampler, build_loader, set_loader_epoch
from slowfast_det.engine.tester import Predictions, merge_predictions
from slowfast_det.engine.trainer import detection_loss_sum, find_last_checkpoint
from slowfast_det.models import build_model
from slowfast_det.pipeline.tables import AVA_DETECTION_COLUMNS, detections_frame, write_detections_csv
from slowfast_det.tools import test_net, train_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A tiny SlowFast (width 4, 8 frames, 48-pixel crops) on SynthAVA (2 train videos x 5 keyframes, 1 val video).
TINY = (
    """
TRAIN: {{DATASET: ava, BATCH_SIZE: 2, EVAL_PERIOD: 100, CHECKPOINT_PERIOD: 1, AUTO_RESUME: True}}
TEST: {{BATCH_SIZE: 2}}
DATA: {{NUM_FRAMES: 8, SAMPLING_RATE: 2, TRAIN_JITTER_SCALES: [48, 56], TRAIN_CROP_SIZE: 48, TEST_CROP_SIZE: 48,
       INPUT_CHANNEL_NUM: [3, 3]}}
DETECTION: {{ENABLE: True, ALIGNED: True}}
AVA:
  FRAME_DIR: {root}/frames
  FRAME_LIST_DIR: {root}/frame_lists
  ANNOTATION_DIR: {root}/annotations
  TRAIN_LISTS: [train.csv]
  TEST_LISTS: [val.csv]
  TRAIN_GT_BOX_LISTS: [ava_train_v2.2.csv]
  TRAIN_PREDICT_BOX_LISTS: []
  TEST_PREDICT_BOX_LISTS: [ava_val_v2.2.csv]   # ground-truth boxes as "detections" (person id as score)
  DETECTION_SCORE_THRESH: 0.0
  LABEL_MAP_FILE: ava_action_list_synth_for_eval.pbtxt
  GROUNDTRUTH_FILE: ava_val_v2.2.csv
  EXCLUSION_FILE: ava_val_excluded_timestamps_v2.2.csv
  FULL_TEST_ON_VAL: True
SLOWFAST: {{ALPHA: 4, BETA_INV: 2, FUSION_CONV_CHANNEL_RATIO: 2, FUSION_KERNEL_SZ: 3}}
"""
    + slowfast_r50_stages_yaml(width_per_group=4)
    + """SOLVER: {{BASE_LR: 0.05, LR_POLICY: cosine, MAX_EPOCH: 2, WARMUP_EPOCHS: 0.5, WARMUP_START_LR: 0.01,
         MOMENTUM: 0.9, WEIGHT_DECAY: 1.0e-4}}
MODEL: {{NUM_CLASSES: 9, ARCH: slowfast, MODEL_NAME: SlowFast, LOSS_FUNC: bce, DROPOUT_RATE: 0.5}}
DATA_LOADER: {{NUM_WORKERS: 0, PIN_MEMORY: False}}
NUM_GPUS: 0
RNG_SEED: 3
"""
)


def make_synth(root: Path) -> Path:
    """SynthAVA: 3 videos x 8 s at 96x72 (keyframes 902..906): 2 train videos, 1 val video (cached)."""
    generate(root, videos=3, seconds=8, seed=0, width=96, height=72, progress=False)
    return root


def write_config(path: Path, synth: Path) -> Path:
    path.write_text(TINY.format(root=synth))
    return path


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synth(tmp_path_factory.getbasetemp() / "synth_engine")


@pytest.fixture(scope="module")
def cfg_file(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("cfg") / "tiny.yaml", synth)


def iter_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(cfg_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 2-epoch run; returns its OUTPUT_DIR."""
    out = tmp_path_factory.mktemp("run_full")
    train_net.cli(["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(out), "TENSORBOARD.ENABLE", "True"])
    return out


# ------------------------------------------------------------------------------------------ training
def test_training_logs_checkpoints_and_schedule(trained: Path, cfg_file: Path) -> None:
    ckpts = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert ckpts == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    assert find_last_checkpoint(trained) == trained / "checkpoints" / "checkpoint_epoch_00002.pyth"
    rows = iter_rows(trained / "train_iters.csv")
    # 10 training keyframes, global batch 2 -> 5 iterations per epoch
    assert [(int(r["epoch"]), int(r["iter"])) for r in rows] == [(e, i) for e in range(2) for i in range(5)]
    from slowfast_det.engine.solver import LRSchedule

    schedule = LRSchedule(**builders.lr_schedule_kwargs(load_config(cfg_file)))
    for r in rows:  # the rate of every iteration follows the fractional-epoch schedule
        assert float(r["lr"]) == pytest.approx(schedule.lr_at(int(r["epoch"]) + int(r["iter"]) / 5), rel=1e-12)
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) > 0 for r in rows)
    epochs = [json.loads(line) for line in (trained / "train_epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert "eval/mAP" in epochs[1] and 0.0 <= epochs[1]["eval/mAP"] <= 1.0  # the last epoch is evaluated
    state = load_checkpoint(trained / "checkpoints" / "checkpoint_epoch_00002.pyth")
    assert state["epoch"] == 1 and state["optimizer_state"] is not None and state["cfg"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained / "runs-ava")).Reload()
    assert [e.step for e in events.Scalars("Train/loss")] == list(range(10))
    assert [e.value for e in events.Scalars("Train/loss")] == pytest.approx([float(r["loss"]) for r in rows])
    assert events.Scalars("Val/mAP")[0].value == pytest.approx(epochs[1]["eval/mAP"])


def test_resume_repeats_the_uninterrupted_run_exactly(trained: Path, cfg_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(trained / "checkpoints" / "checkpoint_epoch_00001.pyth", out / "checkpoints")
    # rows an interrupted run logged for epoch 1 before dying must not survive the resume
    full = iter_rows(trained / "train_iters.csv")
    with open(out / "train_iters.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(full[0]))
        writer.writeheader()
        writer.writerows(full[:5] + [{**full[5], "loss": "123.0"}])
    train_net.cli(["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(out)])  # TRAIN.AUTO_RESUME

    resumed = iter_rows(out / "train_iters.csv")
    assert [(r["epoch"], r["iter"], r["loss"], r["lr"]) for r in resumed] == [
        (r["epoch"], r["iter"], r["loss"], r["lr"]) for r in full
    ]  # same losses, bit for bit
    a = load_checkpoint(trained / "checkpoints" / "checkpoint_epoch_00002.pyth")
    b = load_checkpoint(out / "checkpoints" / "checkpoint_epoch_00002.pyth")
    assert a["model_state"].keys() == b["model_state"].keys()
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    for key, value in a["optimizer_state"]["state"].items():
        assert torch.equal(value["momentum_buffer"], b["optimizer_state"]["state"][key]["momentum_buffer"])


def test_resume_rejects_a_weights_only_file(cfg_file: Path, tmp_path: Path) -> None:
    cfg = load_config(cfg_file)
    weights = save_checkpoint(tmp_path / "weights.pyth", model=build_model(cfg))
    with pytest.raises(ValueError, match="cannot resume"):
        train_net.cli(
            [
                "--cfg",
                str(cfg_file),
                "--no-progress",
                "--resume",
                str(weights),
                "OUTPUT_DIR",
                str(tmp_path / "out"),
            ]
        )


def test_initial_weights_load_the_backbone_of_a_classifier(cfg_file: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    kinetics = build_model(load_config(cfg_file, ["MODEL.NUM_CLASSES", "400"]))
    path = save_checkpoint(tmp_path / "k400.pyth", model=kinetics)
    torch.manual_seed(1)
    ava = build_model(load_config(cfg_file))
    head_before = ava.head.projection.weight.detach().clone()
    load_initial_weights(ava, path)
    src = kinetics.state_dict()
    for key, value in ava.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(value, src[key]), key
    assert torch.equal(ava.head.projection.weight, head_before)  # 400-class head not loaded
    same = build_model(load_config(cfg_file))
    load_initial_weights(same, save_checkpoint(tmp_path / "ava.pyth", model=ava))
    assert torch.equal(same.head.projection.weight, ava.head.projection.weight)  # fitting head: loaded


def test_bad_frame_names_video_second_and_file(synth: Path, tmp_path: Path) -> None:
    broken = tmp_path / "synth_broken"
    shutil.copytree(synth, broken)
    victim = broken / "frames" / "synth000" / "synth000_000061.jpg"  # frame 60 = keyframe second 902
    victim.unlink()
    cfg_file = write_config(tmp_path / "broken.yaml", broken)
    with pytest.raises(SampleError) as info:
        train_net.cli(
            [
                "--cfg",
                str(cfg_file),
                "--no-progress",
                "OUTPUT_DIR",
                str(tmp_path / "out"),
                "TRAIN.BATCH_SIZE",
                "10",
            ]
        )
    text = str(info.value) + "".join(getattr(info.value, "__notes__", []))
    assert "synth000" in text and "902" in text and "synth000_000061.jpg" in text
    assert "epoch 1" in text


# ------------------------------------------------------------------------------------------- testing
def test_test_net_writes_ava_csvs_and_metrics(trained: Path, cfg_file: Path, synth: Path, tmp_path: Path) -> None:
    ckpt = trained / "checkpoints" / "checkpoint_epoch_00002.pyth"
    out = tmp_path / "test"
    test_net.cli(
        [
            "--cfg",
            str(cfg_file),
            "--no-progress",
            "OUTPUT_DIR",
            str(out),
            "TEST.CHECKPOINT_FILE_PATH",
            str(ckpt),
        ]
    )
    ann = synth / "annotations"
    det = pd.read_csv(out / "detections.csv", header=None, names=AVA_DETECTION_COLUMNS, dtype={"video_id": str})
    assert (out / "groundtruth.csv").read_bytes() == (ann / "ava_val_v2.2.csv").read_bytes()

    # reference scores: the model on each test keyframe, one at a time, without any loader
    cfg = load_config(cfg_file)
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint(ckpt)["model_state"])
    model.eval()
    dataset = builders.build_dataset(cfg, "test")
    rows = []
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            boxes = torch.cat([torch.zeros(len(item["boxes"]), 1), torch.from_numpy(item["boxes"]).float()], 1)
            scores = torch.sigmoid(model([x[None] for x in item["inputs"]], boxes)).numpy()
            for box, s in zip(item["ori_boxes"], scores, strict=True):
                for cid in range(1, 10):
                    rows.append((item["video_id"], item["metadata"][0, 1], *box, cid, s[cid - 1]))
    ref = pd.DataFrame(rows, columns=AVA_DETECTION_COLUMNS)
    gt = pd.read_csv(ann / "ava_val_v2.2.csv", header=None, dtype=str)
    n_boxes = len(gt.iloc[:, :6].drop_duplicates())  # one test box per distinct (video, second, box)
    assert len(det) == len(ref) == n_boxes * 9  # one row per box and class
    assert (det["video_id"] == ref["video_id"]).all() and (det["timestamp"] == ref["timestamp"]).all()
    assert (det["action_id"] == ref["action_id"]).all()
    np.testing.assert_allclose(det[["x1", "y1", "x2", "y2"]].to_numpy(), ref[["x1", "y1", "x2", "y2"]].to_numpy())
    np.testing.assert_allclose(det["score"].to_numpy(), ref["score"].to_numpy(), rtol=1e-5, atol=1e-6)

    metrics = json.loads((out / "metrics.json").read_text())
    lm = ann / "ava_action_list_synth_for_eval.pbtxt"
    again = evaluate(out / "groundtruth.csv", out / "detections.csv", lm)
    assert metrics["mAP"] == pytest.approx(again.mean_ap, abs=1e-12)
    assert metrics["metrics"]["PascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(again.mean_ap, abs=1e-12)
    assert metrics["semantics"] == "current" and metrics["num_boxes"] == n_boxes

    # --use-exclusions: the earlier evaluator with the exclusion file
    test_net.cli(
        [
            "--cfg",
            str(cfg_file),
            "--no-progress",
            "--use-exclusions",
            "OUTPUT_DIR",
            str(out / "excl"),
            "TEST.CHECKPOINT_FILE_PATH",
            str(ckpt),
        ]
    )
    excl = json.loads((out / "excl" / "metrics.json").read_text())
    legacy = evaluate(
        ann / "ava_val_v2.2.csv",
        out / "detections.csv",
        lm,
        exclusions=ann / "ava_val_excluded_timestamps_v2.2.csv",
    )
    assert excl["semantics"] == "earlier-with-exclusions"
    assert excl["mAP"] == pytest.approx(legacy.mean_ap, abs=1e-12)


def test_test_net_without_weights_refuses(cfg_file: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no weights to test"):
        test_net.cli(["--cfg", str(cfg_file), "--no-progress", "OUTPUT_DIR", str(tmp_path)])


def test_quick_validation_keeps_every_fourth_second(trained: Path, cfg_file: Path, synth: Path) -> None:
    """Evaluation during training without AVA.FULL_TEST_ON_VAL: keyframes whose second % 4 == 0 only."""
    from slowfast_det.engine.distributed import init_distributed
    from slowfast_det.engine.launch import build_split_loader
    from slowfast_det.engine.tester import evaluate_predictions, gather_predictions, predict

    cfg = load_config(cfg_file, ["AVA.FULL_TEST_ON_VAL", "False"])
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint(trained / "checkpoints" / "checkpoint_epoch_00002.pyth")["model_state"])
    ctx = init_distributed(use_gpu=False)
    preds = gather_predictions(predict(model, build_split_loader(cfg, "val", ctx), device=ctx.device, progress=False))
    assert set(preds.timestamps.tolist()) == {904}  # the val split (902..906) keeps second 904 only
    kw = builders.evaluation_kwargs(cfg, during_training=True)
    assert kw["keyframe_stride"] == 4
    out = evaluate_predictions(preds, **kw)
    gt = read_groundtruth_csv(kw["groundtruth_path"])
    mini = gt[gt["timestamp"].astype(int) % 4 == 0]
    assert len(out.groundtruth) == len(mini) > 0
    assert out.map == pytest.approx(evaluate(mini, out.detections, kw["labelmap_path"]).mean_ap, abs=1e-12)


class _ToyItems(torch.utils.data.Dataset):
    """Items in the AVA dataset's layout: one (3, 2, 4, 4) clip, 1-3 boxes with random multi-hot labels."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        k = 1 + i % 3
        return {
            "inputs": [torch.randn(3, 2, 4, 4, generator=g)],
            "boxes": np.random.rand(k, 4),
            "ori_boxes": np.zeros((k, 4)),
            "labels": (torch.rand(k, 5, generator=g) > 0.5).float().numpy(),
            "metadata": np.zeros((k, 2), np.int64),
            "video_id": "v",
            "index": i,
        }


class _ToyModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 5)

    def forward(self, inputs: list[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        feats = inputs[0].mean(dim=(2, 3, 4))  # (B, 3)
        return self.fc(feats[boxes[:, 0].long()] * (1 + boxes[:, 1:2]))  # (N, 5)


@pytest.mark.parametrize("clip", [("value", 1e-3), ("l2norm", 1e-3), (None, None)])
def test_trainer_step_is_mean_bce_gradient_with_clipping(clip: tuple, tmp_path: Path) -> None:
    from slowfast_det.data import ava_collate
    from slowfast_det.engine.distributed import init_distributed
    from slowfast_det.engine.solver import LRSchedule, build_optimizer
    from slowfast_det.engine.trainer import Trainer

    torch.manual_seed(0)
    model = _ToyModel()
    loader = build_loader(_ToyItems(), collate_fn=ava_collate, train=True, global_batch_size=4, seed=2)
    set_loader_epoch(loader, 0)
    (batch,) = list(loader)  # the one batch the trainer will see
    ref = _ToyModel()
    ref.load_state_dict(model.state_dict())
    loss = torch.nn.functional.binary_cross_entropy_with_logits(ref(batch["inputs"], batch["boxes"]), batch["labels"])
    loss.backward()  # PySlowFast's loss: the mean over every box and class
    grads: dict[str, torch.Tensor] = {n: p.grad for n, p in ref.named_parameters() if p.grad is not None}
    kind, c = clip
    if kind == "value":
        expected = {n: ref.state_dict()[n] - g.clamp(-c, c) for n, g in grads.items()}
    elif kind == "l2norm":
        norm = torch.cat([g.flatten() for g in grads.values()]).norm()
        assert norm > c
        expected = {n: ref.state_dict()[n] - g * (c / norm) for n, g in grads.items()}
    else:
        expected = {n: ref.state_dict()[n] - g for n, g in grads.items()}
    trainer = Trainer(
        model=model,
        optimizer=build_optimizer(model, base_lr=1.0, momentum=0.0, weight_decay=0.0, nesterov=False),
        schedule=LRSchedule(policy="constant", base_lr=1.0, max_epoch=1),
        train_loader=loader,
        ctx=init_distributed(use_gpu=False),
        output_dir=tmp_path,
        max_epoch=1,
        progress=False,
        clip_grad_val=c if kind == "value" else None,
        clip_grad_l2norm=c if kind == "l2norm" else None,
    )
    (record,) = trainer.fit()
    assert record["loss"] == pytest.approx(float(loss.detach()), rel=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[n], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------- pieces
def test_loss_is_pyslowfast_mean_bce() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 9) * 3, (torch.rand(5, 9) > 0.7).float()
    naive = (
        sum(
            -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))
            for x, y in zip(logits.flatten().tolist(), labels.flatten().tolist(), strict=True)
        )
        / labels.numel()
    )
    assert float(detection_loss_sum(logits, labels)) / labels.numel() == pytest.approx(naive, rel=1e-5)
    assert float(detection_loss_sum(logits, labels)) / labels.numel() == pytest.approx(
        float(torch.nn.BCELoss()(torch.sigmoid(logits), labels)), rel=1e-5
    )


@pytest.mark.parametrize("n,batch,world", [(10, 4, 2), (13, 6, 3), (8, 2, 1)])
def test_sharded_batches_equal_the_single_process_batches(n: int, batch: int, world: int) -> None:
    for epoch in range(2):
        single = ShardedSampler(n, seed=5, global_batch_size=batch, drop_last=True)
        single.set_epoch(epoch)
        order = single.indices()
        assert len(order) == (n // batch) * batch and len(set(order)) == len(order)
        ranks = []
        for r in range(world):
            s = ShardedSampler(n, rank=r, world_size=world, seed=5, global_batch_size=batch, drop_last=True)
            s.set_epoch(epoch)
            ranks.append(s.indices())
        per = batch // world
        for step in range(n // batch):
            union = sorted(i for idx in ranks for i in idx[step * per : (step + 1) * per])
            assert union == sorted(order[step * batch : (step + 1) * batch])
    a, b = ShardedSampler(n, seed=5), ShardedSampler(n, seed=5)
    b.set_epoch(1)
    assert a.indices() != b.indices() and sorted(a.indices()) == sorted(b.indices())


class _RandomItems(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> dict:
        return {"x": float(torch.rand(())), "y": float(np.random.rand()), "i": i}


def test_seeded_samples_depend_only_on_seed_epoch_and_index() -> None:
    ds = SeededSamples(_RandomItems(), seed=1)
    forward = [ds[i] for i in range(6)]
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    backward = [ds[i] for i in reversed(range(6))][::-1]
    assert torch.equal(torch.rand(3), before)  # the caller's RNG is untouched
    assert forward == backward
    ds.set_epoch(1)
    assert ds[0] != forward[0] and ds[0][0] == 0


def test_loader_test_batches_keep_groups_apart() -> None:
    def collate(items: Sequence) -> dict:
        return {
            "boxes": torch.tensor([[float(b), 0, 0, 1, 1] for b in range(len(items))]),
            "i": [it["i"] for it in items],
        }

    groups = np.array([0, 0, 0, 1, 1, 2])
    seen = []
    for r in range(2):
        loader = build_loader(
            _RandomItems(),
            collate_fn=collate,
            train=False,
            global_batch_size=4,
            rank=r,
            world_size=2,
            group_ids=groups,
        )
        set_loader_epoch(loader, 0)
        for batch in loader:
            assert len(set(groups[batch["i"]])) == 1 and batch["sample_index"].tolist() == batch["i"]
            seen.extend(batch["i"])
    assert sorted(seen) == list(range(6))


def _preds(samples: list[int], boxes_per: int = 2) -> Predictions:
    idx = np.repeat(np.asarray(samples, np.int64), boxes_per)
    return Predictions(
        sample_index=idx,
        video_ids=np.asarray([f"v{i}" for i in idx], dtype=object),
        timestamps=902 + idx,
        boxes=np.tile(np.arange(boxes_per, dtype=np.float64)[:, None] / 10, (len(samples), 4)),
        scores=(idx[:, None] + np.arange(3)[None] / 10).astype(np.float32),
    )


def test_merge_predictions_drops_padding_duplicates_and_restores_order() -> None:
    rank0, rank1 = _preds([0, 2, 4]), _preds([1, 3, 0])  # sample 0 padded onto rank 1
    merged = merge_predictions([rank0, rank1])
    single = _preds([0, 1, 2, 3, 4])
    for field in ("sample_index", "timestamps", "boxes", "scores"):
        np.testing.assert_array_equal(getattr(merged, field), getattr(single, field))
    assert merged.video_ids.tolist() == single.video_ids.tolist()


def test_detections_frame_rows_and_round_trip(tmp_path: Path) -> None:
    scores = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32)
    boxes = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]])
    frame = detections_frame(video_ids=["a", "b"], timestamps=[902, 903], boxes=boxes, scores=scores, class_ids=[3, 1])
    assert frame.values.tolist() == [
        ["a", 902, 0.1, 0.2, 0.3, 0.4, 1, pytest.approx(0.1)],
        ["a", 902, 0.1, 0.2, 0.3, 0.4, 3, pytest.approx(0.3)],
        ["b", 903, 0.5, 0.6, 0.7, 0.8, 1, pytest.approx(0.4)],
        ["b", 903, 0.5, 0.6, 0.7, 0.8, 3, pytest.approx(0.6)],
    ]
    path = write_detections_csv(tmp_path / "d.csv", frame)
    back = read_detections_csv(path)
    assert back["video_id"].tolist() == ["a", "a", "b", "b"] and back["action_id"].tolist() == [1, 3, 1, 3]
    np.testing.assert_array_equal(back["score"].to_numpy().astype(np.float32), frame["score"].to_numpy())
    with pytest.raises(ValueError, match="class ids"):
        detections_frame(video_ids=["a", "b"], timestamps=[902, 903], boxes=boxes, scores=scores, class_ids=[4])
