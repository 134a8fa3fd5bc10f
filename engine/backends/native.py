"""The `native` backend: the project's own network (engine/native.py) from a dgem_native model directory."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.model_dir import load_state_dict, read_json
from engine.native import HoleKV, NativeConfig, NativeKV, NativeModel, TailKV
from engine.types import ModelLoadError


class NativeBackend:
    noise = "mask"

    def __init__(self, model: NativeModel, device: torch.device):
        self.model = model
        self.device = device
        self.vocab_size = model.cfg.vocab_size
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def load(cls, model_dir: Path, device: torch.device) -> NativeBackend:
        config = read_json(model_dir / "config.json")
        try:
            cfg = NativeConfig.from_dict(config["architecture"])
        except (KeyError, TypeError) as error:
            raise ModelLoadError(f"{model_dir}/config.json: bad or missing 'architecture' ({error})") from None
        model = NativeModel(cfg)
        state = load_state_dict(model_dir)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelLoadError(
                f"{model_dir}: weights do not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        # bf16 on GPUs; float32 on CPUs, where bf16 matrix products are often slower
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        return cls(model.to(device=device, dtype=dtype).eval(), device)

    def new_cache(self) -> NativeKV:
        return NativeKV(self.model.cfg, self.device, self.dtype)

    def extend(self, cache: NativeKV, ids: torch.Tensor, start: int) -> None:
        self.model.extend(cache, ids.to(self.device), start)

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
    ) -> torch.Tensor:
        # the native network has no self-conditioning input
        rows = None if rows is None else rows.to(self.device)
        return self.model.denoise(cache, canvas.to(self.device), hole, tail, rows, hole_cache).float()
