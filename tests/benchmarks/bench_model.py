"""Benchmark: SlowFast AVA models at 256x256 - ms per clip, GFLOPs per view, peak memory (not a pytest file).

For each AVA config in ``configs/AVA`` and PySlowFast's ``SLOWFAST_32x2_R50_SHORT`` (from
``../shared/pyslowfast-configs`` when present): GFLOPs of one view (multiply-adds, counted on the meta device
as the paper counts), then, on CPU (``--threads``, 1 by default) and on GPU when one is present, the time of
one clip with ``--boxes`` boxes through the plain eval-mode model (PySlowFast's compute) and through
``optimize_for_inference`` (fp32; bf16 too on GPU), run alternately in the same process so that both see the
same machine load; the speed-up is plain / optimised, from wall time and from the process's CPU time (the
robust one on a shared machine: a descheduled process accrues no CPU time). Achieved GFLOP/s (2 FLOPs per
multiply-add) are set beside the fp32 peak of a 4096^3 matmul measured in the same run. Weights are random
with random BN affine parameters and BN statistics calibrated on noise, so activations stay finite; inputs
are random. Precision columns: see :func:`precision_report` (the 1e-4 criterion). Peak memory (with
``--memory``): on CPU the largest resident set of a fresh child process that builds the model and runs one
forward pass (per path); on GPU ``torch.cuda.max_memory_allocated``.

    python tests/benchmarks/bench_model.py                       # CPU: every AVA config; GPU: all
    python tests/benchmarks/bench_model.py --cpu-configs SLOWFAST_32x2_R50 --repeats 7
"""

from __future__ import annotations

import argparse
import copy
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
PYSLOWFAST_AVA = Path(__file__).resolve().parents[3] / "shared" / "pyslowfast-configs" / "configs" / "AVA"
EXTRA_CONFIGS = {"SLOWFAST_32x2_R50_SHORT": PYSLOWFAST_AVA / "SLOWFAST_32x2_R50_SHORT.yaml"}


def config_paths() -> dict[str, Path]:
    """Name -> YAML of every benchmarked config: the shipped AVA configs, then PySlowFast's R50 SHORT."""
    paths = {p.stem: p for p in sorted(AVA_CONFIGS.glob("*.yaml"))}
    paths.update({name: path for name, path in EXTRA_CONFIGS.items() if path.is_file()})
    return paths


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="input height and width")
    p.add_argument("--boxes", type=int, default=1, help="boxes per clip")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per path (after one warm-up)")
    p.add_argument("--cpu-configs", nargs="+", default=["all"], help="config names for CPU timing, or 'all'")
    p.add_argument("--no-cpu", action="store_true", help="skip CPU timing")
    p.add_argument("--memory", action="store_true", help="also measure CPU peak memory in child processes")
    p.add_argument("--gpu-batch", type=int, default=1, help="clips per forward pass on GPU")
    p.add_argument("--gpu-configs", nargs="+", default=["all"], help="config names for GPU timing, or 'all'")
    p.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                   help="int8: measure optimize_for_inference(precision=\"int8\") against the fused fp32 path instead")
    p.add_argument("--no-fp64", action="store_true", help="skip the float64 reference run (the slowest part)")
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


