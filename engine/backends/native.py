"""The `native` backend: the project's own network (engine/native.py) from a dgem_native model directory.

Precision: on a GPU the whole network runs in bf16. On a CPU the matrix products (linear layers, the tied
embedding and LM head, attention) run in bf16 where the CPU has native bf16; elsewhere the linear layers and
LM head keep float16 weights and sum in float32 (fbgemm), and attention runs in float32
(engine/backends/precision.py). Norms and the residual stream stay float32, as under the bf16 autocast the
model trained with. $DGEM_INFILL_DTYPE (float32 | bfloat16 | float16 | auto) overrides the choice.
On a CPU the denoising passes run between their products on one thread, with bf16 weights packed for oneDNN
(engine/backends/cpu_kernels.py); where a timing at load finds a whole pass no slower on one thread, the
products run there too (`warm_up`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from engine.backends.cpu_kernels import use_cpu_kernels
from engine.backends.cpu_threads import cheaper_on_one_thread, one_thread, one_thread_between_products
from engine.backends.precision import chosen_dtype
from engine.model_dir import load_state_dict, read_json
from engine.native import HoleKV, NativeConfig, NativeKV, NativeModel, TailKV
from engine.types import ModelLoadError

# an extend of at most this many tokens runs on a denoising step's threads (`pass_threads`); timed on a CPU
# with AMX, a whole extend on one thread beats one with its products on both up to ~384 tokens (27 against
# 31 ms at 257) and loses from ~512 on (docs/BENCHMARKS.md, session 15)
SMALL_PASS_TOKENS = 256


class NativeBackend:
    noise = "mask"

    def __init__(self, model: NativeModel, device: torch.device):
        self.model = model
        self.device = device
        self.vocab_size = model.cfg.vocab_size
        self.dtype = model.embed.weight.dtype  # the matrix products' (and so the key/value caches')
        self.products = str(self.dtype).removeprefix("torch.")  # what ModelInfo.dtype reports
        self.passes_on_one_thread = False  # a CPU's denoising and scoring passes, products too (`warm_up`)

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

    def warm_up(self, prefix_tokens: int = 256, hole: int = 64, rows: int = 16, suffix_tokens: int = 64) -> None:
        """On a CPU with several threads, time the passes of the start of a multi-line fill (one over hole and
        suffix head, then four over `rows` hole slots, as a commit window reads them) on one thread and on
        all, and keep the faster. Single passes timed back to back mislead: between a fill's passes the second
        thread falls asleep, and waking it for each product is what costs. A single line's passes misled too,
        on an AVX2 CPU (two threads 5% faster, and one picked in 2 of 3 loads). Here these passes take 1.2-1.3x
        longer on two threads with AMX and 0.8x as long on AVX2 (docs/BENCHMARKS.md, session 15). Random ids:
        speed does not depend on the values. 0.5-1 s with the shipped model."""
        self.passes_on_one_thread = False  # products on every thread while the other way is timed
        if self.device.type != "cpu" or torch.get_num_threads() == 1:
            return
        ids = torch.randint(0, self.vocab_size, (prefix_tokens + hole + suffix_tokens,),
                            generator=torch.Generator().manual_seed(0))
        cache = self.new_cache()
        self.extend(cache, ids[:prefix_tokens], 0)
        canvas = ids[None, prefix_tokens:]  # (1, hole + suffix)
        window = torch.arange(min(rows, hole))

        def fill_start() -> None:
            tail = self.new_tail()
            self.denoise(cache, canvas, hole, tail=tail)
            for _ in range(4):
                self.denoise(cache, canvas, hole, tail=tail, rows=window)

        self.passes_on_one_thread = cheaper_on_one_thread(fill_start, repeats=2)

    def new_cache(self) -> NativeKV:
        return NativeKV(self.model.cfg, self.device, self.dtype)

    def extend(self, cache: NativeKV, ids: torch.Tensor, start: int) -> None:
        # typing makes a pass as small as a denoising step's; a new document's longer prefix has products
        # large enough for every thread, and its other work still runs on one
        with self.pass_threads(small=ids.shape[0] <= SMALL_PASS_TOKENS):
            self.model.extend(cache, ids.to(self.device), start)

    def continuation_logprobs(self, cache: NativeKV, last: int, ids: torch.Tensor,
                              length: int | None = None) -> torch.Tensor:
        """ids (B, T) after the cached prefix ending in token `last` (or after its first `length` positions,
        `last` being the token at length - 1) -> their log-probabilities (B, T)."""
        with self.pass_threads():
            return self.model.continuation_logprobs(cache, last, ids.to(self.device), length)

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
        with self.pass_threads():
            logits = self.model.denoise(cache, canvas.to(self.device), hole, tail, rows, hole_cache, hole_lengths)
        return logits.float()

    def pass_threads(self, small: bool = True) -> AbstractContextManager[None]:
        """The threads of a pass on a CPU: one between the products (where waking sleeping threads costs more
        than it gains), or, for a small pass (a denoising step, a keystroke's extend, a scoring pass), one for
        the whole pass where `warm_up` found that no slower. Measured on a 257-token extend: 46 ms with every
        operation on both threads, 31 with the products only, 27 wholly on one (AMX)."""
        if self.device.type != "cpu":
            return nullcontext()
        return one_thread() if small and self.passes_on_one_thread else one_thread_between_products()
