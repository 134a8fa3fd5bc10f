"""Latency of real fills through the engine: first refinement and final text, per case.

A case is (hole slots, prefix tokens, cache state):
- cold: a new document, so the whole prefix window is tokenised and encoded;
- warm: the same document and prefix again (the prefix cache holds it all);
- keystroke: the cache holds the prefix, then one character is typed at the cursor.
The native model reads at most `max_prefix_tokens` (1024) prefix tokens: a 4K-token prefix is cut to a
window (whole strides of 256 tokens are dropped from the start); `encoded` reports what was encoded.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer

from engine import Engine, InfillRequest
from infill_server.bench.timing import Budget, Samples
from infill_server.syntax import analyze, fill_errors, recalled_fills, word_completion

HELD_OUT_HOLES = Path(__file__).resolve().parents[2] / "engine" / "train" / "eval_holes.jsonl.xz"


def code_corpus(min_chars: int = 200_000) -> str:
    """The held-out Python files of the evaluation, whole, in path order, concatenated: real code the model
    never trained on, and fixed. Until session 18 the bench cut its documents from this repository's own
    sources, so an edit near their start moved every document (docs/BENCHMARKS.md, "Session 18")."""
    from engine.train.evaluate import load_holes

    files: dict[str, str] = {}
    for hole in load_holes(HELD_OUT_HOLES):  # every hole holds its whole file: prefix + middle + suffix
        if hole.language == "python":
            files.setdefault(hole.id.split("#")[0], hole.prefix + hole.middle + hole.suffix)
    text = "\n\n".join(files[path] for path in sorted(files))
    return text * max(1, -(-min_chars // max(len(text), 1)))


@dataclass(frozen=True)
class Document:
    prefix: str
    suffix: str
    prefix_tokens: int


def cut_document(tokenizer: Tokenizer, corpus: str, prefix_tokens: int) -> Document:
    """A cursor after `prefix_tokens` tokens of code, mid-line, with the rest of the code as suffix."""
    window = corpus[: prefix_tokens * 12 + 4000]  # code tokens are far shorter than 12 characters
    offsets = tokenizer.encode(window, add_special_tokens=False).offsets
    cut = offsets[min(prefix_tokens, len(offsets)) - 1][1]
    return Document(corpus[:cut], corpus[cut : cut + 4000], prefix_tokens)


@dataclass
class CaseResult:
    name: str
    slots: int
    prefix_tokens: int
    cache: str
    first: Samples = field(default_factory=Samples)
    final: Samples = field(default_factory=Samples)
    steps: int = 0
    encoded: int = 0  # prefix tokens encoded by the last run

    def row(self) -> dict:
        return {
            "case": self.name,
            "slots": self.slots,
            "prefix_tokens": self.prefix_tokens,
            "cache": self.cache,
            "first_ms": self.first.summary(),
            "final_ms": self.final.summary(),
            "steps": self.steps,
            "encoded_tokens": self.encoded,
        }


def timed_fill(engine: Engine, request: InfillRequest) -> tuple[float, float, int]:
    """(ms to the first refinement, ms to the final one, steps) of one fill."""
    started = time.perf_counter()
    first = None
    steps = 0
    for refinement in engine.infill(request):
        if first is None:
            first = time.perf_counter()
        steps = refinement.step
    end = time.perf_counter()
    assert first is not None
    return (first - started) * 1000, (end - started) * 1000, steps


_fresh = itertools.count()


def service_request(engine: Engine, prefix: str, suffix: str, slots: int, steps: int | None,
                    key: str) -> InfillRequest:
    """A request sized as the service sizes it: a multi-line hole (more slots than a single line gets)
    takes `multiline_tokens_per_step` tokens a step, no length probe and the multi-line pad bias; every
    request counts the syntax errors of its candidate fills and brings the document's recalled ones
    (infill_server/service.py). The bench's
    documents are Python."""
    multi_line = slots > engine.defaults.default_slots
    if multi_line and steps is None:
        steps = max(1, math.ceil(slots / engine.defaults.multiline_tokens_per_step))
    context = analyze(prefix + suffix, len(prefix), "python")
    return InfillRequest(prefix, suffix, max_tokens=slots, steps=steps, cache_key=key,
                         fit_length=False if multi_line else None,
                         pad_logit_bias=engine.defaults.multiline_pad_logit_bias if multi_line else None,
                         syntax_errors=fill_errors(prefix, suffix, context),
                         document_candidates=recalled_fills(prefix, suffix),
                         word_completion=word_completion(prefix, suffix, "python"))


def run_case(engine: Engine, doc: Document, label: str, slots: int, cache: str, budget: Budget,
             steps: int | None) -> CaseResult:
    result = CaseResult(f"{label} {doc.prefix_tokens} {cache}", slots, doc.prefix_tokens, cache)

    def request(prefix: str, key: str) -> InfillRequest:
        return service_request(engine, prefix, doc.suffix, slots, steps, key)

    key = f"bench-{cache}-{doc.prefix_tokens}"
    if cache != "cold":
        engine.complete(request(doc.prefix, key))  # warm-up run, and it fills the cache
    another = budget.runs()
    while another():
        if cache == "cold":
            key = f"bench-cold-{next(_fresh)}"  # a document the cache has never seen
            prefix = doc.prefix
        elif cache == "keystroke":
            engine.prefix_cache.sync(key, engine.prefix_ids(doc.prefix))  # untimed: back to the warm state
            prefix = doc.prefix + "x"  # one character typed at the cursor
        else:
            prefix = doc.prefix
        before = engine.stats.tokens_encoded
        first, final, result.steps = timed_fill(engine, request(prefix, key))
        result.encoded = engine.stats.tokens_encoded - before
        result.first.add(first)
        result.final.add(final)
    return result


def held_out_case(engine: Engine, holes: list[tuple[str, str, str]], slots: int, budget: Budget) -> CaseResult:
    """Warm single-line fills of real held-out holes (prefix, middle, suffix), sized as the service sizes
    them: `slots` and the length probe. Each run takes the next hole, filled once untimed first (which
    fills its document's cache), so the steps vary as users' fills do, where the cut-document case always
    takes the probe's length at one cursor. `prefix_tokens` and `steps` report the medians."""
    result = CaseResult("single-line held-out warm", slots, 0, "warm")
    prefix_tokens: list[int] = []
    steps: list[int] = []
    another = budget.runs()
    for index in itertools.cycle(range(len(holes))):
        if not holes or not another():
            break
        prefix, _, suffix = holes[index]
        request = service_request(engine, prefix, suffix, slots, None, f"bench-held-out-{index}")
        engine.complete(request)  # untimed: the document's prefix into the cache
        first, final, taken = timed_fill(engine, request)
        result.first.add(first)
        result.final.add(final)
        steps.append(taken)
        prefix_tokens.append(min(len(engine.prefix_ids(prefix)), engine.info.max_prefix_tokens))
    if steps:
        result.steps = sorted(steps)[len(steps) // 2]
        result.prefix_tokens = sorted(prefix_tokens)[len(prefix_tokens) // 2]
    return result

