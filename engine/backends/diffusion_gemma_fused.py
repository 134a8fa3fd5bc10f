"""One DiffusionGemma layer in few operations, reading a transformers layer's weights (the CPU's path).

On a 64-slot canvas a step is ~20 small matrix products and ~400 other operations. Each costs microseconds of
dispatch, and one over more than 32,768 elements (ATen's grain size) also wakes the second OpenMP thread,
~60 us when threads sleep while they wait (OMP_WAIT_POLICY=PASSIVE, as the service sets). transformers' layer
spends most of its operations on nine RMSNorms (each: to float32, square, mean, add, power, multiply, weight to
float32, multiply, back), on rotary (rotate_half's slices, negation and concatenation) and on the experts'
gathers. This layer computes the same sums in about a third of the operations:
1. q, k and v from one product; their three norms as one, over all heads at once (v's weight is ones);
2. rotary in float32 on the normed q and k heads, as x cos + roll(x) sin', where sin' carries rotate_half's
   sign (`rotary_tables`, made once per pass), then one cast;
3. the three norms of the residual stream before the feed-forward blocks (dense MLP, experts, router) share
   one normalisation; the two post-norms of the dense and expert outputs run as one; a norm's last
   multiplication writes the model's dtype itself (no separate cast);
4. few experts on few rows (a canvas): every expert on every row, the router's weights (zero for experts not
   chosen) applied before one down product over all experts.
Rounding: norms and rotary stay in float32 until one rounding to the model's dtype, where transformers rounds
after each norm and runs rotary in bf16, and the expert weights are applied before the down product, not
after, so a bf16 model's logits differ from transformers' by bf16 noise, as far from the float32 logits as
transformers' own (tests/test_diffusion_gemma_backend.py); a float32 model's agree to float32 rounding.

`FusedLayer.covers` says which layers it takes: no biases, transformers' default experts layout; the backend
keeps the step-by-step path (`_Layer` in diffusion_gemma.py) for any other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DENSE_EXPERTS_MAX_ROWS = 256  # a canvas (or a few): few enough rows that the number of products dominates


def normalized(
    x: torch.Tensor, eps: float, weight: torch.Tensor | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """RMSNorm as transformers computes it, x * (mean(x^2) + eps)^-0.5 * weight in float32, rounded once to
    `dtype` by the last multiplication itself (None: left in float32)."""
    x = x.float()
    scale = x.square().mean(-1, keepdim=True).add_(eps).pow_(-0.5)
    if weight is not None:
        x = x * scale  # a new tensor: x may be the caller's float32 input
        scale = weight
    if dtype is None:
        return x * scale
    out = torch.empty(torch.broadcast_shapes(x.shape, scale.shape), dtype=dtype, device=x.device)
    return torch.mul(x, scale, out=out)


def rotary_tables(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (B, S, d) of a layer type -> float32 (B, S, 1, d) for every head, sin with rotate_half's sign
    folded in: rotate_half(x) sin = roll(x, d/2) sin'."""
    cos, sin = cos.float(), sin.float()
    half = cos.shape[-1] // 2
    signed = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
    return cos[:, :, None], signed[:, :, None]


