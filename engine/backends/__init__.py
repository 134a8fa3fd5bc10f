"""Backends run a network; the engine owns everything else (tokens, sampling, caching).

A backend has two calls, the same for every network:
- `extend(cache, ids, start)`: causal pass over prefix tokens at positions start.., appended to `cache`.
- `denoise(cache, canvas, hole)`: bidirectional pass over the canvas (reading the prefix cache);
   logits for the first `hole` canvas positions only.

Optional: `new_tail()` -> a TailCache; `denoise(..., tail=...)` then fills it with the suffix head's keys
and values on a full pass and, while it is filled, runs only the hole slots (see engine/native.py).
Optional: `new_hole_cache()` -> a HoleCache; such a backend's `denoise(..., rows=..., hole_cache=...)`
returns logits for the hole slots `rows` only and, with a filled tail, reuses the kept keys of hole
slots whose input is unchanged (engine/native.py's HoleKV). Without it the engine slices the logits.
Optional: `continuation_logprobs(cache, last, ids, length=None)` -> log-probabilities of right-padded
continuations ids (B, T) of the cached prefix (whose last token is `last`; or of its first `length`
positions, whose last is `last`) under the causal pass; length_choice "likelihood" ranks fills with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from engine.types import ModelLoadError


class PrefixKV(Protocol):
    """Backend-owned key/value cache of a causal prefix pass."""

    @property
    def length(self) -> int: ...

    def truncate(self, length: int) -> None: ...


class TailCache(Protocol):
    """Backend-owned keys/values of the canvas's suffix head, reused across denoising steps."""

    @property
    def filled(self) -> bool: ...

    def clear(self) -> None: ...

    def move(self, delta: int) -> None:
        """The suffix head moved `delta` positions (the hole before it was resized)."""
        ...

    def copy(self) -> TailCache:
        """Another handle on the same keys, unaffected by this one's later move or clear."""
        ...

    def moved_per_row(self, deltas: list[int]) -> TailCache:
        """A batch of these keys, row b moved `deltas[b]` positions (one row's hole b resized)."""
        ...


class HoleCache(Protocol):
    """Backend-owned keys/values of the hole slots, each from the last pass that ran that slot."""

    @property
    def filled(self) -> bool: ...

    def clear(self) -> None: ...


class Backend(Protocol):
    noise: str  # "mask" (absorbing) or "uniform" (DiffusionGemma)
    vocab_size: int
    device: torch.device
    model: torch.nn.Module

    def new_cache(self) -> PrefixKV: ...

    def extend(self, cache: PrefixKV, ids: torch.Tensor, start: int) -> None:
        """Encode `ids` (T,) causally at positions start..start+T-1 and append them to `cache`."""
        ...

    def denoise(
        self,
        cache: PrefixKV,
        canvas: torch.Tensor,
        hole: int,
        self_condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """canvas (B, C) token ids after the cached prefix -> logits (B, hole, V) for canvas[:, :hole]."""
        ...


def load_backend(source: str | Path, device: torch.device, model_type: str, dtype: str | None = None) -> Backend:
    """Pick the backend from config.json's model_type; `source` is a model directory or a Hugging Face id.

    `dtype`: float32, bfloat16, or None / auto for the timed choice (engine/backends/precision.py); the native
    backend runs its matrix products in it, the DiffusionGemma one the whole model."""
    if model_type == "dgem_native":
        from engine.backends.native import NativeBackend

        return NativeBackend.load(Path(source), device, dtype)
    if model_type == "diffusion_gemma":
        from engine.backends.diffusion_gemma import DiffusionGemmaBackend

        return DiffusionGemmaBackend.load(str(source), device, dtype)
    raise ModelLoadError(f"{source}: unknown model_type {model_type!r} in config.json")
