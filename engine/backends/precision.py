"""The matrix products' precision on a CPU: bf16 where this CPU runs bf16 products natively, else float16
weights with float32 products where the backend can run them, else float32.

CPUs with native bf16 (AVX512-BF16, AMX) run a bf16 matrix product 2-4x faster than a float32 one; without
it oneDNN emulates bf16 and is slower. Which one a CPU is, torch's ISA report or a timing at load tells.
On the others, fbgemm's product with float16 weights (float32 inputs, float32 sums) beats oneDNN's float32
one for a small model's shapes (the LM head 3x, a whole fill 1.4x: docs/BENCHMARKS.md, session 9) and stays
within 1e-2 of its logits: float16 holds an int8 row-wise weight to 11 bits, bf16 to 8.
$DGEM_INFILL_DTYPE (float32 | bfloat16 | float16 | auto) overrides the choice for every backend; float16
(weights only) is for backends that say they can run it (the native one on a CPU).
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F

from engine.types import ModelLoadError

DTYPE_ENV = "DGEM_INFILL_DTYPE"  # float32 | bfloat16 | float16 | auto (the default)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_matmul_dtype(dim: int, ffn_dim: int, rows: int = 128, repeats: int = 8) -> torch.dtype:
    """bfloat16 if a bf16 matrix product of a feed-forward shape (dim -> ffn_dim) runs clearly faster here
    than a float32 one, else float32; timed once at load (3-10 ms on two cores, 30 ms under full load).

    The best of `repeats` of each, interleaved: a busy neighbour delays single products, rarely all of them.
    128 rows, not fewer: on a small model (256 -> 512) 32-row products are so short that fixed costs hid
    bf16's gain in 10 of 40 timings on an idle machine (float32 picked); with 128 rows, 0 of 40, idle or
    under two busy loops."""
    x = torch.full((rows, dim), 0.5)  # (rows, D): speed does not depend on the values
    weight = torch.full((ffn_dim, dim), 0.01)  # (F, D), an FFN projection's shape
    inputs = {dtype: (x.to(dtype), weight.to(dtype)) for dtype in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(inputs, float("inf"))
    for _ in range(repeats + 1):  # the first round warms up (oneDNN builds its kernels)
        for dtype, (a, w) in inputs.items():
            started = time.perf_counter()
            F.linear(a, w)
            best[dtype] = min(best[dtype], time.perf_counter() - started)
    return torch.bfloat16 if best[torch.bfloat16] < 0.8 * best[torch.float32] else torch.float32


def cpu_reports_native_bf16() -> bool:
    """True where torch finds AVX512-BF16 or AMX on this CPU and oneDNN is not held below them. A timing
    can misjudge such a CPU under load, or for a small model whose products are too short to show the gain
    (a bench model once got float32 this way); elsewhere (other ISAs, a held oneDNN) the timing decides."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"):
        return False
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check() for check in checks if check is not None)


def half_weight_products_work() -> bool:
    """fbgemm's float16-weight product is in this torch build and gives F.linear's result to float16's
    precision (the quantized ops are deprecated upstream: if one goes, the backend falls back to float32)."""
    try:
        x = torch.linspace(-1, 1, 3 * 32).view(3, 32)  # (rows, in)
        weight = torch.linspace(-1, 1, 16 * 32).view(16, 32)  # (out, in)
        packed = torch.ops.quantized.linear_prepack_fp16(weight, None)
        got = torch.ops.quantized.linear_dynamic_fp16(x, packed)
        return torch.allclose(got, F.linear(x, weight), rtol=1e-2, atol=1e-2)
    except Exception:  # a probe: builds without fbgemm (ARM) raise RuntimeError or NotImplementedError
        return False


def chosen_dtype(
    device: torch.device, dim: int, ffn_dim: int, dtype: str | None = None, half_weights: bool = False
) -> torch.dtype:
    """`dtype` (or $DGEM_INFILL_DTYPE): float32, bfloat16, float16 or auto. auto is bf16 on GPUs and on CPUs
    that report native bf16; elsewhere float16 (float16 weights, float32 products) where the caller can run
    it (`half_weights`) and fbgemm's kernel works, else bf16 or float32 as a timing of the model's
    feed-forward shape says."""
    name = (dtype or os.environ.get(DTYPE_ENV) or "auto").strip().lower()
    choices = "float32, bfloat16, float16 or auto" if half_weights else "float32, bfloat16 or auto"
    if name == "auto":
        if device.type == "cuda" or cpu_reports_native_bf16():
            return torch.bfloat16
        if half_weights and half_weight_products_work():
            return torch.float16
        return cpu_matmul_dtype(dim, ffn_dim)
    if name not in DTYPES or (name == "float16" and not half_weights):
        raise ModelLoadError(f"dtype {name!r} (${DTYPE_ENV} or the caller): expected {choices}")
    if name == "float16" and not half_weight_products_work():
        raise ModelLoadError(f"dtype 'float16' (${DTYPE_ENV} or the caller): this torch build lacks fbgemm's "
                             "float16-weight product; use float32 or auto")
    return DTYPES[name]
