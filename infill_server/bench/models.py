"""Model directories for benchmarks: the shipped model when present, else random weights of its shape.

Speed does not depend on the weights' values, so until `engine/weights/` holds the trained model the
benchmarks run a `NativeConfig()`-shaped network (the shipped shape) with the tiny test tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.model_dir import SHIPPED_MODEL
from engine.native import NativeConfig
from engine.testing import train_tiny_tokenizer, write_random_native_model


def shipped_model_present() -> bool:
    return (SHIPPED_MODEL / "config.json").is_file()


def write_shaped_native_model(path: Path, cfg: NativeConfig | None = None, seed: int = 0) -> Path:
    """A dgem_native model directory with random weights of the shipped shape (NativeConfig() defaults)
    and the shipped generation defaults."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path  # written earlier in this run
    generation = json.loads((SHIPPED_MODEL / "generation_config.json").read_text(encoding="utf-8"))
    return write_random_native_model(path, cfg or NativeConfig(), generation, seed)


def reference_config(size: str = "small"):
    """A DiffusionGemmaConfig of the real layout (MoE, sliding + full layers, vision tower) for the
    engine-vs-generate() comparison: `small` is large enough that the network, not Python, dominates a step;
    `tiny` is the test model's size."""
    from engine.testing import tiny_diffusion_gemma_config

    if size == "tiny":
        return tiny_diffusion_gemma_config(vocab_size=512, canvas_length=32, sliding_window=64)
    config = tiny_diffusion_gemma_config(vocab_size=4096, canvas_length=64, sliding_window=128)
    text = config.text_config
    for name, value in {"hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
                        "moe_intermediate_size": 128, "initializer_range": 0.02}.items():
        setattr(text, name, value)
    return config


def write_reference_model(path: Path, size: str = "small", steps: int = 8, seed: int = 0) -> Path:
    """A DiffusionGemma-format model directory with random weights, whose sampler never stops early
    (its stopping rule cannot be met within `steps`), so that generate() and the engine both run exactly `steps` steps."""
    from transformers import DiffusionGemmaForBlockDiffusion
    from transformers.models.diffusion_gemma.generation_diffusion_gemma import (
        DiffusionGemmaGenerationConfig,
        EntropyBoundSamplerConfig,
    )
    from transformers.utils import logging as hf_logging

    path = Path(path)
    hf_logging.disable_progress_bar()  # the bench's output is its table
    torch.manual_seed(seed)
    model = DiffusionGemmaForBlockDiffusion(reference_config(size)).eval()
    model.generation_config = DiffusionGemmaGenerationConfig(
        max_denoising_steps=steps,
        sampler_config=EntropyBoundSamplerConfig(entropy_bound=0.1),
        t_min=0.4,
        t_max=0.8,
        stability_threshold=steps,  # needs more steps than allowed to count as stable
        confidence_threshold=1e-9,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    model.save_pretrained(path)
    train_tiny_tokenizer().save(str(path / "tokenizer.json"))  # ids 0..2 are pad/eos/bos, as the config says
    return path
