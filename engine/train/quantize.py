"""int8 row-wise weights in safetensors, sharded under a size cap (Hugging Face index format).

A 2-D tensor NAME (out, in) is stored as int8 NAME plus float32 NAME.scale (out,), with
W ~= q * scale[:, None] and scale = max|row| / 127. 1-D tensors (norm weights) stay float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

SHARD_BYTES = 15 * 2**20  # files come back from the GPU machine at 16 MiB at most
INDEX = "model.safetensors.index.json"


def quantize_int8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in state.items():
        tensor = tensor.detach().float().cpu()
        if tensor.dim() == 2:
            scale = tensor.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (out,)
            out[name] = torch.round(tensor / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
            out[f"{name}.scale"] = scale.contiguous()
        else:
            out[name] = tensor.contiguous()
    return out


def dequantize_int8(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in stored.items():
        if name.endswith(".scale"):
            continue
        if tensor.dtype == torch.int8:
            out[name] = tensor.float() * stored[f"{name}.scale"][:, None]
        else:
            out[name] = tensor.float()
    return out


def save_sharded(tensors: dict[str, torch.Tensor], folder: Path, max_bytes: int = SHARD_BYTES) -> list[str]:
    """model.safetensors when it fits one file, else model-0000i-of-0000N.safetensors + index."""
    for old in list(folder.glob("model*.safetensors")) + [folder / INDEX]:
        old.unlink(missing_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):  # a weight and its .scale sort next to each other
        nbytes = tensors[name].numel() * tensors[name].element_size()
        if shards[-1] and size + nbytes > max_bytes and not name.endswith(".scale"):
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(folder / "model.safetensors"), metadata=metadata)
        return ["model.safetensors"]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for shard, name in zip(shards, names, strict=True):
        save_file(shard, str(folder / name), metadata=metadata)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return names


def load_sharded(folder: Path) -> dict[str, torch.Tensor]:
    index = folder / INDEX
    if not index.exists():
        return load_file(str(folder / "model.safetensors"))
    files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    out: dict[str, torch.Tensor] = {}
    for name in files:
        out.update(load_file(str(folder / name)))
    return out
