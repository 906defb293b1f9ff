"""run_stages: threads joined by bounded queues give the results and the errors of a sequential loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from slowfast_det.pipeline.stages import run_stages


def _stage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("stage-")]


def test_results_in_order_with_busy_time() -> None:
    seen: list[int] = []

    def slow_double(x: int) -> int:
        time.sleep(0.002 * (x % 3))  # uneven work: order must not depend on it
        return 2 * x

    def record(x: int) -> int:  # a stage with state sees the items in order, one at a time
        seen.append(x)
        return x + 1

    busy: dict[str, float] = {}
    out = list(run_stages(range(50), [("double", slow_double), ("record", record)], source_name="src",
                          capacity=1, busy=busy))
    assert out == [2 * x + 1 for x in range(50)]
    assert seen == [2 * x for x in range(50)]
    assert set(busy) == {"src", "double", "record"} and busy["double"] >= 0.002 * 49
    assert not _stage_threads()


def test_overlap_takes_the_slowest_stage_not_the_sum() -> None:
    def wait(x: int) -> int:
        time.sleep(0.02)  # sleeping, like a GIL-free operator, lets the other stages run
        return x

    busy: dict[str, float] = {}
    tic = time.perf_counter()
    assert list(run_stages(range(20), [("a", wait), ("b", wait), ("c", wait)], busy=busy)) == list(range(20))
    wall = time.perf_counter() - tic
    total = busy["a"] + busy["b"] + busy["c"]
    assert total >= 3 * 20 * 0.02 and wall < 0.75 * total, (wall, busy)


class _Boom(RuntimeError):
    pass


def _source(fail_at: int | None, closed: list[bool]) -> Iterator[int]:
    try:
        for i in range(100):
            if i == fail_at:
                raise _Boom(f"source at {i}")
            yield i
    finally:
        closed.append(True)


def _failing(name: str, at: int):  # noqa: ANN202 - a stage function
    def fn(x: int) -> int:
        if x == at:
            raise _Boom(f"{name} at {x}")
        return x

    return fn


@pytest.mark.parametrize(
    ("source_fails", "a_fails", "b_fails", "expected"),
    [
        (5, None, 2, "b at 2"),  # a later stage on an earlier item comes first, as in a loop
        (None, 3, 1, "b at 1"),
        (None, 2, 2, "a at 2"),  # same item: the earlier stage
        (1, None, 4, "source at 1"),
        (None, None, 99, "b at 99"),
    ],
)
def test_the_error_a_sequential_loop_meets_first(source_fails: int | None, a_fails: int | None, b_fails: int,
                                                   expected: str) -> None:
    closed: list[bool] = []
    stages = [("a", _failing("a", -1 if a_fails is None else a_fails)), ("b", _failing("b", b_fails))]
    got: list[int] = []
    with pytest.raises(_Boom, match=f"^{expected}$"):
        for x in run_stages(_source(source_fails, closed), stages, capacity=2):
            got.append(x)
    first_bad = min(v for v in (source_fails, a_fails, b_fails) if v is not None)
    assert got == list(range(first_bad))  # every item before the failing one came out
    assert closed == [True]  # the source generator was closed (its file would be released)
    assert not _stage_threads()  # nothing left running


def test_stopping_early_stops_every_thread() -> None:
    closed: list[bool] = []
    it = run_stages(_source(None, closed), [("a", lambda x: x)], capacity=1)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # the consumer stops (an error in its loop, Ctrl-C)
    assert closed == [True] and not _stage_threads()