def multiplied(x: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x * weight (broadcast to x's shape), computed in the wider dtype and rounded once to `dtype`."""
    return torch.mul(x, weight, out=torch.empty(x.shape, dtype=dtype, device=x.device))


class FusedLayer:
    """A transformers DiffusionGemma encoder or decoder layer's forward, in fewer operations (module docstring)."""

    @staticmethod
    def covers(module: torch.nn.Module) -> bool:
        attn, mlp, experts = module.self_attn, module.mlp, module.experts
        linears = [
            attn.q_proj,
            attn.k_proj,
            attn.o_proj,
            mlp.gate_proj,
            mlp.up_proj,
            mlp.down_proj,
            module.router.proj,
        ]
        if attn.v_proj is not None:
            linears.append(attn.v_proj)
        default_experts = (
            getattr(experts, "is_concatenated", True)
            and not getattr(experts, "is_transposed", False)
            and not getattr(experts, "has_bias", False)
            and not getattr(experts, "has_post_expert_norm", False)
            and getattr(experts, "has_gate", True)
        )
        return default_experts and all(linear.bias is None for linear in linears)

    def __init__(self, module: torch.nn.Module, shared: dict[tuple[int, ...], torch.Tensor]):
        self.module = module
        self.attn = attn = module.self_attn
        d = attn.head_dim
        self.head_dim = d
        self.heads = attn.q_proj.out_features // d
        self.kv_heads = attn.k_proj.out_features // d
        self.eps = module.input_layernorm.eps
        self.input_norm = module.input_layernorm.weight.float()
        # full-attention layers have no v projection: v is k before its norm, so k's rows serve twice
        v_weight = attn.v_proj.weight if attn.v_proj is not None else attn.k_proj.weight
        self.qkv = _concatenated([attn.q_proj.weight, attn.k_proj.weight, v_weight], shared)
        ones = torch.ones(self.kv_heads, d, device=self.qkv.device)
        self.qkv_norm = torch.cat(  # (heads + 2 kv heads, d): q_norm's weight, k_norm's, none for v
            (
                attn.q_norm.weight.float().expand(self.heads, d),
                attn.k_norm.weight.float().expand(self.kv_heads, d),
                ones,
            )
        )
        self.o = attn.o_proj.weight
        self.post_attention = module.post_attention_layernorm.weight.float()
        router = module.router
        # the three inputs of the feed-forward blocks: dense MLP, experts, router (its norm has no weight; then
        # its scale and 1/sqrt(D))
        self.feed_forward_in = torch.stack(
            (
                module.pre_feedforward_layernorm.weight.float(),
                module.pre_feedforward_layernorm_2.weight.float(),
                router.scale.float() * router.scalar_root_size,
            )
        )  # (3, D)
        mlp = module.mlp
        self.gate_up = _concatenated([mlp.gate_proj.weight, mlp.up_proj.weight], shared)
        self.down = mlp.down_proj.weight
        self.act = mlp.act_fn
        self.post_feedforward_pair = torch.stack(
            (
                module.post_feedforward_layernorm_1.weight.float(),
                module.post_feedforward_layernorm_2.weight.float(),
            )
        )[:, None, None]  # (2, 1, 1, D)
        self.post_feedforward = module.post_feedforward_layernorm.weight.float()
        self.router = router.proj.weight
        self.top_k = router.config.top_k_experts
        self.per_expert_scale = router.per_expert_scale
        experts = module.experts
        self.experts_module = experts
        E, two_i, D = experts.gate_up_proj.shape
        self.experts_gate_up = experts.gate_up_proj.detach().view(E * two_i, D)  # every expert in one product
        key = (experts.down_proj.data_ptr(), -1)
        if key not in shared:  # (D, E * I): every expert's down product, summed over experts, in one product
            shared[key] = experts.down_proj.detach().permute(1, 0, 2).reshape(D, -1).contiguous()
        self.experts_down = shared[key]
        self.few_experts = experts.num_experts <= 2 * self.top_k
        # exactly one (the common case) multiplies nothing
        self.layer_scalar = None if bool((module.layer_scalar == 1).all()) else module.layer_scalar

    def keys_values(
        self, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """normed (B, S, D) -> keys and values (B, kv heads, S, d), as the attention module caches them."""
        return self.project(normed, cos, sin, first=self.heads)

    def project(
        self, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, first: int = 0
    ) -> tuple[torch.Tensor, ...]:
        """normed (B, S, D) -> queries (B, heads, S, d), keys and values (B, kv heads, S, d), after their norms
        and rotary; from head `first` on (`heads`: keys and values only). cos, sin: rotary_tables'."""
        B, S, _ = normed.shape
        d, k = self.head_dim, self.kv_heads
        weight = self.qkv if first == 0 else self.qkv[first * d :]
        heads = F.linear(normed, weight).view(B, S, -1, d)  # (B, S, heads + 2 kv heads, d)
        heads = normalized(heads, self.eps, self.qkv_norm[first:])  # float32
        rotating = heads[:, :, :-k]  # q and k
        rotated = torch.addcmul(rotating * cos, rotating.roll(d // 2, dims=-1), sin).to(normed.dtype)
        values = heads[:, :, -k:].to(normed.dtype).transpose(1, 2)  # (B, kv heads, S, d)
        rotated = rotated.transpose(1, 2)  # (B, heads + kv heads, S, d)
        if first:
            return rotated, values
        return rotated[:, :-k], rotated[:, -k:], values

    def after_attention(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The rest of the layer: x (B, S, D) and the attention output (B, heads, S, d) -> (B, S, D)."""
        B, S, D = x.shape
        dtype = x.dtype
        attended = F.linear(out.transpose(1, 2).reshape(B, S, -1), self.o)
        x = x + normalized(attended, self.eps, self.post_attention, dtype)
        # the dense MLP's input, the experts' and the router's: one normalisation, three weights (separate
        # multiplications: on a canvas each stays under ATen's grain size, so none wakes a second thread)
        unit = normalized(x, self.eps)  # (B, S, D) float32
        dense_in, experts_in, router_in = (multiplied(unit, weight, dtype) for weight in self.feed_forward_in)
        gate, up = F.linear(dense_in, self.gate_up).chunk(2, dim=-1)
        dense = F.linear(self.act(gate) * up, self.down)  # (B, S, D)
        # the router, as transformers' (softmax in float32, top-k renormalised, per-expert scale)
        scores = F.linear(router_in.view(B * S, D), self.router).softmax(dim=-1, dtype=torch.float32)
        weights, chosen = scores.topk(self.top_k, dim=-1)  # (B*S, top-k)
        weights = weights / weights.sum(dim=-1, keepdim=True) * self.per_expert_scale[chosen]
        experts = self.experts(experts_in.view(B * S, D), chosen, weights).view(B, S, D)
        pair = normalized(torch.stack((dense, experts)), self.eps, self.post_feedforward_pair, dtype)
        x = x + normalized(pair.sum(dim=0, dtype=dtype), self.eps, self.post_feedforward, dtype)
        return x if self.layer_scalar is None else x * self.layer_scalar

    def experts(self, x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x (N, D), chosen experts and their weights (N, top-k) -> (N, D)."""
        N = x.shape[0]
        if not self.few_experts or N > DENSE_EXPERTS_MAX_ROWS:
            return self.experts_module(x, chosen, weights)  # transformers' configured implementation
        E = self.experts_module.num_experts
        gate, up = F.linear(x, self.experts_gate_up).view(N, E, -1).chunk(2, dim=-1)
        hidden = self.act(gate) * up  # (N, E, I): every expert on every row
        every = torch.zeros(N, E, dtype=weights.dtype, device=x.device).scatter_(1, chosen, weights)  # (N, E)
        hidden = multiplied(hidden, every[..., None], hidden.dtype)  # experts not chosen weigh zero
        return F.linear(hidden.view(N, -1), self.experts_down)


def _concatenated(weights: list[torch.Tensor], shared: dict[tuple[int, ...], torch.Tensor]) -> torch.Tensor:
    """The weights stacked by rows, made once for weights that several modules share."""
    key = tuple(weight.data_ptr() for weight in weights)
    if key not in shared:
        shared[key] = torch.cat([weight.detach() for weight in weights])
    return shared[key]
