"""Byte-level BPE for code, trained with Hugging Face `tokenizers`.

`\\n` is split off as its own pre-token, so a line boundary is always a token boundary (an editor's
cursor at a line end then never sits inside a token). The special tokens come first, with fixed ids.

Usage:
    python -m engine.train.tokenizer --corpus /tmp/dgem/corpus --out /tmp/dgem/tokenizer.json
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from engine.train.corpus import load_split

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<mask>"]  # ids 0, 1, 2, 3
PAD, EOS, BOS, MASK = range(4)
# A hole slot that stands for two middle tokens (a fill too short for its text grows there, DreamOn-style).
# It shares <eos>'s id: a native fill ends with pads and never writes <eos>, so the id is free for it.
EXPAND = EOS
VOCAB_SIZE = 16384


def new_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def sample_texts(corpus: Path, budget_bytes: int, js_share: float = 0.3, seed: int = 0) -> list[str]:
    """A random sample of training files, about `budget_bytes` of text, `js_share` of it JS/TS
    (Python dominates the corpus; without a quota JS would get few merges). Held-out files never enter."""
    rows = load_split(corpus, "train")
    random.Random(seed).shuffle(rows)
    quota = {"python": budget_bytes * (1 - js_share), "javascript": budget_bytes * js_share}
    texts = []
    for row in rows:
        if quota[row["lang"]] > 0:
            texts.append(row["text"])
            quota[row["lang"]] -= len(row["text"])
    return texts


def train(texts: list[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    tokenizer = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )

    def batches() -> Iterator[list[str]]:
        for start in range(0, len(texts), 256):
            yield texts[start : start + 256]

    tokenizer.train_from_iterator(batches(), trainer=trainer, length=len(texts))
    for index, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == index, f"{token} must have id {index}"
    return tokenizer


def check_round_trip(tokenizer: Tokenizer, texts: list[str]) -> tuple[int, float]:
    """Decode(encode(text)) == text for every text; returns (files checked, characters per token)."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    tokens = 0
    for text, encoding in zip(texts, encodings, strict=True):
        decoded = tokenizer.decode(encoding.ids, skip_special_tokens=False)
        assert decoded == text, f"round trip failed: {text[:80]!r}"
        tokens += len(encoding.ids)
    return len(texts), sum(map(len, texts)) / max(tokens, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="folder written by corpus build")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sample-mb", type=float, default=50.0, help="training text to learn merges from")
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    args = parser.parse_args(argv)
    tokenizer = train(sample_texts(args.corpus, int(args.sample_mb * 1e6)), args.vocab_size)
    tokenizer.save(str(args.out))
    held_out = [row["text"] for row in load_split(args.corpus, "eval")]
    files, chars_per_token = check_round_trip(Tokenizer.from_file(str(args.out)), held_out)
    print(f"tokenizer: {tokenizer.get_vocab_size()} entries; round trip exact on {files} held-out files; "
          f"{chars_per_token:.2f} characters per token")


if __name__ == "__main__":
    main()
