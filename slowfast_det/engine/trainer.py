"""The training loop: PySlowFast's AVA recipe on one process or many.

Per iteration ``i`` of epoch ``e`` (``I`` iterations per epoch): the learning rate is ``schedule.lr_at(e + i/I)``;
the loss is binary cross-entropy with logits over every box and class, summed and divided by the number of
box-class pairs in the *global* batch (PySlowFast's ``BCELoss(reduction="mean")`` on one GPU; with several
processes PySlowFast averages per-GPU means, which weighs boxes unequally when the GPUs hold different numbers
of boxes; here the K-process run computes the same loss and gradient as one process with the same global
batch). Then optional gradient clipping (element-wise value or global L2 norm), SGD step. Mixed precision
(``torch.autocast`` float16 + ``GradScaler``) runs on GPU only.

Reproducibility: each epoch starts by seeding torch/numpy/random from ``(seed, epoch, rank)``, the sampler
permutes from ``seed + epoch`` and each sample is augmented under its own seed
(:mod:`slowfast_det.engine.loader`). A run resumed from the checkpoint of epoch ``e`` therefore repeats the
uninterrupted run's later epochs exactly (same batches, same dropout masks, same losses).

Checkpoints: ``{output_dir}/checkpoints/checkpoint_epoch_{e+1:05d}.pyth`` after 0-based epoch ``e`` when
``(e + 1) % checkpoint_period == 0`` or it is the last epoch (as PySlowFast), written by rank 0 atomically;
they hold the model, optimizer, schedule, epoch (0-based, the last finished one, as PySlowFast), RNG states and
the ``GradScaler`` state.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from slowfast_det.engine.distributed import DistContext, all_reduce_sum, barrier
from slowfast_det.engine.loader import set_loader_epoch
from slowfast_det.engine.logs import RunLog
from slowfast_det.engine.solver import LRSchedule, set_lr

__all__ = [
    "CHECKPOINT_PATTERN",
    "Trainer",
    "checkpoint_path",
    "detection_loss_sum",
    "find_checkpoints",
    "find_last_checkpoint",
    "is_period_epoch",
    "seed_everything",
]

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint_epoch_(\d{5,})\.pyth$")

#: Evaluation callback: ``(model, epoch) -> metrics`` (called on every rank; metrics meaningful on rank 0).
Evaluator = Callable[[nn.Module, int], dict[str, float] | None]


def checkpoint_path(output_dir: str | os.PathLike[str], epoch: int) -> Path:
    """Checkpoint file written after 0-based ``epoch``: ``checkpoints/checkpoint_epoch_{epoch+1:05d}.pyth``."""
    return Path(output_dir) / "checkpoints" / f"checkpoint_epoch_{epoch + 1:05d}.pyth"


def find_checkpoints(output_dir: str | os.PathLike[str]) -> list[Path]:
    """The checkpoints in ``output_dir/checkpoints``, latest epoch first (empty if there is none)."""
    folder = Path(output_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def find_last_checkpoint(output_dir: str | os.PathLike[str]) -> Path | None:
    """The checkpoint of the latest epoch in ``output_dir/checkpoints`` (``None`` if there is none)."""
    found = find_checkpoints(output_dir)
    return found[0] if found else None


def is_period_epoch(epoch: int, period: int, max_epoch: int) -> bool:
    """PySlowFast's ``is_checkpoint_epoch`` / ``is_eval_epoch``: after every ``period`` epochs and the last."""
    return epoch + 1 == max_epoch or (period > 0 and (epoch + 1) % period == 0)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global RNG and Python's ``random``."""
    import random

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def detection_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over boxes and classes of binary cross-entropy with logits.

    Args:
        logits: (N, C) raw scores (any float dtype; computed in float32).
        labels: (N, C) multi-hot targets in {0, 1}.
    Returns:
        A scalar float32 tensor; divide by the number of elements for PySlowFast's mean.
    """
    if logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must have the same shape")
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="sum")


def _to_device(batch: dict[str, Any], device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    non_blocking = device.type == "cuda"
    inputs = [x.to(device, non_blocking=non_blocking) for x in batch["inputs"]]
    boxes = batch["boxes"].to(device, non_blocking=non_blocking)
    labels = batch["labels"].to(device, non_blocking=non_blocking)
    return inputs, boxes, labels


class Trainer:
    """Train a box-level action model (``model(inputs, boxes) -> (N, C) logits``) epoch by epoch.

    Args:
        model: the bare model (wrapped in DistributedDataParallel here when several processes run).
        optimizer: over ``model``'s parameters (:func:`slowfast_det.engine.solver.build_optimizer`).
        schedule: learning rate per fractional epoch.
        train_loader: from :func:`slowfast_det.engine.loader.build_loader` (``train=True``); batches are
            dicts with ``inputs`` (list of (B, 3, T, H, W)), ``boxes`` (N, 5), ``labels`` (N, C) and
            ``sample_index`` (N,).
        ctx: this process (:func:`slowfast_det.engine.distributed.init_distributed`).
        output_dir: checkpoints and logs go here (rank 0 writes).
        max_epoch: epochs to train (``SOLVER.MAX_EPOCH``).
        checkpoint_period, eval_period: in epochs (see :func:`is_period_epoch`).
        clip_grad_val: clip every gradient element to ``[-v, v]`` (``None``/0: off).
        clip_grad_l2norm: clip the global gradient L2 norm (``None``/0: off; used only when no value clip).
        mixed_precision: float16 autocast + GradScaler (ignored on CPU).
        seed: run seed (``RNG_SEED``).
        log_period: log loss and rate every that many iterations (``LOG_PERIOD``); every iteration goes to
            the CSV log regardless.
        evaluator: called after evaluation epochs with the bare model; its metrics are logged. A resumed run
            whose checkpoint epoch was an evaluation epoch without a logged evaluation (it failed or was
            interrupted) evaluates that epoch first.
        prepare_evaluation: called once at the start of :meth:`fit` when this run will evaluate, before any
            training (e.g. to check the test inputs and build the test loader, so that a missing file stops
            the run before hours of training rather than after).
        run_config: the run's config (``CfgNode``), stored in checkpoints as YAML.
        tensorboard_dir: TensorBoard log folder (``None``: off).
        progress: show a tqdm bar on rank 0.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: LRSchedule,
        train_loader: DataLoader[Any],
        ctx: DistContext,
        output_dir: str | os.PathLike[str],
        max_epoch: int,
        checkpoint_period: int = 1,
        eval_period: int = 1,
        clip_grad_val: float | None = None,
        clip_grad_l2norm: float | None = None,
        mixed_precision: bool = False,
        seed: int = 0,
        log_period: int = 10,
        evaluator: Evaluator | None = None,
        prepare_evaluation: Callable[[], None] | None = None,
        run_config: Any = None,
        tensorboard_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.optimizer, self.schedule, self.loader, self.ctx = optimizer, schedule, train_loader, ctx
        self.output_dir = Path(output_dir)
        self.max_epoch, self.checkpoint_period, self.eval_period = max_epoch, checkpoint_period, eval_period
        self.clip_grad_val, self.clip_grad_l2norm = clip_grad_val, clip_grad_l2norm
        self.amp = bool(mixed_precision) and ctx.device.type == "cuda"
        if mixed_precision and not self.amp:
            logger.info("TRAIN.MIXED_PRECISION is ignored on CPU (float32 training)")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.seed, self.log_period, self.evaluator, self.run_config = seed, log_period, evaluator, run_config
        self.prepare_evaluation = prepare_evaluation
        self.tensorboard_dir, self.progress = tensorboard_dir, progress
        self.net: nn.Module = model
        if ctx.distributed:
            self.net = nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
        self.start_epoch = 0

    # ---------------------------------------------------------------------------------------------- state
    def resume(self, path: str | os.PathLike[str]) -> int:
        """Restore model, optimizer, GradScaler and RNG states from one of our training checkpoints.

        Returns:
            The epoch to start from (saved epoch + 1).
        Raises:
            CheckpointError: the file cannot be read, is not a training checkpoint (no optimizer state or
                epoch) or does not fit the model / optimizer.
        """
        from slowfast_det.checkpoint import load_checkpoint

        path = Path(path)
        return self._restore(path, load_checkpoint(path))

    def auto_resume(self) -> Path | None:
        """Resume from the newest checkpoint in ``output_dir/checkpoints`` that can be read.

        A checkpoint that cannot be read (e.g. truncated by a crash or a full disk while it was copied) is
        skipped with a warning giving the reason, and the next older one is used: the run repeats the
        epochs after it. A checkpoint that is read but does not fit the model is an error (an older one
        would not fit either).

        Returns:
            The checkpoint resumed from, ``None`` when there is none (nothing restored).
        Raises:
            CheckpointError: checkpoints exist but none can be read (each reason listed), or one does not
                fit the model.
        """
        from slowfast_det.checkpoint import CheckpointError, load_checkpoint

        skipped: list[str] = []
        for path in find_checkpoints(self.output_dir):
            try:
                state = load_checkpoint(path)
            except CheckpointError as exc:
                logger.warning("auto-resume: skipping %s, it cannot be read: %s", path.name, exc)
                skipped.append(str(exc))
                continue
            self._restore(path, state)
            if skipped:
                logger.warning(
                    "auto-resume: resumed from %s after skipping %d newer checkpoint(s) that cannot be read; "
                    "the epochs after it are trained again", path, len(skipped),
                )
            return path
        if skipped:
            raise CheckpointError(
                f"auto-resume: no checkpoint in {self.output_dir / 'checkpoints'} can be read ("
                + "; ".join(skipped)
                + "); move them away to train from the start"
            )
        return None

    def _restore(self, path: Path, state: dict[str, Any]) -> int:
        from slowfast_det.checkpoint import CheckpointError, restore_rng_state

        missing = [k for k in ("model_state", "optimizer_state", "epoch") if state.get(k) is None]
        if missing:
            raise CheckpointError(
                f"{path}: cannot resume training from it, it has no {', '.join(missing)} "
                "(use TRAIN.CHECKPOINT_FILE_PATH for initial weights)"
            )
        try:
            self.model.load_state_dict(state["model_state"], strict=True)
        except RuntimeError as exc:  # torch names every missing / unexpected / mis-shaped key
            detail = " ".join(str(exc).split())
            raise CheckpointError(
                f"{path}: does not fit the model of this config (was it written with another config?): "
                + (detail if len(detail) <= 800 else detail[:800] + " ...")
            ) from exc
        try:
            self.optimizer.load_state_dict(state["optimizer_state"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: its optimizer state does not fit this optimizer: {exc}") from exc
        saved_schedule = state.get("scheduler_state")
        if isinstance(saved_schedule, dict) and (diff := self.schedule.differences(saved_schedule)):
            logger.warning("%s: the learning-rate schedule differs from the checkpoint's: %s", path, "; ".join(diff))
        extra = state.get("extra") or {}
        if extra.get("scaler") is not None:
            self.scaler.load_state_dict(extra["scaler"])
        if state.get("rng_state") is not None:
            restore_rng_state(state["rng_state"])
        self.start_epoch = int(state["epoch"]) + 1
        if self.start_epoch < self.max_epoch:
            logger.info("resumed from %s: next epoch %d of %d", path, self.start_epoch + 1, self.max_epoch)
        else:
            logger.info("resumed from %s: all %d epochs are trained", path, self.max_epoch)
        return self.start_epoch

    def save(self, epoch: int) -> Path:
        """Write the checkpoint of 0-based ``epoch`` (rank 0) and wait for it on every rank."""
        path = checkpoint_path(self.output_dir, epoch)
        if self.ctx.is_main:
            from slowfast_det.checkpoint import save_checkpoint

            path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(
                path,
                model=self.model,
                cfg=self.run_config,
                optimizer=self.optimizer,
                scheduler=self.schedule,
                epoch=epoch,
                extra={"scaler": self.scaler.state_dict() if self.amp else None},
            )
            logger.info("wrote %s", path)
        barrier()
        return path

    # ---------------------------------------------------------------------------------------------- loop
    def fit(self) -> list[dict[str, Any]]:
        """Train from ``self.start_epoch`` to ``max_epoch``; returns the per-epoch records.

        First, on a resumed run, the evaluation of the checkpoint's epoch is run if it was due and is not in
        ``train_epochs.jsonl`` (see the class docstring).
        """
        log = RunLog(
            self.output_dir,
            enabled=self.ctx.is_main,
            tensorboard_dir=self.tensorboard_dir,
            start_epoch=self.start_epoch,
        )
        records = []
        try:
            pending = self._missing_evaluation(log)
            trains = self.start_epoch < self.max_epoch  # the last epoch is always evaluated
            if self.evaluator is not None and self.prepare_evaluation is not None and (trains or pending):
                self.prepare_evaluation()
            if pending:
                records.append(self._evaluate_missing(log))
            elif not trains:
                logger.info("nothing to do: all %d epochs are trained and evaluated (%s)", self.max_epoch,
                            log.epochs_path)
            for epoch in range(self.start_epoch, self.max_epoch):
                record = self.train_one_epoch(epoch, log)
                if is_period_epoch(epoch, self.checkpoint_period, self.max_epoch):
                    self.save(epoch)
                if self.evaluator is not None and is_period_epoch(epoch, self.eval_period, self.max_epoch):
                    metrics = self.evaluator(self.model, epoch) or {}
                    record.update({f"eval/{k}": v for k, v in metrics.items()})
                log.log_epoch(record)
                records.append(record)
        finally:
            log.close()
        return records

    def _missing_evaluation(self, log: RunLog) -> bool:
        """Whether the epoch restored from the checkpoint was due an evaluation that was never logged (rank
        0 reads the log; every rank gets its answer)."""
        from slowfast_det.engine.distributed import broadcast_object

        epoch = self.start_epoch - 1
        if self.evaluator is None or epoch < 0 or not is_period_epoch(epoch, self.eval_period, self.max_epoch):
            return False
        missing = False
        if self.ctx.is_main:
            record = log.epoch_record(epoch)
            missing = record is None or not any(k.startswith("eval/") for k in record)
        return bool(broadcast_object(missing))

    def _evaluate_missing(self, log: RunLog) -> dict[str, Any]:
        """Evaluate the restored epoch and log its record (rebuilt from ``train_iters.csv``)."""
        assert self.evaluator is not None
        epoch = self.start_epoch - 1
        logger.warning(
            "epoch %d is trained (%s) but its evaluation is not in %s (it failed or was interrupted): "
            "evaluating it now", epoch + 1, checkpoint_path(self.output_dir, epoch).name, log.epochs_path,
        )
        record = log.epoch_record(epoch) or log.epoch_record_from_iters(epoch) or {"epoch": epoch}
        metrics = self.evaluator(self.model, epoch) or {}
        record.update({f"eval/{k}": v for k, v in metrics.items()})
        log.replace_epoch(record)
        return record

    def train_one_epoch(self, epoch: int, log: RunLog) -> dict[str, Any]:
        """One pass over the training loader; returns ``{"epoch", "loss", "lr", "time_s", "iters"}``."""
        ctx = self.ctx
        seed_everything(int(np.random.SeedSequence([self.seed, epoch, ctx.rank, 7]).generate_state(1)[0]))
        set_loader_epoch(self.loader, epoch)
        self.net.train()
        iters = len(self.loader)
        if iters == 0:
            raise ValueError("the training loader is empty (fewer samples than one global batch?)")
        losses: list[float] = []
        start = tick = time.perf_counter()
        lr = self.schedule.lr_at(epoch)
        bar = tqdm(
            self.loader, total=iters, desc=f"epoch {epoch + 1}/{self.max_epoch}",
            disable=not (self.progress and ctx.is_main), dynamic_ncols=True, leave=False,  # one bar at a time
        )
        batch_iter = iter(bar)
        for it in range(iters):
            try:
                batch = next(batch_iter)
            except StopIteration:
                raise RuntimeError(f"the training loader stopped after {it} of {iters} batches") from None
            except Exception as exc:
                exc.add_note(f"(loading training batch {it} of epoch {epoch + 1})")
                raise
            lr = self.schedule.lr_at(epoch + it / iters)
            set_lr(self.optimizer, lr)
            loss = self._step(batch, epoch, it)
            now = time.perf_counter()
            losses.append(loss)
            log.log_iter(epoch=epoch, iteration=it, step=epoch * iters + it, loss=loss, lr=lr, time_s=now - tick)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}", refresh=False)
            if self.log_period > 0 and (it + 1) % self.log_period == 0:
                logger.info("epoch %d/%d iter %d/%d: loss %.5f, lr %.4g, %.3f s/iter", epoch + 1, self.max_epoch,
                            it + 1, iters, loss, lr, (now - start) / (it + 1))
            tick = now
        bar.close()
        record = {
            "epoch": epoch,
            "iters": iters,
            "loss": float(np.mean(losses)),
            "lr": lr,
            "time_s": time.perf_counter() - start,
        }
        logger.info("epoch %d/%d: mean loss %.5f, lr %.4g, %.1f s", epoch + 1, self.max_epoch, record["loss"], lr,
                    record["time_s"])
        return record

    def _step(self, batch: dict[str, Any], epoch: int, it: int) -> float:
        """Forward, backward and update on one batch; returns the global mean loss."""
        ctx = self.ctx
        inputs, boxes, labels = _to_device(batch, ctx.device)
        with torch.autocast(device_type=ctx.device.type, dtype=torch.float16, enabled=self.amp):
            logits = self.net(inputs, boxes)
        loss_sum = detection_loss_sum(logits, labels)
        # one all-reduce gives the global element count (for the loss scale) and the global loss (for the log)
        total_elements, total_loss = all_reduce_sum([labels.numel(), float(loss_sum.detach())], ctx.device)
        if total_elements == 0:
            raise ValueError(f"training batch {it} of epoch {epoch + 1} has no box on any process")
        mean_loss = total_loss / total_elements
        if not math.isfinite(mean_loss):
            samples = batch["sample_index"].unique().tolist()
            raise FloatingPointError(
                f"loss is {mean_loss} at epoch {epoch + 1}, iteration {it} (dataset samples {samples} on rank "
                f"{ctx.rank}); lower SOLVER.BASE_LR or enable gradient clipping"
            )
        # DDP averages gradients over processes, hence the factor world_size
        loss = loss_sum * (ctx.world_size / total_elements)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.clip_grad_val or self.clip_grad_l2norm:
            self.scaler.unscale_(self.optimizer)
            params = [p for p in self.model.parameters() if p.grad is not None]
            if self.clip_grad_val:
                nn.utils.clip_grad_value_(params, self.clip_grad_val)
            else:
                nn.utils.clip_grad_norm_(params, self.clip_grad_l2norm)  # type: ignore[arg-type]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return mean_loss
