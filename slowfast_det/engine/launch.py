"""Whole runs from a config: what ``slowfast-train`` and ``slowfast-test`` do.

These functions read no config key themselves: every value comes from a ``slowfast_det.builders`` function,
and the library pieces (model, dataset, loader, optimiser, schedule, :class:`Trainer`, :func:`run_test`) get
plain arguments.

Weights, in PySlowFast's order of precedence:

* training: ``resume`` (an explicit checkpoint), else with ``TRAIN.AUTO_RESUME`` the newest
  ``OUTPUT_DIR/checkpoints/checkpoint_epoch_*.pyth`` that can be read (model, optimizer, epoch, ... restored;
  an unreadable one, e.g. truncated, is skipped with a warning), else
  ``TRAIN.CHECKPOINT_FILE_PATH`` as *initial weights only* (start at epoch 0; when its head does not fit the
  model, e.g. a Kinetics classifier, only the backbone is loaded);
* testing: ``TEST.CHECKPOINT_FILE_PATH``, else the newest checkpoint in ``OUTPUT_DIR``, else
  ``TRAIN.CHECKPOINT_FILE_PATH``; with none of them the run stops (random weights are never tested silently).

Testing and the evaluation during training run in float32 (``TRAIN.MIXED_PRECISION`` applies to training).

Inputs are checked before the long work: the test files (label map against ``MODEL.NUM_CLASSES``, ground
truth, and, for training, the whole validation dataset) before any epoch is trained or any model runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from torch import nn

from slowfast_det import builders
from slowfast_det.engine.distributed import DistContext, init_distributed
from slowfast_det.engine.loader import build_loader
from slowfast_det.engine.logs import setup_logging
from slowfast_det.engine.solver import LRSchedule, build_optimizer
from slowfast_det.engine.tester import EvaluationOutput, check_test_inputs, format_results, run_test
from slowfast_det.engine.trainer import Trainer, checkpoint_path, find_last_checkpoint, seed_everything

__all__ = ["build_split_loader", "head_fits", "load_initial_weights", "test_from_config", "train_from_config"]

logger = logging.getLogger(__name__)


def head_fits(model: nn.Module, path: str | os.PathLike[str]) -> bool:
    """Whether every ``head.*`` tensor of the checkpoint has the shape of the model's (e.g. False for a
    400-class Kinetics checkpoint and an 80-class AVA model)."""
    from slowfast_det.checkpoint import c2_to_pytorch_name, read_checkpoint_file

    kind, obj = read_checkpoint_file(Path(path))
    if not isinstance(obj, dict):
        return False  # load_weights reports what is wrong with the file
    if kind == "caffe2":
        blobs = obj.get("blobs", obj)
        state = {c2_to_pytorch_name(k): v for k, v in blobs.items()}
    else:
        state = obj.get("model_state", obj)
    own = model.state_dict()
    names = {str(k).removeprefix("module."): v for k, v in state.items() if k is not None}
    heads = {k: v for k, v in names.items() if k.startswith("head.")}

    def core(shape: Any) -> list[int]:  # Caffe2 blobs may carry trailing singleton dimensions
        dims = [int(d) for d in shape]
        while dims and dims[-1] == 1:
            dims.pop()
        return dims

    return bool(heads) and all(k in own and core(own[k].shape) == core(v.shape) for k, v in heads.items())


def load_initial_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load weights to start from: everything when the checkpoint's head fits, else the backbone only."""
    from slowfast_det.checkpoint import load_weights

    backbone_only = not head_fits(model, path)
    report = load_weights(model, Path(path), backbone_only=backbone_only)
    logger.info("initial weights%s: %s", " (backbone only)" if backbone_only else "", report.summary())


def build_split_loader(cfg: Any, split: str, ctx: DistContext) -> Any:
    """The loader of ``split`` ("train", "val", "test") for this process (see ``engine.loader.build_loader``)."""
    from slowfast_det.data import ava_collate

    dataset = builders.build_dataset(cfg, split)
    # test clips keep each video's aspect ratio: batches must not mix videos
    groups = None if split == "train" else getattr(dataset, "keyframe_video_indices", None)
    return build_loader(
        dataset, collate_fn=ava_collate, rank=ctx.rank, world_size=ctx.world_size, group_ids=groups,
        **builders.loader_kwargs(cfg, split),
    )


def _model(cfg: Any, ctx: DistContext) -> nn.Module:
    from slowfast_det.models import build_model

    return build_model(cfg).to(ctx.device)


