"""Data loading that gives the same batches on 1 or K processes and after a resume.

Three pieces, each small:

* :class:`ShardedSampler` draws one permutation per epoch from ``seed + epoch`` (a private generator, so
  nothing else moves it), keeps whole global batches when training (``drop_last``) and gives rank ``r`` the
  positions ``r, r + K, r + 2K, ...``. With a per-rank batch of ``B / K`` the K rank batches of step ``i`` are
  exactly the global batch of step ``i`` of a single-process run.
* :class:`SeededSamples` runs ``dataset[i]`` with torch/numpy/random seeded from ``(seed, epoch, i)`` and
  restores the caller's RNG states afterwards, so random augmentation of a sample depends on nothing else
  (not the worker, rank, batch size or how the run was interrupted). It also returns ``i``.
* :class:`IndexedCollate` collates with the dataset's collate function and adds ``sample_index`` (one per box),
  used to remove the duplicates and restore the dataset order when predictions are gathered.

A user error raised while loading a sample in a worker process (a missing frame file: ``SampleError``) reaches
the main process as itself, message unchanged, not as torch's "Caught ... in DataLoader worker" error whose
message embeds the worker's traceback (the console scripts print user errors as one line).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import random
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from ava_tools.cli import UserError, is_user_error

__all__ = ["IndexedCollate", "SeededSamples", "ShardedSampler", "build_loader", "sample_seed", "set_loader_epoch"]

logger = logging.getLogger(__name__)


class ShardedSampler(Sampler[int]):
    """Per-epoch shuffled (or ordered) dataset indices for one rank.

    Args:
        num_samples: dataset length.
        rank, world_size: this process and the number of processes.
        seed: permutation seed; epoch ``e`` uses ``seed + e``.
        shuffle: permute (training) or keep the dataset order (testing).
        global_batch_size: when ``drop_last``, only the first ``floor(n / B) * B`` positions are used.
        drop_last: drop the incomplete last global batch (training). Without it the ranks' shares differ by
            at most one sample and nothing is padded or duplicated.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        global_batch_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        if drop_last and num_samples < global_batch_size:
            raise ValueError(
                f"the dataset has {num_samples} samples, fewer than one global batch of {global_batch_size}"
            )
        self.num_samples, self.rank, self.world_size = num_samples, rank, world_size
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0
        self.used = (num_samples // global_batch_size) * global_batch_size if drop_last else num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> list[int]:
        """This rank's indices for the current epoch."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        return order[: self.used][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return len(range(self.rank, self.used, self.world_size))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed that is a fixed function of ``(seed, epoch, index)``."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


@contextlib.contextmanager
def _isolated_rng(seed: int) -> Iterator[None]:
    """Seed torch (CPU), numpy's global and Python's ``random`` with ``seed``; restore them on exit."""
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()
    py_state = random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(torch_state)
        np.random.set_state(np_state)
        random.setstate(py_state)


class SeededSamples(Dataset[tuple[int, Any]]):
    """Wrap a map-style dataset: item ``i`` is ``(i, dataset[i])`` computed under RNGs seeded per sample.

    Args:
        dataset: any map-style dataset (e.g. the AVA dataset).
        seed: run seed (``RNG_SEED``).
    """

    def __init__(self, dataset: Dataset[Any], seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Any]:
        with _isolated_rng(sample_seed(self.seed, self.epoch, index)):
            try:
                sample = self.dataset[index]
            except Exception as exc:  # re-raised unchanged, with the sample's place added
                exc.add_note(f"(while loading dataset item {index})")
                if get_worker_info() is not None and is_user_error(exc):
                    return index, _WorkerUserError.of(exc)  # raised again in the main process
                raise
        return index, sample


class _WorkerUserError:
    """A user error of a DataLoader worker, carried to the main process (see the module docstring)."""

    def __init__(self, error: BaseException, worker_traceback: str) -> None:
        self.error, self.worker_traceback = error, worker_traceback

    @staticmethod
    def of(exc: BaseException) -> _WorkerUserError:
        try:  # it crosses a process boundary: it must unpickle as itself
            pickle.loads(pickle.dumps(exc))
            error = exc
        except Exception:  # noqa: BLE001 - any unpicklable exception is sent as its message
            error = UserError(str(exc))
        return _WorkerUserError(error, "".join(traceback.format_exception(exc)))

    def reraise(self) -> None:
        self.error.add_note(f"(in a DataLoader worker process:\n{self.worker_traceback.rstrip()})")
        raise self.error


class _Loader(DataLoader[Any]):
    """A DataLoader that raises a worker's user error (:class:`_WorkerUserError`) as itself."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        for batch in super().__iter__():
            if isinstance(batch, _WorkerUserError):
                batch.reraise()
            yield batch


class IndexedCollate:
    """Collate ``(index, sample)`` pairs with ``collate_fn`` and add ``sample_index`` per box.

    The wrapped collate must return a dict whose ``boxes`` is (N, 5) with the sample's position in the batch
    in column 0 (``ava_collate``). Added key: ``sample_index`` (N,) int64, the dataset index of each box.
    """

    def __init__(self, collate_fn: Callable[[Sequence[Any]], dict[str, Any]]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, items: Sequence[tuple[int, Any]]) -> Any:
        failed = next((s for _, s in items if isinstance(s, _WorkerUserError)), None)
        if failed is not None:
            return failed
        indices = torch.tensor([i for i, _ in items], dtype=torch.int64)
        batch = self.collate_fn([s for _, s in items])
        batch["sample_index"] = indices[batch["boxes"][:, 0].long()]
        return batch


def build_loader(
    dataset: Dataset[Any],
    *,
    collate_fn: Callable[[Sequence[Any]], dict[str, Any]],
    train: bool,
    global_batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    group_ids: np.ndarray | None = None,
) -> DataLoader[Any]:
    """A DataLoader over :class:`SeededSamples` (see the module docstring).

    Training: a shuffling :class:`ShardedSampler`, batches of ``global_batch_size / world_size``. Testing: the
    dataset order; with ``group_ids`` (e.g. the video of each keyframe) a batch never mixes two groups
    (test clips keep each video's aspect ratio) and batches go to the ranks in turn
    (``slowfast_det.data.VideoBatchSampler``), else rank ``r`` takes items ``r, r + K, ...``.
    Call :func:`set_loader_epoch` before iterating each epoch.

    Args:
        global_batch_size: samples per step over all processes; must be divisible by ``world_size``.
        train: shuffle and drop the last incomplete global batch.
        group_ids: (len(dataset),) test-time grouping, items of a group contiguous.

    Raises:
        ValueError: the global batch is not divisible by the number of processes.
    """
    if global_batch_size <= 0 or global_batch_size % world_size:
        raise ValueError(
            f"the global batch size {global_batch_size} must be a positive multiple of the number of "
            f"processes ({world_size}); each process takes batch / processes samples"
        )
    per_rank = global_batch_size // world_size
    if num_workers > 0 and getattr(dataset, "cache_clips", False):
        # workers restart every epoch (persistent_workers=False) and take their cache with them
        logger.warning(
            "DATA_LOADER.CACHE_CLIPS with %d worker processes: each worker refills its own cache every epoch, "
            "so nothing is saved; set DATA_LOADER.NUM_WORKERS 0 to keep the decoded clips", num_workers
        )
    common: dict[str, Any] = {
        "collate_fn": IndexedCollate(collate_fn),
        "num_workers": num_workers,
        "pin_memory": pin_memory,
        "persistent_workers": False,  # workers get a fresh copy of the dataset (and its epoch) every epoch
    }
    if not train and group_ids is not None:
        from slowfast_det.data import VideoBatchSampler

        if len(group_ids) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"group_ids has {len(group_ids)} entries for {len(dataset)} items")  # type: ignore[arg-type]
        batches = VideoBatchSampler(np.asarray(group_ids), per_rank, rank=rank, world_size=world_size)
        return _Loader(SeededSamples(dataset, seed), batch_sampler=batches, **common)
    sampler = ShardedSampler(
        len(dataset),  # type: ignore[arg-type]
        rank=rank,
        world_size=world_size,
        seed=seed,
        shuffle=train,
        global_batch_size=global_batch_size,
        drop_last=train,
    )
    return _Loader(
        SeededSamples(dataset, seed), batch_size=per_rank, sampler=sampler, drop_last=train, **common
    )


def set_loader_epoch(loader: DataLoader[Any], epoch: int) -> None:
    """Select the permutation and the per-sample seeds of ``epoch``."""
    dataset = loader.dataset
    if not isinstance(dataset, SeededSamples):
        raise TypeError("set_loader_epoch needs a loader made by build_loader")
    dataset.set_epoch(epoch)
    if isinstance(loader.sampler, ShardedSampler):
        loader.sampler.set_epoch(epoch)
