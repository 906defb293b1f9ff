"""Benchmark: SlowFast AVA models at 256x256 - ms per clip, GFLOPs per view, peak memory (not a pytest file).

For each AVA config in ``configs/AVA``: GFLOPs of one view (counted on the meta device, as the paper counts),
then, on CPU (``--threads``, 2 by default) and on GPU when one is present, the time of one clip with
``--boxes`` boxes through the plain eval-mode model and through ``optimize_for_inference`` (fp32; bf16 too
on GPU), run alternately in the same process so that both see the same machine load; the ratio is plain /
optimised. Peak memory: on CPU the largest resident set of a fresh child process that builds the model and
runs one forward pass (per path); on GPU ``torch.cuda.max_memory_allocated``. Weights are random (timing does
not depend on them).

    python tests/benchmarks/bench_model.py                       # CPU: the R50 configs; GPU: all
    python tests/benchmarks/bench_model.py --cpu-configs all --repeats 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from slowfast_det.config import load_config
from slowfast_det.models import build_model, count_gflops
from slowfast_det.models.fused import optimize_for_inference

AVA_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "AVA"
CPU_DEFAULT = ["SLOWFAST_32x2_R50", "SLOW_4x16_R50"]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="input height and width")
    p.add_argument("--boxes", type=int, default=3, help="boxes per clip")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per path (after one warm-up)")
    p.add_argument(
        "--cpu-configs", nargs="+", default=CPU_DEFAULT, help="AVA config names for CPU timing, or 'all'"
    )
    p.add_argument("--no-cpu", action="store_true", help="skip CPU timing")
    p.add_argument("--no-memory", action="store_true", help="skip the CPU peak-memory child processes")
    return p


def make_inputs(
    cfg: Any, size: int, num_boxes: int, device: str = "cpu"
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One clip at ``size`` x ``size`` (PySlowFast's test view) and ``num_boxes`` boxes in input pixels."""
    gen = torch.Generator().manual_seed(0)
    fast = torch.rand(1, 3, cfg.DATA.NUM_FRAMES, size, size, generator=gen)
    clips = [fast[:, :, :: cfg.SLOWFAST.ALPHA].contiguous(), fast] if cfg.MODEL.ARCH == "slowfast" else [fast]
    corners = torch.rand(num_boxes, 2, 2, generator=gen).sort(dim=1).values * (
        size - 1
    )  # [(x1, y1), (x2, y2)]
    boxes = torch.cat(
        [torch.zeros(num_boxes, 1), corners.reshape(num_boxes, 4)], dim=1
    )  # (0, x1, y1, x2, y2)
    return [c.to(device) for c in clips], boxes.to(device)


def relative_diff(reference: torch.Tensor, other: torch.Tensor) -> float:
    """max |reference - other| / max |reference| (random weights give logits of any scale)."""
    return ((reference - other).abs().max() / reference.abs().max()).item()


def gflops(cfg: Any, size: int) -> float:
    with torch.device("meta"):
        model = build_model(cfg).eval()
        clips, boxes = make_inputs(cfg, size, 1, "meta")
    return count_gflops(model, (clips, boxes))


def _timed(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - start) * 1000


def time_paths(
    paths: dict[str, Callable[[], Any]], repeats: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Median ms per call of each path, run alternately after one warm-up each."""
    for fn in paths.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            times[name].append(_timed(fn, sync))
    return {name: statistics.median(t) for name, t in times.items()}


def _memory_child(config: str, size: int, num_boxes: int, threads: int, optimized: bool, queue: Any) -> None:
    torch.set_num_threads(threads)
    cfg = load_config(AVA_CONFIGS / f"{config}.yaml")
    model = build_model(cfg).eval()
    clips, boxes = make_inputs(cfg, size, num_boxes)
    runner = optimize_for_inference(model) if optimized else model
    del model
    with torch.no_grad():
        runner(clips, boxes)
    queue.put(_peak_rss_mb())


def _peak_rss_mb() -> float:
    """This process's peak resident set. VmHWM, not ru_maxrss: a spawned child inherits its parent's
    ru_maxrss (it is kept across fork and exec), but VmHWM belongs to the child's own address space."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB -> MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_peak_memory_mb(config: str, args: argparse.Namespace, optimized: bool) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(
        target=_memory_child, args=(config, args.size, args.boxes, args.threads, optimized, queue)
    )
    child.start()
    peak = queue.get()
    child.join()
    return float(peak)


