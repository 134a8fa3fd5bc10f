"""Values that cross the engine's edge: what a caller asks for and what the sampler yields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class EngineError(Exception):
    """A problem the caller can act on (bad model directory, bad request); the message is one line."""


class ModelLoadError(EngineError):
    """The model directory or id could not be loaded."""


@dataclass(frozen=True)
class InfillRequest:
    """Fill the text between `prefix` and `suffix`.

    max_tokens: number of hole slots; None lets the engine choose (length handling).
    steps: denoising steps; None takes the model's generation_config default.
    cache_key: names the document, so the prefix KV cache of the same document is reused.
    alternatives: how many different fills to return (each a row of one batched forward).
    fit_length: treat max_tokens as a budget and shrink the hole to the model's own length estimate
        first (one extra forward); None takes the model's generation_config default. Pass False when
        max_tokens is the true length.
    length_offsets, length_choice: after the probe, fill at these offsets from the probed size and keep
        one fill by this rule ("score", "vote", "likelihood"; see GenerationDefaults); () fills at the
        probed size only; None takes the model's generation_config.
    pad_logit_bias: added to the pad token's logit in every step; None takes the model's `pad_logit_bias`
        (a multi-line caller passes the model's `multiline_pad_logit_bias`).
    syntax_errors: how many syntax errors a fill's text would leave in the document (the caller knows the
        language and has the parser). Where several sizes are filled (length_offsets), the engine keeps a fill
        with the fewest, and only among those applies length_choice. None: length_choice alone.
    document_candidates: (text, matching characters) for fills the caller found in the rest of the document
        (what followed the same text elsewhere, and how many characters around it match those around the
        hole), best first. Where several sizes are filled and length_choice is "likelihood", the first
        `GenerationDefaults.document_candidates` of them that fit the slots asked for are ranked with the
        model's fills: the document reaches further than the model's context.
    word_completion: fill text -> the characters to type at the cursor before filling again, "" when none
        are needed (the caller knows which words the document spells). Where several sizes are filled and
        length_choice is "likelihood", and every fill finishes the cursor's word into a word the document
        never spells, the hole is filled once more after those characters, and that fill is ranked too.
    """

    prefix: str
    suffix: str = ""
    max_tokens: int | None = None
    steps: int | None = None
    cache_key: str | None = None
    alternatives: int = 1
    seed: int = 0
    fit_length: bool | None = None
    length_offsets: tuple[int, ...] | None = None
    length_choice: str | None = None
    pad_logit_bias: float | None = None
    syntax_errors: Callable[[str], int] | None = None
    document_candidates: tuple[tuple[str, int], ...] = ()
    word_completion: Callable[[str], str] | None = None


@dataclass(frozen=True)
class Refinement:
    """The state of the hole after one denoising step.

    texts[0] is the best fill; more entries only when alternatives > 1.
    committed / slots: how many hole slots are fixed so far (for the best fill).
    """

    step: int
    texts: tuple[str, ...]
    committed: int
    slots: int
    done: bool

    @property
    def text(self) -> str:
        return self.texts[0]
