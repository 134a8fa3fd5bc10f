"""The `native` backend: the project's own network (engine/native.py) from a dgem_native model directory.

Precision: on a GPU the whole network runs in bf16. On a CPU the matrix products (linear layers, the tied
embedding and LM head, attention) run in bf16 where the CPU has native bf16; elsewhere the linear layers and
LM head keep float16 weights and sum in float32 (fbgemm), and attention runs in float32
(engine/backends/precision.py). Norms and the residual stream stay float32, as under the bf16 autocast the
model trained with. $DGEM_INFILL_DTYPE (float32 | bfloat16 | float16 | auto) overrides the choice.
On a CPU the denoising passes run between their products on one thread, with bf16 weights packed for oneDNN
(engine/backends/cpu_kernels.py).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from engine.backends.cpu_kernels import use_cpu_kernels
from engine.backends.cpu_threads import one_thread_between_products
from engine.backends.precision import chosen_dtype
from engine.model_dir import load_state_dict, read_json
from engine.native import HoleKV, NativeConfig, NativeKV, NativeModel, TailKV
from engine.types import ModelLoadError


class NativeBackend:
    noise = "mask"

    def __init__(self, model: NativeModel, device: torch.device):
        self.model = model
        self.device = device
        self.vocab_size = model.cfg.vocab_size
        self.dtype = model.embed.weight.dtype  # the matrix products' (and so the key/value caches')
        self.products = str(self.dtype).removeprefix("torch.")  # what ModelInfo.dtype reports

    @classmethod
    def load(cls, model_dir: Path, device: torch.device, dtype: str | None = None) -> NativeBackend:
        """`dtype`: float32, bfloat16, float16 (CPU only) or auto (None: $DGEM_INFILL_DTYPE, else auto); see
        `chosen_dtype`."""
        config = read_json(model_dir / "config.json")
        try:
            cfg = NativeConfig.from_dict(config["architecture"])
        except (KeyError, TypeError) as error:
            raise ModelLoadError(
                f"{model_dir}/config.json: bad or missing 'architecture' ({error})"
            ) from None
        model = NativeModel(cfg)
        state = load_state_dict(model_dir)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelLoadError(
                f"{model_dir}: weights do not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        model = model.to(device).eval()
        matmuls = chosen_dtype(device, cfg.dim, cfg.ffn_dim, dtype, half_weights=device.type == "cpu")
        if device.type == "cuda":
            return cls(model.to(dtype=matmuls), device)  # the whole network, norms and residual stream too
        # on CPUs only the matrix products: bf16 ones are 2-4x faster where the CPU has native bf16 (and
        # slower where it has not); the float32 residual stream and norms keep what bf16 autocast kept
        half_weights = matmuls == torch.float16
        model = model.matmuls_in(torch.float32 if half_weights else matmuls)
        use_cpu_kernels(model, half_weights)
        backend = cls(model, device)
        if half_weights:
            backend.products = "float16"  # weights only: inputs, sums and caches are float32
        return backend

    def new_cache(self) -> NativeKV:
        return NativeKV(self.model.cfg, self.device, self.dtype)

    def extend(self, cache: NativeKV, ids: torch.Tensor, start: int) -> None:
        self.model.extend(cache, ids.to(self.device), start)

    def continuation_logprobs(self, cache: NativeKV, last: int, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) after the cached prefix ending in token `last` -> their log-probabilities (B, T)."""
        with self._between_products():
            return self.model.continuation_logprobs(cache, last, ids.to(self.device))

    def new_tail(self) -> TailKV:
        return TailKV(self.model.rotary)

    def new_hole_cache(self) -> HoleKV:
        return HoleKV()

    def denoise(
        self,
        cache: NativeKV,
        canvas: torch.Tensor,
        hole: int,
        self_condition: torch.Tensor | None = None,
        tail: TailKV | None = None,
        rows: torch.Tensor | None = None,
        hole_cache: HoleKV | None = None,
        hole_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # the native network has no self-conditioning input
        rows = None if rows is None else rows.to(self.device)
        with self._between_products():
            logits = self.model.denoise(cache, canvas.to(self.device), hole, tail, rows, hole_cache, hole_lengths)
        return logits.float()

    def _between_products(self) -> AbstractContextManager[None]:
        """One thread between the products on a CPU (where waking sleeping threads costs more than it gains)."""
        return one_thread_between_products() if self.device.type == "cpu" else nullcontext()
