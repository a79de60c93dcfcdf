"""The machine a benchmark ran on, and its measured compute roofline (fp32 and bf16).

Roofline numbers are the best of a few runs of one large matmul and one 3x3 convolution at the
current torch thread count, in GFLOP/s with a multiply-add counted as 2 FLOPs (the same
convention as the model FLOP counts, so `roofline_fraction` compares like with like).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

# /proc/cpuinfo flags that decide CPU inference speed
INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                     "amx_tile", "amx_bf16", "amx_int8")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """CPU model name and the interesting ISA flags, from /proc/cpuinfo (Linux)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, [f for f in INTERESTING_FLAGS if f in flags]


def machine_info() -> dict:
    """CPU model, cores, ISA flags, torch/onnxruntime versions and thread count."""
    model, flags = cpu_model_and_flags()
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "cpu": model,
        "cores": cores,
        "flags": flags,
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onnxruntime": ort_version,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def _best_gflops(fn: Callable[[], object], flops: float, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation)
    best = min(_timed(fn) for _ in range(repeats))
    return flops / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def roofline(quick: bool = False) -> dict:
    """Measured GFLOP/s: fp32 and bf16 matmul and 3x3 conv at the current thread count."""
    n = 1024 if quick else 2048
    c, s = (64, 64) if quick else (128, 128)  # conv: (1, c, s, s) -> (1, c, s, s), 3x3
    repeats = 2 if quick else 5
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    x = torch.randn(1, c, s, s, generator=gen)
    w = torch.randn(c, c, 3, 3, generator=gen)
    mm_flops = 2.0 * n**3
    conv_flops = 2.0 * c * c * 9 * s * s
    out = {}
    with torch.inference_mode():
        for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            a_, b_, x_, w_ = (t.to(dtype) for t in (a, b, x, w))
            out[f"matmul_{tag}_gflops"] = round(
                _best_gflops(lambda a_=a_, b_=b_: a_ @ b_, mm_flops, repeats), 1)
            out[f"conv3x3_{tag}_gflops"] = round(_best_gflops(
                lambda x_=x_, w_=w_: F.conv2d(x_, w_, padding=1), conv_flops, repeats), 1)
    out["shapes"] = f"matmul {n}x{n}x{n}; conv3x3 (1,{c},{s},{s}) -> {c} channels"
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB: VmHWM of /proc/self/status.

    VmHWM belongs to the current address space, which exec replaces, so a child started by
    subprocess reports only its own peak; `ru_maxrss` (the fallback off Linux) can include the
    parent's peak at fork time.
    """
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
