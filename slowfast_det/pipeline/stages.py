"""Stages in threads joined by bounded queues, with the exact results and errors of running them in sequence.

:func:`run_stages` runs ``fn_n(... fn_2(fn_1(item)))`` for every item of a source, each stage (the source's
iteration too) in its own thread, consecutive stages joined by a :class:`queue.Queue` of ``capacity`` items. A
stage works on item k+1 while the next one works on item k, so the wall time approaches the slowest stage
instead of the sum of all stages. Threads are enough: PyAV decoding, OpenCV, NumPy and torch operators release
the GIL.

**Same results as in sequence.** Items keep their order (one thread per stage, FIFO queues), and each stage
calls its function on the items one at a time, so a stage with state (e.g. a tracker) sees them as in a loop.

**Same errors as in sequence.** An exception raised by a stage (or by the source) on item k travels down the
queues *in item k's place*: the stages after it finish the items before k first, so when several stages fail,
the error raised to the caller is the one a sequential loop would have met first (the lowest item, and for the
same item the earliest stage). The original exception object is raised, traceback included. A failed stage
takes no more items; the stages before it stop when the caller's generator ends (``abort``), which also happens
when the caller stops early or is interrupted (Ctrl-C). Every thread is joined before the generator returns;
threads are daemons, so even a stage stuck in a call could not keep the process alive.

**Busy time.** ``busy[name]`` accumulates the seconds each stage spent in its function (the source: in
``next()``), not waiting on its queues. The slowest stage's busy time is the lower bound of the wall time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

__all__ = ["run_stages"]

logger = logging.getLogger(__name__)

_POLL_S = 0.1  # how often a waiting thread looks at the abort flag
_JOIN_S = 600.0  # a stage in the middle of a call (one forward pass) is waited for this long at most


class _End:
    """Marks the end of the items."""


class _Failure:
    """An exception travelling down the queues in the place of the item it was raised on."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(q: queue.Queue[Any], item: Any, abort: threading.Event) -> bool:
    """Put ``item``, waiting for room; False when aborted first."""
    while not abort.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue[Any], abort: threading.Event) -> Any:
    """The next item; ``_End`` when aborted first."""
    while not abort.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return _End()


def run_stages(
    source: Iterable[Any],
    stages: Sequence[tuple[str, Callable[[Any], Any]]],
    *,
    source_name: str = "source",
    capacity: int = 2,
    busy: dict[str, float] | None = None,
) -> Iterator[Any]:
    """Yield the result of every stage chain on every item of ``source``, in order (see the module docstring).

    Args:
        source: the items (iterated in its own thread; a generator is closed there when the run stops early).
        stages: ``(name, function)`` in order; each takes the previous stage's output (the first: an item).
        source_name: the source's key in ``busy``.
        capacity: items waiting between two stages at most (>= 1); memory holds at most
            ``len(stages) x (capacity + 1)`` items besides those inside the source.
        busy: seconds per stage are added to it (keys ``source_name`` and the stage names).
    Raises:
        whatever a stage or the source raised, as a sequential loop would have met it first.
    """
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    busy = busy if busy is not None else {}
    for name in (source_name, *(n for n, _ in stages)):
        busy.setdefault(name, 0.0)
    abort = threading.Event()
    queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=capacity) for _ in range(len(stages) + 1)]
    lock = threading.Lock()  # busy is shared by the threads

    def account(name: str, seconds: float) -> None:
        with lock:
            busy[name] += seconds

    def read_source() -> None:
        iterator = iter(source)
        try:
            while True:
                tic = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    account(source_name, time.perf_counter() - tic)
                    _put(queues[0], _End(), abort)
                    return
                except BaseException as exc:  # noqa: BLE001 - raised again by the caller, in its place
                    account(source_name, time.perf_counter() - tic)
                    _put(queues[0], _Failure(exc), abort)
                    return
                account(source_name, time.perf_counter() - tic)
                if not _put(queues[0], item, abort):
                    return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # in this thread, which runs the generator: releases its file

    def run_stage(index: int, name: str, fn: Callable[[Any], Any]) -> None:
        inbox, outbox = queues[index], queues[index + 1]
        while True:
            item = _get(inbox, abort)
            if isinstance(item, (_End, _Failure)):
                _put(outbox, item, abort)
                return
            tic = time.perf_counter()
            try:
                out = fn(item)
            except BaseException as exc:  # noqa: BLE001 - raised again by the caller, in its place
                account(name, time.perf_counter() - tic)
                _put(outbox, _Failure(exc), abort)
                return
            account(name, time.perf_counter() - tic)
            if not _put(outbox, out, abort):
                return

    threads = [threading.Thread(target=read_source, name=f"stage-{source_name}", daemon=True)]
    threads += [threading.Thread(target=run_stage, args=(i, name, fn), name=f"stage-{name}", daemon=True)
                for i, (name, fn) in enumerate(stages)]
    for thread in threads:
        thread.start()
    try:
        while True:
            item = _get(queues[-1], abort)
            if isinstance(item, _End):
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        abort.set()
        deadline = time.monotonic() + _JOIN_S
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("pipeline thread %s did not stop within %.0f s", thread.name, _JOIN_S)
