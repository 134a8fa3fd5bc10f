"""Faster CPU kernels for the native network's denoising passes: products on every core, the rest on one.

Two things make a warm multi-line step slow on a small CPU (docs/BENCHMARKS.md, session 5):
- With OMP_WAIT_POLICY=PASSIVE (the service's setting) every parallel region wakes sleeping threads, and
  torch parallelises any element-wise operation over 32K elements: the ~30 norms, casts and products
  between a layer's matrix products each paid that wake-up (a step's (64, 1024) SiLU took 60 us). Between
  the products the pass now runs on one thread; the products and attention get the caller's threads
  (engine/backends/cpu_threads.py).
- oneDNN re-lays out a bf16 weight at every product; packed once at load, the same products are 10-30%
  faster and bit-identical. The SwiGLU's SiLU and product ride on its two products (one bf16 rounding
  less than the separate operations: bf16 noise).

On a CPU without native bf16 the products instead take fbgemm's float16-weight kernel (`HalfWeightProduct`):
float32 inputs and sums, weights held in float16 (engine/backends/precision.py says why).

Rows of a batch that share the prefix (one hole at several sizes, the likelihood's scoring pass) attend it
as one batch of queries instead of each row copying it (`attend_after_shared_prefix`).

`use_cpu_kernels` swaps these in by replacing the `forward` of the network's linear layers and SwiGLUs, and
`Attention.attend` / `attend_after_prefix` / `NativeModel.project_vocab`, per instance: parameters and
state_dict are unchanged.
The packed copies are taken at load: the backend never changes weights after it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from engine.backends.cpu_threads import all_threads
from engine.native import NativeModel, SwiGLU

ROWS_HINT = 64  # oneDNN picks the packed layout for about this many rows: a multi-line hole


def packing_works(dtype: torch.dtype) -> bool:
    """oneDNN packs bf16 weights on this build and CPU, and its product matches F.linear's."""
    if dtype != torch.bfloat16 or not torch.backends.mkldnn.is_available():
        return False
    try:
        x = torch.linspace(-1, 1, 3 * 32).view(3, 32).to(dtype)  # (rows, in)
        weight = torch.linspace(-1, 1, 16 * 32).view(16, 32).to(dtype)  # (out, in)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, ROWS_HINT)
        got = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        return torch.allclose(got.float(), F.linear(x, weight).float(), rtol=1e-2, atol=1e-2)
    except (RuntimeError, AttributeError):
        return False


class PackedProduct:
    """x (..., in) -> x @ weight.T (..., out) with the weight packed once in oneDNN's layout; `unary` is a
    post-op fused into the product ("none" or "swish")."""

    def __init__(self, weight: torch.Tensor, unary: str = "none"):
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), ROWS_HINT)
        self.unary = unary

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, None, self.unary, [], "")

    def times(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """(x @ weight.T) * other, the product fused into the matrix product."""
        return torch.ops.mkldnn._linear_pointwise.binary(x.contiguous(), other, self.packed, None, "mul")


class PackedSwiGLU:
    """SwiGLU.forward with the gate's SiLU and the gate * up product fused into their matrix products."""

    def __init__(self, ffn: SwiGLU):
        gate, up = ffn.gate_up.weight.detach().chunk(2, dim=0)  # (F, D) each, as forward's chunk splits them
        self.dtype = ffn.gate_up.weight.dtype
        self.gate = PackedProduct(gate, "swish")
        self.up = PackedProduct(up)
        self.down = PackedProduct(ffn.down.weight)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        return self.down(self.up.times(x, self.gate(x)))


class HalfWeightProduct:
    """x (..., in) -> x @ weight.T (..., out) in float32, with the weight held in float16 (fbgemm's kernel)."""

    def __init__(self, weight: torch.Tensor):
        self.packed = torch.ops.quantized.linear_prepack_fp16(weight.detach().float().contiguous(), None)
        self.out_features = weight.shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).float().contiguous()  # the kernel takes (rows, in) only
        return torch.ops.quantized.linear_dynamic_fp16(rows, self.packed).view(*x.shape[:-1], self.out_features)


