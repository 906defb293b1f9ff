"""One process or many: ``torch.distributed`` set up from the environment ``torchrun`` provides.

``torchrun --nproc_per_node=K [--nnodes=N --rdzv-endpoint=HOST:PORT] -m slowfast_det.tools.train_net ...``
sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; the
process group is initialised from them (``init_method="env://"``). Without ``WORLD_SIZE`` (a plain ``python``
run) the job is a single process and no process group is created, so every helper here also works alone.

Backend: NCCL when the process uses a GPU (one GPU per process, ``cuda:LOCAL_RANK``), gloo on CPU.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "all_gather_objects",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "shutdown_distributed",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands.

    Attributes:
        rank: global rank (0 = the process that writes files).
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        num_nodes: number of nodes (``WORLD_SIZE / LOCAL_WORLD_SIZE``; PySlowFast's NUM_SHARDS).
        device: the device this process computes on.
        backend: ``"nccl"``, ``"gloo"`` or ``None`` for a single process.
    """

    rank: int
    world_size: int
    local_rank: int
    num_nodes: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def init_distributed(
    *, use_gpu: bool = True, gpu_backend: str = "nccl", timeout_s: float = 1800.0
) -> DistContext:
    """Initialise the process group from torchrun's environment, or describe a single process.

    Args:
        use_gpu: compute on ``cuda:LOCAL_RANK`` when CUDA is available; False forces the CPU.
        gpu_backend: backend when on GPU (PySlowFast's ``DIST_BACKEND``; gloo is always used on CPU).
        timeout_s: collective-operation timeout in seconds.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world_size)
    on_gpu = use_gpu and torch.cuda.is_available()
    if on_gpu:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                "start at most one process per GPU (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    backend: str | None = None
    if world_size > 1:
        backend = gpu_backend if on_gpu else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(
                backend=backend,
                init_method="env://",
                timeout=datetime.timedelta(seconds=timeout_s),
                device_id=device if on_gpu else None,
            )
    num_nodes = max(1, world_size // max(1, local_world))
    return DistContext(rank, world_size, local_rank, num_nodes, device, backend)


def shutdown_distributed() -> None:
    """Destroy the process group if one exists (call at the end of a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    return dist.get_world_size() if _active() else 1


def barrier() -> None:
    """Wait for every process (no-op for a single process)."""
    if _active():
        dist.barrier()


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Sum each float over all processes (float64, so counts stay exact).

    Args:
        values: per-process numbers, the same count on every process.
        device: this process's device (NCCL needs CUDA tensors).
    """
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    if _active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(x) for x in t.cpu()]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's picklable ``obj``, in rank order (``[obj]`` for a single process)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every process (``obj`` itself for a single process)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
