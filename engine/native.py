"""The project's own small diffusion network, one file, read top to bottom.

One weight stack used two ways (DiffusionGemma's layout):
- causal over the prefix, which fills a key/value cache that stays valid while the prefix is unchanged;
- bidirectional over the canvas ([hole slots][suffix head]), which also reads the prefix cache.

Pre-norm transformer: RMSNorm, rotary positions, QK-norm, SwiGLU, tied embeddings.
Precision as the model trained (bf16 autocast): matrix products and attention in the linear weights' dtype,
norms and rotary in float32, the residual stream in the norms' dtype (`NativeModel.matmuls_in`).
Shapes: B batch, T new tokens, L cached tokens, C canvas, D model width, H heads, E head width.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NativeConfig:
    vocab_size: int = 16384
    dim: int = 384
    n_layers: int = 8
    n_heads: int = 6
    ffn_dim: int = 1024
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def from_dict(cls, values: dict) -> NativeConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)


class Rotary(nn.Module):
    """cos/sin tables for rotary positions, grown on demand."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cos = torch.empty(0)
        self._sin = torch.empty(0)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (B, T) -> cos, sin (B, 1, T, E/2)."""
        need = int(positions.max()) + 1
        if self._cos.shape[0] < need or self._cos.device != self.inv_freq.device:
            size = max(need, 2 * self._cos.shape[0], 1024)
            angles = torch.outer(torch.arange(size, device=self.inv_freq.device).float(), self.inv_freq)
            self._cos, self._sin = angles.cos(), angles.sin()
        return self._cos[positions].unsqueeze(1), self._sin[positions].unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, H, T, E/2) each
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in the weight's dtype: a bf16 q or k is normed in float32, as under bf16 autocast
        return F.rms_norm(x.to(self.weight.dtype), (x.shape[-1],), self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: NativeConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x (B, T, D) -> q, k, v (B, H, T, E), normed and rotated."""
        B, T, _ = x.shape
        qkv = self.qkv(x.to(self.qkv.weight.dtype))  # (B, T, 3D)
        qkv = qkv.view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, T, E)
        # q and k normed and rotated as one tensor: half the small operations, each one costly on a CPU
        qk = qkv[:2].to(self.q_norm.weight.dtype)  # (2, B, H, T, E), contiguous
        scale = torch.stack((self.q_norm.weight, self.k_norm.weight))[:, None, None, None]  # (2, 1, 1, 1, E)
        qk = F.rms_norm(qk, (self.head_dim,), None, self.q_norm.eps) * scale
        q, k = apply_rotary(qk, cos, sin).to(qkv.dtype)  # attention runs in the matrix products' dtype
        return q, k, qkv[2]

    def attend(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, **options: object
    ) -> torch.Tensor:
        """Attention of q (B, H, T, E) over keys, values (B, H, K, E) -> (B, H, T, E); `options` as
        F.scaled_dot_product_attention's (a CPU backend swaps in its own kernel, engine/backends/cpu_kernels.py)."""
        return F.scaled_dot_product_attention(q, keys, values, **options)  # type: ignore[arg-type]

    def attend_after_prefix(
        self,
        q: torch.Tensor,
        prefix_keys: torch.Tensor,
        prefix_values: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention of each row's queries q (B, H, T, E) over a prefix that every row shares, prefix_keys and
        prefix_values (1, H, L, E), followed by the row's own keys and values (B, H, C, E); `mask` (bool, True
        = attend, broadcastable to (B, 1, T, C)) applies to the row's own keys. The same as `attend` over
        [prefix; own] per row; a CPU backend swaps in a kernel that never copies the prefix into each row
        (engine/backends/cpu_kernels.py)."""
        B = q.shape[0]
        all_keys = torch.cat((prefix_keys.expand(B, -1, -1, -1), keys), dim=2)
        all_values = torch.cat((prefix_values.expand(B, -1, -1, -1), values), dim=2)
        if mask is not None:
            mask = mask.expand(B, 1, q.shape[2], keys.shape[2])
            mask = torch.cat((mask.new_ones(B, 1, q.shape[2], prefix_keys.shape[2]), mask), dim=-1)
        return self.attend(q, all_keys, all_values, attn_mask=mask)

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        B, _, T, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, D)


class SwiGLU(nn.Module):
    def __init__(self, cfg: NativeConfig):
        super().__init__()
        self.gate_up = nn.Linear(cfg.dim, 2 * cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x.to(self.gate_up.weight.dtype)).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: NativeConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = SwiGLU(cfg)


class LayerKV:
    """Keys and values of one layer with spare room at the end, so appending rarely copies.

    The canvas of a denoising step is written into the spare room without moving `length`, which
    keeps a step free of concatenations over the whole prefix.
    """

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = k, v  # (1, H, capacity, E)
        self.length = 0

    def reserve(self, extra: int) -> None:
        need = self.length + extra
        if need <= self.k.shape[2]:
            return
        capacity = max(need, 2 * self.k.shape[2], 256)
        for name in ("k", "v"):
            old = getattr(self, name)
            grown = old.new_empty(old.shape[0], old.shape[1], capacity, old.shape[3])
            grown[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, grown)


class NativeKV:
    """The prefix cache of the native network: one LayerKV per layer."""

    def __init__(self, cfg: NativeConfig, device: torch.device, dtype: torch.dtype):
        empty = torch.empty(1, cfg.n_heads, 0, cfg.head_dim, device=device, dtype=dtype)
        self.layers = [LayerKV(empty, empty) for _ in range(cfg.n_layers)]

    @property
    def length(self) -> int:
        return self.layers[0].length

    def truncate(self, length: int) -> None:
        for layer in self.layers:
            layer.length = min(layer.length, length)


class TailKV:
    """Keys and values of the canvas's suffix head, kept from one full pass for the steps after it.

    The suffix head's keys depend on the hole only through attention, and the hole changes a few slots
    per step; reusing them for a few steps runs the network on the hole slots alone (Fast-dLLM's
    "dual cache" idea), at the price of suffix keys that lag the hole by those steps.
    """

    def __init__(self, rotary: Rotary) -> None:
        self.rotary = rotary
        self.keys: list[torch.Tensor] = []  # per layer (B, H, suffix, E), rotated to their positions
        self.values: list[torch.Tensor] = []

    @property
    def filled(self) -> bool:
        return bool(self.keys)

    def add(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.keys.append(k.clone())
        self.values.append(v.clone())

    def clear(self) -> None:
        """The next pass runs the whole canvas again and refills this."""
        self.keys, self.values = [], []

    def copy(self) -> TailKV:
        """A second handle on the same keys (move and clear replace lists, never tensors in place)."""
        other = TailKV(self.rotary)
        other.keys, other.values = list(self.keys), list(self.values)
        return other

    def move(self, delta: int) -> None:
        """The suffix head now sits `delta` positions later (the hole was resized): rotary positions
        compose, so turning each kept key by delta's angles gives the key at the new position."""
        angles = delta * self.rotary.inv_freq  # (E/2,)
        self.keys = [apply_rotary(k, angles.cos(), angles.sin()) for k in self.keys]

    def moved_per_row(self, deltas: list[int]) -> TailKV:
        """A tail of one row per delta, each row this (one-row) tail moved by its delta: the suffix heads of a
        batch whose rows' holes differ in size (NativeModel.denoise's `hole_lengths`), from one pass's keys."""
        other = TailKV(self.rotary)
        if not self.filled:
            return other
        rows = len(deltas)
        angles = torch.tensor(deltas, dtype=torch.float32, device=self.rotary.inv_freq.device)[:, None]
        angles = (angles * self.rotary.inv_freq)[:, None, None, :]  # (B, 1, 1, E/2)
        # row 0: a head kept from a fill of alternatives has one row per alternative, all the same
        other.keys = [apply_rotary(k[:1].expand(rows, -1, -1, -1), angles.cos(), angles.sin()) for k in self.keys]
        other.values = [v[:1].expand(rows, -1, -1, -1) for v in self.values]
        return other

    def layer(self, index: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys[index], self.values[index]
        if keys.shape[0] != batch:  # kept from a fill of other rows (alternatives): its rows' heads are one
            keys, values = keys[:1], values[:1]
        return keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1)