class HalfWeightSwiGLU:
    """SwiGLU.forward with its two products on float16 weights."""

    def __init__(self, ffn: SwiGLU):
        self.gate_up = HalfWeightProduct(ffn.gate_up.weight)
        self.down = HalfWeightProduct(ffn.down.weight)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


def _flash(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
           mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's CPU flash attention: output (B, H, T, E) and each query's log-sum-exp (B, H, T); `mask` bool."""
    if mask is not None:  # the kernel takes an additive mask of the queries' dtype
        mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, keys, values, attn_mask=mask)


def attend_after_shared_prefix(
    q: torch.Tensor,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention.attend_after_prefix without a copy of the prefix per row: every row's queries attend the
    shared prefix as one batch of queries, each row attends its own keys, and the two parts are merged by
    their log-sum-exps. For five rows of a short hole after 300 prefix tokens, a third of the time of the
    copies and one attention (session 10)."""
    B, H, T, E = q.shape
    if prefix_keys.shape[2] == 0:
        return _flash(q, keys, values, mask)[0]
    as_one_row = q.transpose(0, 1).reshape(1, H, B * T, E)  # (1, H, B*T, E): rows' queries side by side
    prefix_out, prefix_lse = _flash(as_one_row, prefix_keys, prefix_values)
    prefix_out = prefix_out.view(H, B, T, E).transpose(0, 1)  # (B, H, T, E)
    prefix_lse = prefix_lse.view(H, B, T).transpose(0, 1)  # (B, H, T)
    own_out, own_lse = _flash(q, keys, values, mask)
    top = torch.maximum(prefix_lse, own_lse)
    prefix_weight = (prefix_lse - top).exp()[..., None]
    own_weight = (own_lse - top).exp()[..., None]
    merged = (prefix_out.float() * prefix_weight + own_out.float() * own_weight) / (prefix_weight + own_weight)
    return merged.to(q.dtype)


def shared_prefix_attention_works() -> bool:
    """torch's CPU flash attention (a private op) is in this build and returns what the merge needs."""
    try:
        q, keys = torch.linspace(-1, 1, 2 * 2 * 3 * 4).view(2, 2, 3, 4), torch.linspace(1, -1, 2 * 5 * 4).view(1, 2, 5, 4)
        own = torch.linspace(-0.5, 0.5, 2 * 2 * 3 * 4).view(2, 2, 3, 4)
        mask = torch.ones(1, 1, 3, 3, dtype=torch.bool).tril()
        want = F.scaled_dot_product_attention(q, torch.cat((keys.expand(2, -1, -1, -1), own), dim=2),
                                              torch.cat((keys.expand(2, -1, -1, -1), own), dim=2),
                                              attn_mask=torch.cat((mask.new_ones(1, 1, 3, 5), mask), dim=-1))
        got = attend_after_shared_prefix(q, keys, keys, own, own, mask)
        return torch.allclose(got, want, atol=1e-5)
    except (RuntimeError, AttributeError, TypeError):
        return False


def use_cpu_kernels(model: NativeModel, half_weights: bool = False) -> str:
    """Swap in the kernels above; returns what the products became: "packed" (bf16 weights oneDNN can
    pack), "half_weights" (float16 weights, asked for by `half_weights`) or "eager" (F.linear; only the
    threads are split)."""
    kind = "half_weights" if half_weights else "packed" if packing_works(model.embed.weight.dtype) else "eager"
    shared_prefix = shared_prefix_attention_works()
    make_product = {"packed": PackedProduct, "half_weights": HalfWeightProduct}.get(kind)
    make_swiglu = {"packed": PackedSwiGLU, "half_weights": HalfWeightSwiGLU}.get(kind)

    def product(weight: torch.Tensor, eager: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        return all_threads(make_product(weight) if make_product else eager)

    for block in model.blocks:
        for linear in (block.attn.qkv, block.attn.out):
            linear.forward = product(linear.weight, linear.forward)
        block.ffn.forward = all_threads(make_swiglu(block.ffn) if make_swiglu else block.ffn.forward)
        block.attn.attend = all_threads(block.attn.attend)
        if shared_prefix:
            block.attn.attend_after_prefix = all_threads(attend_after_shared_prefix)
    model.project_vocab = product(model.embed.weight, model.project_vocab)
    return kind
