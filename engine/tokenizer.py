"""Text <-> token ids at the engine's edge (Hugging Face `tokenizers` file); the sampler sees ids only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from engine.types import ModelLoadError


@dataclass(frozen=True)
class SpecialTokens:
    pad: int
    eos: int
    bos: int | None
    mask: int | None
    # a slot committed as this id stands for two middle tokens and grows the hole (None: the model has none)
    expand: int | None = None


class CodeTokenizer:
    def __init__(self, tokenizer: Tokenizer, special: SpecialTokens):
        self._tokenizer = tokenizer
        self.special = special
        # pads and eos end or fill a hole, an expand slot grows it; they are never shown to the user
        optional = (special.mask, special.expand)
        self._hidden = {special.pad, special.eos} | {token for token in optional if token is not None}

    @classmethod
    def from_file(cls, path: Path, special: SpecialTokens) -> CodeTokenizer:
        try:
            return cls(Tokenizer.from_file(str(path)), special)
        except Exception as error:  # tokenizers raises a bare Exception on a bad file
            raise ModelLoadError(f"{path}: cannot read tokenizer ({error})") from None

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Decode a fill: stop at eos, drop pads (and expand slots), keep everything else exactly."""
        kept: list[int] = []
        for token in ids:
            if token == self.special.eos and token != self.special.expand:  # a model may reuse eos as expand
                break
            if token not in self._hidden:
                kept.append(token)
        return self._tokenizer.decode(kept, skip_special_tokens=False)

    def count(self, text: str) -> int:
        return len(self.encode(text))