def bench_cpu(config: str, args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cfg = load_config(AVA_CONFIGS / f"{config}.yaml")
    model = build_model(cfg).eval()
    optimized = optimize_for_inference(model)
    clips, boxes = make_inputs(cfg, args.size, args.boxes)
    with torch.no_grad():
        diff = relative_diff(model(clips, boxes), optimized(clips, boxes))

    def plain() -> Any:
        with torch.no_grad():
            return model(clips, boxes)

    ms = time_paths({"eval": plain, "optimized": lambda: optimized(clips, boxes)}, args.repeats, lambda: None)
    memory = ["-", "-"]
    if not args.no_memory:
        memory = [f"{cpu_peak_memory_mb(config, args, opt):.0f}" for opt in (False, True)]
    print(
        f"| {config} | CPU x{args.threads} | {ms['eval']:.0f} | {ms['optimized']:.0f} | "
        f"{ms['eval'] / ms['optimized']:.2f}x | {memory[0]} / {memory[1]} | {diff:.1e} |",
        flush=True,
    )


def bench_gpu(config: str, args: argparse.Namespace) -> None:
    cfg = load_config(AVA_CONFIGS / f"{config}.yaml")
    model = build_model(cfg).eval().cuda()
    clips, boxes = make_inputs(cfg, args.size, args.boxes, "cuda")
    fp32 = optimize_for_inference(model)
    bf16 = optimize_for_inference(model, dtype=torch.bfloat16)
    paths: dict[str, Callable[[], Any]] = {
        "eval": lambda: model(clips, boxes),
        "optimized": lambda: fp32(clips, boxes),
        "bf16": lambda: bf16(clips, boxes),
    }
    with torch.no_grad():
        ms = time_paths(paths, max(args.repeats, 10), torch.cuda.synchronize)
        reference = model(clips, boxes)
        diff = relative_diff(reference, fp32(clips, boxes))
        diff_bf16 = relative_diff(reference, bf16(clips, boxes))
        peaks = []
        for fn in paths.values():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            fn()
            peaks.append(torch.cuda.max_memory_allocated() / 2**20)
    print(
        f"| {config} | {torch.cuda.get_device_name()} | {ms['eval']:.1f} | {ms['optimized']:.1f} "
        f"(bf16 {ms['bf16']:.1f}) | {ms['eval'] / ms['optimized']:.2f}x "
        f"(bf16 {ms['eval'] / ms['bf16']:.2f}x) | "
        f"{peaks[0]:.0f} / {peaks[1]:.0f} / {peaks[2]:.0f} | {diff:.1e} (bf16 {diff_bf16:.1e}) |",
        flush=True,
    )


def main(args: argparse.Namespace) -> None:
    configs = sorted(p.stem for p in AVA_CONFIGS.glob("*.yaml"))
    print(f"GFLOPs of one {args.size}x{args.size} view (multiply-adds, one box):")
    for config in configs:
        print(f"  {config}: {gflops(load_config(AVA_CONFIGS / f'{config}.yaml'), args.size):.1f}")
    print(
        f"\nms per clip ({args.boxes} boxes, median of {args.repeats}), eval vs optimize_for_inference:\n"
        "| config | device | eval ms | optimized ms | speed-up | peak MB (eval / opt) | rel. diff |\n"
        "|---|---|---|---|---|---|---|",
        flush=True,
    )
    if not args.no_cpu:
        for config in configs if args.cpu_configs == ["all"] else args.cpu_configs:
            bench_cpu(config, args)
    if torch.cuda.is_available():
        for config in configs:
            bench_gpu(config, args)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