def precision_report(model: torch.nn.Module, optimized: Callable[..., torch.Tensor], clips: list[torch.Tensor],
                     boxes: torch.Tensor, fp64: bool) -> tuple[str, bool]:
    """The 1e-4 criterion, stated precisely: max |sigmoid(optimised logits) - sigmoid(plain logits)| (the
    scores written out) must be <= 1e-4, absolute. Beside it, the logits' max |Δ| relative to max |logit|,
    and, with ``fp64``, each fp32 path's relative error against the plain model run in float64 (the exact
    answer to ~1e-15): the fused path must not be less accurate than the plain fp32 model (<= 1.5x its error;
    both are fp32 rounding amplified through the network's depth). Returns (table cells, criterion met)."""
    with torch.no_grad():
        plain = model(clips, boxes).double()
    fused = optimized(clips, boxes).double()
    score_diff = (fused.sigmoid() - plain.sigmoid()).abs().max().item()
    ok = score_diff <= 1e-4
    cells = f"{score_diff:.1e} | {relative_diff(plain, fused):.1e}"
    if fp64:
        with torch.no_grad():
            exact = copy.deepcopy(model).double()([c.double() for c in clips], boxes.double())
        plain_err, fused_err = relative_diff(exact, plain), relative_diff(exact, fused)
        ok = ok and fused_err <= 1.5 * plain_err
        cells += f" | {plain_err:.1e} / {fused_err:.1e}"
    else:
        cells += " | -"
    return f"{cells} | {'yes' if ok else 'NO'}", ok