def train_from_config(
    cfg: Any, *, resume: str | os.PathLike[str] | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """Train as the config says (one process, or one of torchrun's); returns the per-epoch records."""
    ctx = init_distributed(**builders.distributed_kwargs(cfg))
    tk = builders.trainer_kwargs(cfg)
    setup_logging(tk["output_dir"], is_main=ctx.is_main)
    logger.info("training on %s, %d process(es)", ctx.device, ctx.world_size)
    seed_everything(tk["seed"])
    model = _model(cfg, ctx)
    optimizer = build_optimizer(model, **builders.optimizer_kwargs(cfg, num_nodes=ctx.num_nodes))
    schedule = LRSchedule(**builders.lr_schedule_kwargs(cfg, num_nodes=ctx.num_nodes))
    train_loader = build_split_loader(cfg, "train", ctx)

    eval_kwargs = builders.evaluation_kwargs(cfg, during_training=True)
    num_classes = builders.model_kwargs(cfg)["num_classes"]
    test_loader = None

    def prepare_evaluation() -> Any:
        """Check the test files and build the validation loader (once); returns the loader. Called before
        training: a missing or mismatched test file must not wait for the end of the last epoch."""
        nonlocal test_loader
        if test_loader is None:
            check_test_inputs(
                labelmap_path=eval_kwargs["labelmap_path"], groundtruth_path=eval_kwargs["groundtruth_path"],
                exclusions_path=eval_kwargs["exclusions_path"], num_classes=num_classes,
            )
            test_loader = build_split_loader(cfg, "val", ctx)  # PySlowFast validates on its "val" split
        return test_loader

    def evaluator(net: nn.Module, epoch: int) -> dict[str, float] | None:
        out = run_test(
            net, prepare_evaluation(), ctx=ctx, output_dir=tk["output_dir"], write_files=False, progress=progress,
            model_name=f"the model after epoch {epoch + 1} ({checkpoint_path(tk['output_dir'], epoch)})",
            **eval_kwargs, **builders.prediction_kwargs(cfg),
        )
        if out is None:
            return None
        logger.info("epoch %d evaluation:\n%s", epoch + 1, format_results(out))
        return {"mAP": out.map}

    trainer = Trainer(
        model=model, optimizer=optimizer, schedule=schedule, train_loader=train_loader, ctx=ctx,
        evaluator=evaluator, prepare_evaluation=prepare_evaluation, run_config=cfg, progress=progress, **tk,
    )
    weights = builders.weights_kwargs(cfg)
    if resume:
        trainer.resume(resume)
        last: Path | None = Path(resume)
    else:
        last = trainer.auto_resume() if weights["auto_resume"] else None
    if last is None and weights["train"] is not None:
        load_initial_weights(model, weights["train"])
    return trainer.fit()


def test_from_config(
    cfg: Any, *, use_exclusions: bool = False, allow_nonfinite: bool = False, progress: bool = True
) -> EvaluationOutput | None:
    """Test as the config says; rank 0 writes ``OUTPUT_DIR/{detections,groundtruth}.csv`` and ``metrics.json``
    and returns the evaluation (``None`` on other ranks).

    ``allow_nonfinite``: write NaN scores out and evaluate without them instead of stopping
    (:class:`slowfast_det.engine.tester.NonFiniteScoresError`).
    """
    ctx = init_distributed(**builders.distributed_kwargs(cfg))
    tk = builders.trainer_kwargs(cfg)
    setup_logging(tk["output_dir"], is_main=ctx.is_main, filename="test_log.txt")
    eval_kwargs = builders.evaluation_kwargs(cfg, use_exclusions=use_exclusions)
    check_test_inputs(
        labelmap_path=eval_kwargs["labelmap_path"], groundtruth_path=eval_kwargs["groundtruth_path"],
        exclusions_path=eval_kwargs["exclusions_path"], num_classes=builders.model_kwargs(cfg)["num_classes"],
    )
    seed_everything(tk["seed"])
    model = _model(cfg, ctx)
    weights = builders.weights_kwargs(cfg)
    path = weights["test"] or find_last_checkpoint(tk["output_dir"]) or weights["train"]
    if path is None:
        raise FileNotFoundError(
            "no weights to test: set TEST.CHECKPOINT_FILE_PATH, or train into OUTPUT_DIR first "
            f"({tk['output_dir']}/checkpoints is empty)"
        )
    from slowfast_det.checkpoint import load_weights

    logger.info("test weights: %s", load_weights(model, path).summary())
    _warn_nonfinite_weights(model, path)
    out = run_test(
        model, build_split_loader(cfg, "test", ctx), ctx=ctx, output_dir=tk["output_dir"], progress=progress,
        allow_nonfinite=allow_nonfinite, model_name=f"checkpoint {path}", **eval_kwargs,
        **builders.prediction_kwargs(cfg),
    )
    if out is not None:
        logger.info("%s\nwrote %s", format_results(out), Path(tk["output_dir"]) / "metrics.json")
    return out


def _warn_nonfinite_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Warn (once, naming the tensors) when the loaded weights hold NaN or infinite values: their scores will
    be NaN, which :func:`run_test` then reports."""
    import torch

    bad = {
        name: int((~torch.isfinite(t)).sum())
        for name, t in model.state_dict().items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    }
    if bad:
        listed = ", ".join(f"{name} ({n} values)" for name, n in list(bad.items())[:5])
        more = f" and {len(bad) - 5} more tensors" if len(bad) > 5 else ""
        logger.warning("%s: non-finite weights in %s%s", path, listed, more)
