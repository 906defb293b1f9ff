"""Run logs: console/file logging, a per-iteration CSV, a per-epoch JSON-lines file and TensorBoard scalars.

Only rank 0 writes. Files under the output folder:

* ``train_log.txt``: the Python log;
* ``train_iters.csv``: ``epoch, iter, step, loss, lr, time_s`` per iteration (``time_s``: seconds of the step);
* ``train_epochs.jsonl``: one JSON object per epoch (mean loss, last lr, seconds, evaluation metrics).

The two tables are append-only logs (a crash leaves whole lines); when a run resumes at epoch ``e``, rows of
epochs ``>= e`` left by the interrupted run are dropped first (the table is rewritten atomically), so a
resumed run's log reads like an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ava_tools.atomic import write_text_atomic

__all__ = ["ITER_COLUMNS", "RunLog", "setup_logging"]

ITER_COLUMNS = ["epoch", "iter", "step", "loss", "lr", "time_s"]


def setup_logging(output_dir: str | os.PathLike[str] | None, *, is_main: bool, filename: str = "train_log.txt") -> None:
    """Log INFO to stdout (and ``output_dir/filename``) on rank 0; only errors on the other ranks."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_slowfast_det", False):
            root.removeHandler(handler)
            handler.close()
    fmt = logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s", "%m/%d %H:%M:%S")
    # a caller that already logs to the console (e.g. the demo's basicConfig) keeps its handler: no double lines
    console = any(type(h) is logging.StreamHandler for h in root.handlers)
    handlers: list[logging.Handler] = [] if console else [logging.StreamHandler(sys.stdout)]
    if is_main and output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(output_dir) / filename))
    for handler in handlers:
        handler.setFormatter(fmt)
        handler._slowfast_det = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO if is_main else logging.ERROR)


class RunLog:
    """Training logs of rank 0 (every method is a no-op elsewhere).

    Args:
        output_dir: folder of the tables.
        enabled: False on ranks other than 0.
        tensorboard_dir: write TensorBoard scalars there (``None``: no TensorBoard).
        start_epoch: first epoch this run trains; rows of later epochs already in the tables are dropped.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        *,
        enabled: bool = True,
        tensorboard_dir: str | os.PathLike[str] | None = None,
        start_epoch: int = 0,
    ) -> None:
        self.enabled = enabled
        self.iters_path = Path(output_dir) / "train_iters.csv"
        self.epochs_path = Path(output_dir) / "train_epochs.jsonl"
        self._writer: Any = None
        if not enabled:
            return
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        self._truncate(start_epoch)
        if not self.iters_path.exists() or self.iters_path.stat().st_size == 0:
            write_text_atomic(",".join(ITER_COLUMNS) + "\n", self.iters_path)
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(tensorboard_dir))

    def _truncate(self, start_epoch: int) -> None:
        if self.iters_path.exists():
            with open(self.iters_path, newline="") as f:
                rows = list(csv.reader(f))
            if rows and rows[0] != ITER_COLUMNS:
                raise ValueError(f"{self.iters_path}: header {rows[0]} is not {ITER_COLUMNS}; move the file away")
            kept = [rows[0]] + [r for r in rows[1:] if len(r) == len(ITER_COLUMNS) and int(r[0]) < start_epoch]
            write_text_atomic("".join(",".join(r) + "\n" for r in kept) if rows else "", self.iters_path)
        if self.epochs_path.exists():
            lines = []
            for line in self.epochs_path.read_text().splitlines():
                if line.strip() and json.loads(line)["epoch"] < start_epoch:
                    lines.append(line + "\n")
            write_text_atomic("".join(lines), self.epochs_path)

    def log_iter(self, *, epoch: int, iteration: int, step: int, loss: float, lr: float, time_s: float) -> None:
        """Append one iteration row (and TensorBoard ``Train/loss``, ``Train/lr`` at ``step``)."""
        if not self.enabled:
            return
        with open(self.iters_path, "a", newline="") as f:
            csv.writer(f).writerow([epoch, iteration, step, repr(float(loss)), repr(float(lr)), f"{time_s:.4f}"])
        if self._writer is not None:
            self._writer.add_scalar("Train/loss", loss, step)
            self._writer.add_scalar("Train/lr", lr, step)

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Append one epoch record (must hold ``epoch``); numeric ``eval/*`` entries also go to TensorBoard."""
        if not self.enabled:
            return
        with open(self.epochs_path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                if key.startswith("eval/") and isinstance(value, int | float):
                    self._writer.add_scalar("Val/" + key[len("eval/") :], value, record["epoch"])
            self._writer.flush()

    def epoch_record(self, epoch: int) -> dict[str, Any] | None:
        """The logged record of ``epoch`` (the last one if several), ``None`` if absent or on other ranks."""
        if not self.enabled or not self.epochs_path.exists():
            return None
        found = None
        for line in self.epochs_path.read_text().splitlines():
            if line.strip() and (record := json.loads(line))["epoch"] == epoch:
                found = record
        return found

    def epoch_record_from_iters(self, epoch: int) -> dict[str, Any] | None:
        """``epoch``'s record rebuilt from its ``train_iters.csv`` rows (mean loss, last lr, iterations, summed
        step seconds), for an epoch whose record was never written; ``None`` without rows."""
        if not self.enabled or not self.iters_path.exists():
            return None
        with open(self.iters_path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("epoch") == str(epoch)]
        if not rows:
            return None
        losses = [float(r["loss"]) for r in rows]
        return {
            "epoch": epoch,
            "iters": len(rows),
            "loss": float(np.mean(losses)),  # as Trainer.train_one_epoch computes it
            "lr": float(rows[-1]["lr"]),
            "time_s": sum(float(r["time_s"]) for r in rows),
        }

    def replace_epoch(self, record: dict[str, Any]) -> None:
        """Log ``record`` in place of any record of the same epoch (see :meth:`log_epoch`)."""
        if not self.enabled:
            return
        if self.epochs_path.exists():
            kept = [
                line + "\n"
                for line in self.epochs_path.read_text().splitlines()
                if line.strip() and json.loads(line)["epoch"] != record["epoch"]
            ]
            write_text_atomic("".join(kept), self.epochs_path)
        self.log_epoch(record)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
