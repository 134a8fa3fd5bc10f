"""The `diffusion_gemma` backend: Google's DiffusionGemma through transformers.

How the Backend calls map onto `DiffusionGemmaForBlockDiffusion` (transformers' module names):
- `extend`  -> `model.model.encoder`: the causal pass over prefix tokens, which appends their keys and
  values to a transformers `DynamicCache` (the encoder is the only writer of that cache).
- `denoise` -> the submodules of `model.model.decoder` (embedding, self-conditioning block, rotary
  tables, layers, final norm), which read the cache without writing it, then `model.lm_head` and the
  final logit soft-capping on the hole slots only.

The decoder loop is run here rather than through `decoder.forward` for two reasons:
1. the self-conditioning signal of the hole slots is computed from (B, hole, V) logits; forward() wants
   (B, C, V) logits and a (C, V) x (V, D) product, as large as a second LM head over the canvas;
2. the prefix cache keeps every layer's keys (transformers' own cache drops sliding-window layers'
   old keys), so that `truncate` can cut it anywhere; the decoder's sliding-window layers are then
   given a mask that shows them what transformers' cache would have kept.

Shapes: B batch, T new prefix tokens, L cached tokens, C canvas, H hole slots, D width, V vocabulary.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
from transformers import DiffusionGemmaForBlockDiffusion, DynamicCache

from engine.tokenizer import SpecialTokens
from engine.types import ModelLoadError

# transformers' DiffusionGemma generate() defaults, used where the checkpoint's generation config is silent
DEFAULT_GENERATION = {
    "max_steps": 48,
    "entropy_bound": 0.1,
    "t_min": 0.4,
    "t_max": 0.8,
    "stability_threshold": 1,
    "confidence_threshold": 0.005,
}


class DiffusionGemmaKV:
    """The prefix cache: a transformers DynamicCache whose layers all keep every token (croppable anywhere)."""

    def __init__(self) -> None:
        self.kv = DynamicCache()  # no config: full layers only, see the module docstring
        # (B, the layer-0 key tensor it was copied from, the copy) for batched canvases
        self._batched: tuple[int, torch.Tensor | None, DynamicCache] | None = None

    @property
    def length(self) -> int:
        return self.kv.get_seq_length()

    def truncate(self, length: int) -> None:
        extra = self.length - length
        if extra > 0:
            self.kv.crop(-extra)  # transformers' crop takes the number of tokens to remove, negated

    def for_batch(self, batch: int, empty: list[tuple[int, int]], like: torch.Tensor) -> DynamicCache:
        """The cache as seen by `batch` canvas rows.

        `empty` gives (kv heads, head dim) per layer for an empty prefix; `like` gives dtype and device.
        """
        if batch == 1 and self.length > 0:
            return self.kv
        source = self.kv.layers[0].keys if self.length > 0 else None
        # extend and truncate replace the key tensors, so holding the one a copy was made from tells staleness
        if self._batched is not None and self._batched[0] == batch and self._batched[1] is source:
            return self._batched[2]
        if source is not None:
            rows = [
                (layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1))
                for layer in self.kv.layers
            ]
        else:  # the decoder concatenates canvas keys onto each layer's cache: give it empty ones
            rows = [
                (like.new_zeros(batch, heads, 0, dim), like.new_zeros(batch, heads, 0, dim))
                for heads, dim in empty
            ]
        # one copy per (prefix, batch size), reused by every denoising step of a fill
        batched = DynamicCache(ddp_cache_data=rows)
        self._batched = (batch, source, batched)
        return batched


class DiffusionGemmaBackend:
    """DiffusionGemma as an infill backend.

    Assumptions about the canvas (C <= config.canvas_length, which is only the training block size):
    - canvas = [hole slots][suffix head], at positions L.. right after the cached prefix, like one block
      of transformers' generate(); a shorter canvas is a smaller block, not padded to canvas_length;
    - every canvas token is a real token (suffix tokens clamped, hole tokens noise or drafts): there is
      no attention padding inside the canvas;
    - the sliding-window layers of the decoder see the last `sliding_window - 1` prefix tokens and the
      whole canvas, full-attention layers see everything (what generate() does with its default cache).
    Self-conditioning: pass the previous step's logits for the hole slots *after* the temperature
    schedule (generate() feeds back its processed logits). Suffix slots are fed the embedding of their
    own token (the soft embedding of a certain prediction), because a clamped token is known.
    """

    noise = "uniform"

    def __init__(self, model: DiffusionGemmaForBlockDiffusion, device: torch.device):
        self.model = model.eval()
        self.device = device
        self.text_config = model.config.text_config
        self.vocab_size: int = self.text_config.vocab_size
        self.canvas_length: int = model.config.canvas_length
        self.softcap: float | None = getattr(self.text_config, "final_logit_softcapping", None)
        # (kv heads, head dim) of each decoder layer, for an empty prefix
        self._empty_kv = [
            (layer.self_attn.k_proj.out_features // layer.self_attn.head_dim, layer.self_attn.head_dim)
            for layer in model.model.decoder.layers
        ]

    @classmethod
    def load(
        cls, source: str | Path, device: torch.device, dtype: torch.dtype | None = None
    ) -> DiffusionGemmaBackend:
        """Load from a local model directory or a Hugging Face id (offline when HF_HUB_OFFLINE is set)."""
        source = str(source)
        path = Path(source).expanduser()
        looks_like_path = source.startswith((".", "/", "~")) or source.count("/") > 1 or path.exists()
        if looks_like_path and not (path / "config.json").is_file():
            raise ModelLoadError(f"{source}: not a model directory (no config.json)")
        # bf16 on GPUs; float32 on CPUs, where bf16 matrix products are often slower
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        # with accelerate, weights go straight to the device (a 26B model need not pass through host memory)
        placement = {"device_map": device} if importlib.util.find_spec("accelerate") else {}
        try:
            model = DiffusionGemmaForBlockDiffusion.from_pretrained(
                str(path) if looks_like_path else source,
                dtype=dtype,
                attn_implementation="sdpa",  # the decoder's window masks are additive 4D masks
                local_files_only=_hub_offline(),
                **placement,
            ).to(device)
        except Exception as error:  # hub, file and config errors all end here: one line for the user
            text = str(error).strip()
            first_line = text.splitlines()[0] if text else type(error).__name__
            raise ModelLoadError(f"{source}: cannot load DiffusionGemma ({first_line})") from None
        return cls(model, device)

    # ---- what the sampler needs from the checkpoint ----------------------------------------------

    def special_tokens(self) -> SpecialTokens:
        """pad, eos, bos token ids from the generation config, else the text config; no mask (uniform noise).

        A checkpoint may list several eos ids; the first one is taken.
        """
        generation = self.model.generation_config
        eos = _first(getattr(generation, "eos_token_id", None))
        if eos is None:
            eos = _first(self.text_config.eos_token_id)
        pad = getattr(generation, "pad_token_id", None)
        bos = getattr(generation, "bos_token_id", None)
        if pad is None:
            pad = self.text_config.pad_token_id
        if bos is None:
            bos = self.text_config.bos_token_id
        if pad is None or eos is None:
            raise ModelLoadError(f"{self.model.name_or_path}: the checkpoint names no pad or eos token")
        return SpecialTokens(pad=pad, eos=eos, bos=bos, mask=None)

    def generation_defaults(self) -> dict[str, Any]:
        """Sampler defaults from the checkpoint's generation config, keyed like engine.model_dir's."""
        generation = self.model.generation_config
        sampler = getattr(generation, "sampler_config", None)
        found = {
            "max_steps": getattr(generation, "max_denoising_steps", None),
            "entropy_bound": getattr(sampler, "entropy_bound", None),
            "t_min": getattr(generation, "t_min", None),
            "t_max": getattr(generation, "t_max", None),
            "stability_threshold": getattr(generation, "stability_threshold", None),
            "confidence_threshold": getattr(generation, "confidence_threshold", None),
        }
        defaults = {key: DEFAULT_GENERATION[key] if value is None else value for key, value in found.items()}
        defaults["canvas_length"] = self.canvas_length
        return defaults

    # ---- the Backend protocol ---------------------------------------------------------------------

    def new_cache(self) -> DiffusionGemmaKV:
        return DiffusionGemmaKV()

    @torch.inference_mode()
    def extend(self, cache: DiffusionGemmaKV, ids: torch.Tensor, start: int) -> None:
        """Encode ids (T,) causally at positions start..start+T-1 and append them to `cache`."""
        assert cache.length == start, "the prefix cache must end where the new tokens start"
        T = ids.shape[0]
        if T == 0:
            return
        positions = torch.arange(start, start + T, device=self.device)[None]  # (1, T)
        # the encoder builds its own causal and sliding-window masks from the cache length
        self.model.model.encoder(
            input_ids=ids.to(self.device)[None], past_key_values=cache.kv, position_ids=positions
        )

    @torch.inference_mode()
    def denoise(
        self,
        cache: DiffusionGemmaKV,
        canvas: torch.Tensor,
        hole: int,
        self_condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """canvas (B, C) token ids after the cached prefix -> float32 logits (B, hole, V) for canvas[:, :hole].

        self_condition: (B, hole, V) logits of the previous step, or None at the first step.
        """
        decoder = self.model.model.decoder
        B, C = canvas.shape
        assert 0 < hole <= C, f"hole {hole} must be within the canvas ({C})"
        L = cache.length
        canvas = canvas.to(self.device)

        # 1. token embeddings plus the self-conditioning signal (zeros at the first step, as generate() does)
        x = decoder.embed_tokens(canvas)  # (B, C, D), already scaled by sqrt(D)
        kv = cache.for_batch(B, self._empty_kv, x)
        if self_condition is None:
            soft = torch.zeros_like(x)
        else:
            embed = decoder.embed_tokens
            probs = self_condition.to(self.device).softmax(dim=-1, dtype=torch.float32).to(embed.weight.dtype)
            soft_hole = probs @ embed.weight * embed.embed_scale.to(x.dtype)  # (B, hole, D)
            soft = torch.cat((soft_hole, x[:, hole:]), dim=1)  # (B, C, D): suffix slots see their own token
        x = decoder.self_conditioning(x, soft)  # (B, C, D)

        # 2. rotary tables per layer type, and a window mask for the sliding layers
        positions = torch.arange(L, L + C, device=self.device)[None]  # (1, C)
        layer_types = self.text_config.layer_types
        rotary = {kind: decoder.rotary_emb(x, positions, kind) for kind in set(layer_types)}
        masks = {"full_attention": None, "sliding_attention": self._window_mask(L, C, x.dtype)}

        # 3. the layers: bidirectional over the canvas, reading the prefix keys without writing them
        for layer, kind in zip(decoder.layers, layer_types, strict=True):
            x = layer(
                x,
                position_embeddings=rotary[kind],
                attention_mask=masks[kind],
                position_ids=positions,
                past_key_values=kv,
            )  # (B, C, D)

        # 4. norm, LM head and soft-capping on the hole slots only
        logits = self.model.lm_head(decoder.norm(x[:, :hole])).float()  # (B, hole, V)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def _window_mask(self, L: int, C: int, dtype: torch.dtype) -> torch.Tensor | None:
        """Additive (1, 1, C, L + C) mask hiding prefix keys older than the sliding window; None if all are seen."""
        visible = self.text_config.sliding_window - 1  # what transformers' sliding cache keeps
        if visible >= L:
            return None
        mask = torch.zeros(1, 1, C, L + C, dtype=dtype, device=self.device)
        mask[..., : L - visible] = torch.finfo(dtype).min
        return mask


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _first(value: int | list[int] | None) -> int | None:
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value
