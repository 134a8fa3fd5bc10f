"""Tiny randomly initialised models for tests of mechanics (never of quality)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from engine.native import NativeConfig, NativeModel

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<mask>"]  # ids 0..3, as in the shipped model

_SAMPLE_CODE = '''
def add(a, b):
    """Return the sum of a and b."""
    return a + b


class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

function greet(name) {
  console.log(`Hello, ${name}!`);
  return name.length;
}
fn main() { let x: i32 = 5; println!("{}", x); }
func main() { fmt.Println("hi") }
'''


def code_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Newlines are their own pre-tokens, so line boundaries are token boundaries; then byte-level."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )


def train_tiny_tokenizer(
    vocab_size: int = 400,
    special_tokens: list[str] = SPECIAL_TOKENS,
    corpus: tuple[str, ...] = (_SAMPLE_CODE,) * 4,
    split_lines: bool = True,
) -> Tokenizer:
    """A byte-level BPE trained in well under a second; special tokens take the first ids."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = code_pre_tokenizer() if split_lines else pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer


def write_random_native_model(
    path: Path,
    cfg: NativeConfig | None = None,
    generation: dict | None = None,
    seed: int = 0,
    canvas_length: int = 256,
) -> Path:
    """A complete dgem_native model directory with random weights (shape `cfg`) and the tiny tokenizer;
    the config and special ids are the ones engine/train/export.py writes for the shipped model."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tiny_tokenizer()
    tokenizer.save(str(path / "tokenizer.json"))
    torch.manual_seed(seed)
    cfg = cfg or NativeConfig(vocab_size=tokenizer.get_vocab_size(), dim=64, n_layers=2, n_heads=2, ffn_dim=128)
    model = NativeModel(cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    config = {
        "model_type": "dgem_native",
        "noise": "mask",
        "architecture": cfg.to_dict(),
        "special_tokens": {"pad": 0, "eos": 1, "bos": 2, "mask": 3},
        "max_prefix_tokens": 1024,
        "canvas_length": canvas_length,
        "quantization": None,
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    generation = generation if generation is not None else {"default_slots": 8, "suffix_head_tokens": 16}
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return path


def write_tiny_native_model(path: Path, seed: int = 0, canvas_length: int = 256) -> Path:
    """A complete dgem_native model directory with random weights (about 0.1M parameters)."""
    return write_random_native_model(path, seed=seed, canvas_length=canvas_length)


# ---- a tiny random DiffusionGemma, for tests without weights ----------------------------------------

DIFFUSION_GEMMA_CORPUS = (
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i)\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "import os\nprint(os.path.join('a', 'b'))\n",
)


def tiny_diffusion_gemma_config(vocab_size: int = 384, canvas_length: int = 32, sliding_window: int = 8):
    """A DiffusionGemmaConfig of the real shape (MoE, sliding + full layers, vision tower), tiny sizes.

    Token ids 0/1/2 are pad/eos/bos (the config's defaults); the image tokens take the last three ids.
    """
    from transformers import DiffusionGemmaConfig, DiffusionGemmaTextConfig, Gemma4VisionConfig

    text = DiffusionGemmaTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        layer_types=["sliding_attention", "full_attention"],
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        global_head_dim=32,  # full-attention layers are wider, as in the real checkpoint
        num_global_key_value_heads=1,
        sliding_window=sliding_window,
        max_position_embeddings=4096,
        num_experts=4,
        top_k_experts=2,
        moe_intermediate_size=16,
        initializer_range=0.1,  # larger than real: random logits that are not all near zero
    )
    vision = Gemma4VisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        patch_size=4,
        position_embedding_size=64,
    )
    return DiffusionGemmaConfig(
        text_config=text,
        vision_config=vision,
        canvas_length=canvas_length,
        boi_token_id=vocab_size - 3,
        eoi_token_id=vocab_size - 2,
        image_token_id=vocab_size - 1,
    )


def tiny_diffusion_gemma(seed: int = 0, **config: Any):
    from transformers import DiffusionGemmaForBlockDiffusion

    torch.manual_seed(seed)
    return DiffusionGemmaForBlockDiffusion(tiny_diffusion_gemma_config(**config)).eval()


def write_tiny_diffusion_gemma(directory: Path, seed: int = 0, corpus: tuple[str, ...] = DIFFUSION_GEMMA_CORPUS) -> Path:
    """A model directory: config.json, model.safetensors, generation_config.json, tokenizer.json."""
    from transformers.models.diffusion_gemma.generation_diffusion_gemma import (
        DiffusionGemmaGenerationConfig,
        EntropyBoundSamplerConfig,
    )

    model = tiny_diffusion_gemma(seed)
    model.generation_config = DiffusionGemmaGenerationConfig(
        max_denoising_steps=16,
        sampler_config=EntropyBoundSamplerConfig(entropy_bound=0.1),
        t_min=0.4,
        t_max=0.8,
        stability_threshold=1,
        confidence_threshold=0.005,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    model.save_pretrained(directory)  # safetensors, config.json, generation_config.json

    # byte-level BPE whose first ids are the config's pad/eos/bos; the image tokens keep the last three ids
    tokenizer = train_tiny_tokenizer(
        model.config.text_config.vocab_size - 3, ["<pad>", "<eos>", "<bos>"], corpus, split_lines=False
    )
    tokenizer.save(str(Path(directory) / "tokenizer.json"))
    return Path(directory)