def calibrated_model(cfg: Any, size: int, seed: int = 0) -> torch.nn.Module:
    """A random-weight eval model whose activations stay finite: BN affine parameters drawn in [0.2, 0.6] x
    [-0.1, 0.1] (no zero-initialised final BN, so every residual branch counts), running statistics set from
    one noise clip at half the test size (BN in training mode, cumulative average)."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            n = module.num_features
            module.weight.data.copy_(torch.rand(n, generator=gen) * 0.4 + 0.2)
            module.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            module.momentum = None  # cumulative average: one batch sets the statistics
            module.reset_running_stats()
    clips, boxes = make_inputs(cfg, max(size // 2, 32), 1)
    model.train()
    with torch.no_grad():
        model(clips, boxes)
    return model.eval()


def matmul_peak_gflops(threads: int, repeats: int = 5) -> tuple[float, float]:
    """fp32 GFLOP/s of a 4096^3 matmul: (from wall time, from CPU time per thread), best of ``repeats``."""
    torch.set_num_threads(threads)
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    a @ b
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        a @ b
        wall.append(time.perf_counter() - w)
        cpu.append((time.process_time() - c) / threads)
    flops = 2 * 4096**3 / 1e9
    return flops / min(wall), flops / min(cpu)


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
    cfg = load_config(config_paths()[config])
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


def bench_cpu(config: str, args: argparse.Namespace, peak_cpu_gflops: float) -> None:
    torch.set_num_threads(args.threads)
    cfg = load_config(config_paths()[config])
    model = calibrated_model(cfg, args.size)
    optimized = optimize_for_inference(model)
    clips, boxes = make_inputs(cfg, args.size, args.boxes)

    def plain() -> Any:
        with torch.no_grad():
            return model(clips, boxes)

    reference = plain()
    finite = "" if torch.isfinite(reference).all() else " (non-finite!)"
    precision, _ = precision_report(model, optimized, clips, boxes, fp64=not args.no_fp64)
    wall: dict[str, list[float]] = {"eval": [], "optimized": []}
    cpu: dict[str, list[float]] = {"eval": [], "optimized": []}
    paths = {"eval": plain, "optimized": lambda: optimized(clips, boxes)}
    for fn in paths.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in paths.items():  # alternating, so both paths see the same machine load
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append((time.perf_counter() - w) * 1000)
            cpu[name].append((time.process_time() - c) * 1000)
    ms = {name: statistics.median(t) for name, t in wall.items()}
    cpu_ms = {name: statistics.median(t) for name, t in cpu.items()}
    flops = 2 * gflops(cfg, args.size)  # GFLOP per clip, 2 FLOPs per multiply-add
    achieved = flops / (cpu_ms["optimized"] / 1000) / args.threads  # per thread, from CPU time
    memory = ["-", "-"]
    if args.memory:
        memory = [f"{cpu_peak_memory_mb(config, args, opt):.0f}" for opt in (False, True)]
    print(
        f"| {config} | CPU x{args.threads} | {ms['eval']:.0f} / {cpu_ms['eval']:.0f} | "
        f"{ms['optimized']:.0f} / {cpu_ms['optimized']:.0f} | {ms['eval'] / ms['optimized']:.2f}x / "
        f"{cpu_ms['eval'] / cpu_ms['optimized']:.2f}x | {achieved:.0f} ({100 * achieved / peak_cpu_gflops:.0f}%) | "
        f"{memory[0]} / {memory[1]} | {precision}{finite} |",
        flush=True,
    )


def bench_int8(config: str, args: argparse.Namespace) -> None:
    """Model-wide int8 convs (``optimize_for_inference(precision="int8")``, calibrated on 4 noise clips)
    against the fused fp32 path:
    CPU ms (median of alternating runs) and max |Δ score| (sigmoid) against fused fp32 and the plain model."""
    torch.set_num_threads(args.threads)
    cfg = load_config(config_paths()[config])
    model = calibrated_model(cfg, args.size)
    optimized = optimize_for_inference(model)
    clips, boxes = make_inputs(cfg, args.size, args.boxes)
    int8 = optimize_for_inference(model, precision="int8", calibration_calls=4)
    for seed in range(1, 5):  # calibration on 4 other noise clips
        gen = torch.Generator().manual_seed(seed)
        int8([torch.rand(c.shape, generator=gen) for c in clips], boxes)
    with torch.no_grad():
        plain = model(clips, boxes).sigmoid()
    fp32_scores, int8_scores = optimized(clips, boxes).sigmoid(), int8(clips, boxes).sigmoid()
    cpu: dict[str, list[float]] = {"fp32": [], "int8": []}
    paths = {"fp32": lambda: optimized(clips, boxes), "int8": lambda: int8(clips, boxes)}
    for fn in paths.values():
        fn()
    for _ in range(args.repeats):
        for name, fn in paths.items():
            c = time.process_time()
            fn()
            cpu[name].append((time.process_time() - c) * 1000)
    ms = {name: statistics.median(t) for name, t in cpu.items()}
    print(
        f"| {config} | {ms['fp32']:.0f} | {ms['int8']:.0f} | {ms['fp32'] / ms['int8']:.2f}x | "
        f"{(int8_scores - fp32_scores).abs().max().item():.1e} | {(int8_scores - plain).abs().max().item():.1e} |",
        flush=True,
    )


def bench_gpu(config: str, args: argparse.Namespace) -> None:
    """GPU: ms per batch of ``--gpu-batch`` clips for the precisions a user can pick, and each one's max
    |score - fp32 score| (sigmoid scores) against the plain eval model in strict fp32 (cuDNN TF32 off)."""
    cfg = load_config(config_paths()[config])
    model = calibrated_model(cfg, args.size).cuda()
    clips, boxes = make_inputs(cfg, args.size, args.boxes, "cuda")
    n = args.gpu_batch
    clips = [c.expand(n, *c.shape[1:]).contiguous() for c in clips]
    boxes = torch.cat([torch.cat([torch.full((len(boxes), 1), float(i), device="cuda"), boxes[:, 1:]], 1)
                       for i in range(n)])  # fmt: skip
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    fused = {dtype: optimize_for_inference(model, dtype=dtype) for dtype in dtypes}

    def autocast(dtype: torch.dtype) -> Callable[[], Any]:
        def run() -> Any:
            with torch.autocast("cuda", dtype=dtype):
                return model(clips, boxes).float()

        return run

    paths: dict[str, Callable[[], Any]] = {
        "eval fp32": lambda: model(clips, boxes),
        "fused fp32": lambda: fused[torch.float32](clips, boxes),
        "autocast fp16": autocast(torch.float16),
        "autocast bf16": autocast(torch.bfloat16),
        "fused fp16": lambda: fused[torch.float16](clips, boxes).float(),
        "fused bf16": lambda: fused[torch.bfloat16](clips, boxes).float(),
    }
    tf32 = torch.backends.cudnn.allow_tf32
    with torch.no_grad():
        torch.backends.cudnn.allow_tf32 = False
        strict = model(clips, boxes).float()
        ms_strict = time_paths({"strict": lambda: model(clips, boxes)}, max(args.repeats, 10), torch.cuda.synchronize)
        torch.backends.cudnn.allow_tf32 = tf32
        ms = time_paths(paths, max(args.repeats, 10), torch.cuda.synchronize)
        ref_scores = torch.sigmoid(strict)
        dscore = {name: (torch.sigmoid(fn().float()) - ref_scores).abs().max().item() for name, fn in paths.items()}
    base = ms_strict["strict"]
    print(f"| {config} | strict fp32 (TF32 off) | {base:.2f} | 1.00x | 0 |")
    for name in paths:
        tag = " (TF32 convs, torch's default)" if name == "eval fp32" and tf32 else ""
        print(f"| {config} | {name}{tag} | {ms[name]:.2f} | {base / ms[name]:.2f}x | {dscore[name]:.1e} |", flush=True)


def main(args: argparse.Namespace) -> None:
    configs = config_paths()
    print(f"GFLOPs of one {args.size}x{args.size} view (multiply-adds, one box):")
    for config, path in configs.items():
        print(f"  {config}: {gflops(load_config(path), args.size):.1f}")
    if args.precision == "int8":
        print(
            f"\nint8 convs (x86 quantized engine) vs fused fp32, CPU ms per clip, {args.threads} thread(s), median "
            f"of {args.repeats} alternating runs; max |Δ score| of sigmoid scores, absolute:\n"
            "| config | fused fp32 ms | int8 ms | speed-up | max |Δ score| vs fused fp32 | vs plain |\n"
            "|---|---|---|---|---|---|",
            flush=True,
        )
        for config in configs if args.cpu_configs == ["all"] else args.cpu_configs:
            bench_int8(config, args)
        return
    if not args.no_cpu:
        peak_wall, peak_cpu = matmul_peak_gflops(args.threads)
        print(
            f"\nfp32 peak, 4096^3 matmul on {args.threads} thread(s): {peak_wall:.0f} GFLOP/s from wall time, "
            f"{peak_cpu:.0f} GFLOP/s per thread from CPU time"
        )
        print(
            f"\nms per clip ({args.boxes} box(es), {args.size}x{args.size}, median of {args.repeats} alternating "
            "runs), plain eval model vs optimize_for_inference; wall / CPU time:\n"
            "'max |Δ score|': max |sigmoid(optimised) - sigmoid(plain)| over the box's class scores, absolute; "
            "'logits rel.': max |Δ logit| / max |logit|; 'vs fp64': max |fp32 - fp64| / max |fp64 logit| of the "
            "plain / optimised fp32 paths against the plain model in float64. Within 1e-4 means: max |Δ score| "
            "<= 1e-4 and the optimised path's fp64 error <= 1.5x the plain path's.\n"
            "| config | device | eval ms | optimized ms | speed-up | optimized GFLOP/s per thread (% of matmul) "
            "| peak MB (eval / opt) | max |Δ score| | logits rel. | vs fp64 (plain / opt) | within 1e-4 |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|",
            flush=True,
        )
        for config in configs if args.cpu_configs == ["all"] else args.cpu_configs:
            bench_cpu(config, args, peak_cpu)
    if torch.cuda.is_available():
        print(
            f"\n{torch.cuda.get_device_name()}: ms per batch of {args.gpu_batch} clip(s) ({args.boxes} box(es) each, "
            f"{args.size}x{args.size}, median of {max(args.repeats, 10)} alternating runs); speed-up against the "
            "plain eval model in strict fp32; max |score - strict fp32 score| over the sigmoid scores:\n"
            "| config | path | ms | speed-up | max abs score diff |\n|---|---|---|---|---|"
        )
        for config in configs if args.gpu_configs == ["all"] else args.gpu_configs:
            bench_gpu(config, args)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
