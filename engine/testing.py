"""Tiny randomly initialised models for tests of mechanics (never of quality)."""

from __future__ import annotations

import json
from pathlib import Path

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


def train_tiny_tokenizer(vocab_size: int = 400) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = code_pre_tokenizer()
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_SAMPLE_CODE] * 4, trainer)
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