class HoleKV:
    """Keys and values of the hole slots, each from the last pass that ran it, and the hole they came from.

    dKV-cache / Fast-dLLM's idea: a slot's keys change most when its input changes (<mask> -> token), and
    a committed slot's input never changes again. So a committed slot runs once more with its token as
    input (the step after its commit), and from then on its kept keys stand in for it: a step runs only
    the slots whose logits are wanted (the still-masked ones) and the slots whose input changed. Kept keys
    lag the slots around them by the steps since they were computed; `clear` brings back a full pass.
    """

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []  # per layer (B, H, S, E), rotated to their positions
        self.values: list[torch.Tensor] = []
        self.tokens: torch.Tensor | None = None  # (B, S) the hole's input when the keys were computed

    @property
    def filled(self) -> bool:
        return self.tokens is not None

    def clear(self) -> None:
        self.keys, self.values, self.tokens = [], [], None

    def stale(self, hole: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor | None:
        """hole (B, S) -> (A,) sorted ids of the slots a pass must run: those whose input changed since
        their keys were computed, and `rows` (all slots when None); None when the keys do not fit this hole."""
        if self.tokens is None or self.tokens.shape != hole.shape:
            return None
        run = (hole != self.tokens).any(0)  # (S,)
        if rows is None:
            run[:] = True
        else:
            run[rows] = True
        return run.nonzero()[:, 0]


class NativeModel(nn.Module):
    def __init__(self, cfg: NativeConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta)
        self.apply(self._init)

    def _init(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, (Attention, SwiGLU)):
            last = module.out if isinstance(module, Attention) else module.down
            nn.init.normal_(last.weight, std=0.02 / math.sqrt(2 * self.cfg.n_layers))

    def matmuls_in(self, dtype: torch.dtype) -> NativeModel:
        """Matrix products in `dtype`, the rest as bf16 autocast kept it in training: the linear and embedding
        weights (the tied LM head) take `dtype`; the norms, and with them the residual stream, stay as they are."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.to(dtype)
        return self

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> (B, T, D) in the residual stream's dtype, the norms'."""
        return self.embed(ids).to(self.norm.weight.dtype)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied LM head: hidden (..., D) -> (..., V), in the matrix products' dtype."""
        return self.project_vocab(self.norm(hidden).to(self.embed.weight.dtype))

    def project_vocab(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) in the matrix products' dtype -> (..., V): the tied embedding as the LM head."""
        return F.linear(hidden, self.embed.weight)

    # ---- inference: prefix cache + canvas -------------------------------------------------------

    @torch.inference_mode()
    def extend(self, cache: NativeKV, ids: torch.Tensor, start: int) -> torch.Tensor:
        """Causal pass over ids (T,) at positions start.. ; appends their keys/values to `cache`.

        Returns the new tokens' hidden states (1, T, D): `logits` of the last one predicts the next
        token, which is what autoregressive decoding with this network needs.
        """
        assert cache.length == start, "the prefix cache must end where the new tokens start"
        T = ids.shape[0]
        positions = torch.arange(start, start + T, device=ids.device)[None]  # (1, T)
        cos, sin = self.rotary(positions)
        # queries see every cached key and the new keys up to themselves
        mask = None if start == 0 else torch.ones(T, start + T, dtype=torch.bool, device=ids.device).tril(start)
        x = self.embed_tokens(ids[None])  # (1, T, D)
        for block, kv in zip(self.blocks, cache.layers, strict=True):
            q, k, v = block.attn.project(block.attn_norm(x), cos, sin)
            kv.reserve(T)
            kv.k[:, :, start : start + T] = k
            kv.v[:, :, start : start + T] = v
            keys, values = kv.k[:, :, : start + T], kv.v[:, :, : start + T]
            y = block.attn.attend(q, keys, values, attn_mask=mask, is_causal=mask is None)
            x = x + block.attn.merge(y)
            x = x + block.ffn(block.ffn_norm(x))
            kv.length = start + T
        return x

    @torch.inference_mode()
    def continuation_logprobs(self, cache: NativeKV, last: int, ids: torch.Tensor,
                              length: int | None = None) -> torch.Tensor:
        """Log-probabilities (B, T) of continuations ids (B, T) of the cached prefix under the causal pass.

        `last` is the cached prefix's last token: its state predicts ids[:, 0], and the cache holds only its
        keys, so it runs again, at its own position. `length`: continue after the cache's first `length`
        positions instead (`last` is then the token at length - 1), so that a caller can score the prefix's
        last tokens again within a continuation. Rows may be right-padded (causal: a pad changes nothing
        before it). The cache is read, never written.
        """
        B, T = ids.shape
        L = (cache.length if length is None else length) - 1  # keys before `last`
        run = torch.cat((torch.full((B, 1), last, dtype=ids.dtype, device=ids.device), ids[:, :-1]), dim=1)
        positions = torch.arange(L, L + T, device=ids.device)[None].expand(B, T)
        cos, sin = self.rotary(positions)
        causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()[None, None]  # (1, 1, T, T)
        x = self.embed_tokens(run)  # (B, T, D)
        for block, kv in zip(self.blocks, cache.layers, strict=True):
            q, k, v = block.attn.project(block.attn_norm(x), cos, sin)
            # every row sees the whole cached prefix, and its own tokens causally
            y = block.attn.attend_after_prefix(q, kv.k[:, :, :L], kv.v[:, :, :L], k, v, causal)
            x = x + block.attn.merge(y)
            x = x + block.ffn(block.ffn_norm(x))
        logprobs = torch.log_softmax(self.logits(x).float(), dim=-1)  # (B, T, V)
        return logprobs.gather(-1, ids[..., None])[..., 0]

    @torch.inference_mode()
    def denoise(
        self,
        cache: NativeKV,
        canvas: torch.Tensor,
        hole: int,
        tail: TailKV | None = None,
        rows: torch.Tensor | None = None,
        hole_kv: HoleKV | None = None,
        hole_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Bidirectional pass over canvas (B, C) after the cached prefix -> logits (B, hole, V), or (B, R, V)
        for the hole slots `rows` (R,) (sorted ids), the only ones whose last layer and LM head then run.

        With `hole_lengths` (B,): row b's hole is its first hole_lengths[b] slots; the slots after them are
        dead (no query attends to them) and its suffix head sits right after its hole, as if each row were a
        canvas of its own (one batched pass fills one hole at several sizes).

        With `tail`: an empty TailKV is filled with the keys and values of canvas[:, hole:] (the suffix
        head); a filled one stands in for them, and only the hole slots are run through the network.
        With `tail` and `hole_kv`: an empty HoleKV is filled with the hole slots' keys and values; a filled
        one (with a filled tail) stands in for the slots whose input is unchanged and not in `rows` (HoleKV).
        """
        B, C = canvas.shape
        L = cache.length
        reuse = tail is not None and tail.filled
        record = tail is not None and not tail.filled
        hole_ids = canvas[:, :hole]  # (B, S)
        active = hole_kv.stale(hole_ids, rows) if hole_kv is not None and reuse else None  # (A,) or None
        if active is not None:
            run, slot_positions = hole_ids[:, active], active  # only these slots; the others' keys are kept
        else:
            run = hole_ids if reuse else canvas  # the tokens this pass computes
            slot_positions = torch.arange(run.shape[1], device=canvas.device)
        T = run.shape[1]
        positions = (L + slot_positions)[None].expand(B, T)
        key_mask = None
        if hole_lengths is not None:
            dead = (hole - hole_lengths.to(canvas.device))[:, None]  # (B, 1) dead slots before the suffix
            positions = positions - torch.where(slot_positions >= hole, dead, 0)  # the suffix follows the hole
            slots = torch.arange(C, device=canvas.device)[None]  # (1, C) canvas slots
            alive = (slots < hole_lengths.to(canvas.device)[:, None]) | (slots >= hole)  # (B, C)
            key_mask = torch.cat((alive.new_ones(B, L), alive), dim=1)[:, None, None]  # (B, 1, 1, L + C)
        cos, sin = self.rotary(positions)
        # the last layer's queries: the wanted hole slots, as indices into the tokens this pass runs
        queries: slice | torch.Tensor = slice(0, hole)
        if rows is not None:
            queries = rows if active is None else torch.searchsorted(active, rows)
        fresh_hole_kv = hole_kv is not None and tail is not None and active is None
        if fresh_hole_kv:
            hole_kv.clear()
        x = self.embed_tokens(run)  # (B, T, D)
        for index, (block, kv) in enumerate(zip(self.blocks, cache.layers, strict=True)):
            q, k, v = block.attn.project(block.attn_norm(x), cos, sin)
            if record:
                tail.add(k[:, :, hole:], v[:, :, hole:])
            if active is not None:  # the kept hole keys, with the slots this pass ran written over
                k = hole_kv.keys[index].index_copy_(2, active, k)  # (B, H, S, E)
                v = hole_kv.values[index].index_copy_(2, active, v)
            elif fresh_hole_kv:
                hole_kv.keys.append(k[:, :, :hole].clone())
                hole_kv.values.append(v[:, :, :hole].clone())
            if reuse:
                tail_k, tail_v = tail.layer(index, B)
                k, v = torch.cat((k, tail_k), dim=2), torch.cat((v, tail_v), dim=2)  # (B, H, C, E)
            if B == 1:  # write the canvas into the spare room: no copy of the prefix keys
                kv.reserve(C)
                kv.k[:, :, L : L + C], kv.v[:, :, L : L + C] = k, v
                keys, values = kv.k[:, :, : L + C], kv.v[:, :, : L + C]
            if index == len(self.blocks) - 1:  # the last layer's queries, FFN and LM head: wanted slots only
                q, x = q[:, :, queries], x[:, queries]
            if B == 1:
                y = block.attn.attend(q, keys, values, attn_mask=key_mask)
            else:  # rows share the prefix: attended once for all, not copied into each row
                canvas_mask = None if key_mask is None else key_mask[..., L:]
                y = block.attn.attend_after_prefix(q, kv.k[:, :, :L], kv.v[:, :, :L], k, v, canvas_mask)
            x = x + block.attn.merge(y)
            x = x + block.ffn(block.ffn_norm(x))
        if fresh_hole_kv or active is not None:  # every slot whose input changed was run: the keys are current
            hole_kv.tokens = hole_ids.clone()
        return self.logits(x)

    # ---- training: padded prefix batch + canvas batch in one call -------------------------------

    def forward_train(
        self,
        prefix: torch.Tensor,
        prefix_valid: torch.Tensor,
        canvas: torch.Tensor,
        canvas_valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states for a training batch.

        prefix (B, P) left-padded, prefix_valid (B, P) bool; canvas (B, C) right-padded, canvas_valid (B, C).
        Positions count from each row's first real prefix token, as at inference.
        Returns prefix hidden (B, P, D) (for the next-token loss) and canvas hidden (B, C, D).
        """
        B, P = prefix.shape
        C = canvas.shape[1]
        prefix_pos = (prefix_valid.long().cumsum(1) - 1).clamp(min=0)  # (B, P)
        canvas_pos = prefix_valid.long().sum(1, keepdim=True) + torch.arange(C, device=canvas.device)  # (B, C)
        pcos, psin = self.rotary(prefix_pos)
        ccos, csin = self.rotary(canvas_pos)
        causal = torch.ones(P, P, dtype=torch.bool, device=prefix.device).tril()
        prefix_mask = (causal[None] & prefix_valid[:, None, :])[:, None]  # (B, 1, P, P)
        # a left-padded row's pad queries would see no key at all; let them see themselves
        prefix_mask = prefix_mask | torch.eye(P, dtype=torch.bool, device=prefix.device)
        keys_valid = torch.cat((prefix_valid, canvas_valid), dim=1)  # (B, P + C)
        canvas_mask = keys_valid[:, None, None, :].expand(B, 1, C, P + C)

        xp, xc = self.embed(prefix), self.embed(canvas)
        for block in self.blocks:
            qp, kp, vp = block.attn.project(block.attn_norm(xp), pcos, psin)
            qc, kc, vc = block.attn.project(block.attn_norm(xc), ccos, csin)
            yp = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=prefix_mask)
            yc = F.scaled_dot_product_attention(
                qc, torch.cat((kp, kc), dim=2), torch.cat((vp, vc), dim=2), attn_mask=canvas_mask
            )
            xp = xp + block.attn.merge(yp)
            xc = xc + block.attn.merge(yc)
            xp = xp + block.ffn(block.ffn_norm(xp))
            xc = xc + block.ffn(block.ffn_norm(xc))
        return xp, xc
