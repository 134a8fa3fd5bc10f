"""InfillService: the one place where requests meet the engine, shared by every front end.

- One worker thread runs the engine (torch already uses every core; two fills at once would only
  slow each other down). Jobs queue in order.
- A newer job for the same document supersedes the older one; cancelling the awaiting task stops the
  denoising loop between two steps.
- The syntax layer sizes the hole and post-processes every refinement, so front ends stream ready text.
- Recent results are kept, so typing the characters of a shown suggestion needs no model call.
- An explicit request on a blank line gets a one-line fill beside the block fill (`line_reading`).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from engine import Engine, EngineError, InfillRequest, ModelLoadError
from infill_server.config import ServiceConfig
from infill_server.errors import ServiceError
from infill_server.syntax import (
    Context,
    Mode,
    analyze,
    fill_errors,
    one_statement,
    postprocess,
    recalled_fills,
    word_completion,
)

__all__ = ["InfillJob", "InfillResult", "InfillService", "ModelLoadError", "ServiceError", "Update"]

REWRITE_SLACK = 1.5  # a rewrite may grow: slots = selection tokens * slack + a few
MAX_ALTERNATIVES = 3


@dataclass(frozen=True)
class InfillJob:
    document: str  # key for prefix-cache reuse and superseding (a URI, or a connection-scoped id)
    prefix: str
    suffix: str
    language: str | None = None  # canonical syntax id: python, javascript, typescript, tsx, go, rust
    max_tokens: int | None = None  # None: the syntax layer sizes the hole
    steps: int | None = None
    alternatives: int = 1
    rewrite: bool = False  # regenerate a selection: the selection is the hole
    selection: str = ""  # the selection's current text (sizes a rewrite's hole)
    # the text of other documents open in the editor, the most relevant first: the document lookup reads them
    open_documents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Update:
    """A post-processed refinement, streamed to the front end."""

    step: int
    text: str
    done: bool


@dataclass(frozen=True)
class InfillResult:
    texts: tuple[str, ...]
    steps: int
    ms: float

    @property
    def text(self) -> str:
        return self.texts[0]


@dataclass
class _Shown:
    prefix: str
    suffix: str
    text: str


# The `length` setting as the engine's per-request length rule (infill_server/config.py, LENGTHS)
LENGTH_RULES: dict[str, dict[str, Any]] = {
    "auto": {},  # the model's generation_config
    "probe": {"length_offsets": ()},
    "likelihood": {"length_offsets": (-2, -1, 0, 1, 2), "length_choice": "likelihood"},
}


class InfillService:
    def __init__(self, config: ServiceConfig | None = None):
        self.config = config or ServiceConfig()
        self.state = "unloaded"  # unloaded | loading | ready | error
        self.error: str | None = None
        self.engine: Engine | None = None
        self.last_ms: float | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dgem-engine")
        self._running: dict[str, threading.Event] = {}
        self._shown: OrderedDict[str, _Shown] = OrderedDict()
        self._load_lock = asyncio.Lock()

    # ---- model ----------------------------------------------------------------------------------

    async def load(self, progress: Callable[[str, float], None] | None = None) -> None:
        """Load the configured model in the worker thread; progress is reported on the event loop."""
        async with self._load_lock:
            loop = asyncio.get_running_loop()

            def report(message: str, fraction: float) -> None:
                if progress is not None:
                    loop.call_soon_threadsafe(progress, message, fraction)

            self.state, self.error = "loading", None
            config = self.config
            try:
                self.engine = await loop.run_in_executor(
                    self._worker, lambda: Engine.load(config.model, config.device, report)
                )
            except EngineError as error:
                self.engine, self.state, self.error = None, "error", str(error)
                raise ModelLoadError(str(error)) from None
            self.state = "ready"
            self._shown.clear()

    async def reconfigure(self, config: ServiceConfig) -> None:
        reload = (config.model, config.device) != (self.config.model, self.config.device)
        self.config = config
        if reload and self.state != "unloaded":
            await self.load()

    def close(self) -> None:
        for cancel in self._running.values():
            cancel.set()
        self._worker.shutdown(wait=False, cancel_futures=True)

    # ---- infill -------------------------------------------------------------------------------

    def context_for(self, job: InfillJob) -> Context:
        context = analyze(job.prefix + job.suffix, len(job.prefix), job.language)
        if job.rewrite:
            context = replace(context, mode=Mode.MULTI_LINE)
        return context

    def hole_size(self, job: InfillJob, context: Context, engine: Engine) -> int:
        if job.max_tokens is not None:
            size = job.max_tokens
        elif job.rewrite:
            size = int(engine.tokenizer.count(job.selection) * REWRITE_SLACK) + 8
        else:
            size = context.max_tokens
        return max(0, min(size, self.config.max_tokens))

    @staticmethod
    def default_steps(context: Context, slots: int, engine: Engine) -> int | None:
        """Multi-line holes commit more slots per step: measured on held-out files (docs/quality), 4
        tokens a step instead of 2 costs 0.229 -> 0.219 edit similarity and halves the steps."""
        if context.mode is not Mode.MULTI_LINE:
            return None  # the model's default
        return max(1, math.ceil(slots / engine.defaults.multiline_tokens_per_step))

    @staticmethod
    def line_reading(job: InfillJob, context: Context, alternatives: int) -> Context | None:
        """An explicit request (alternatives) on a blank line gets a one-line fill beside the block fill,
        as its second alternative: which of the two the user wants, neither the cursor nor the model's
        likelihood can tell (syntax.one_statement). Typing (one alternative) keeps the block alone."""
        if alternatives < 2 or job.rewrite or job.max_tokens is not None:
            return None
        return one_statement(context)

    @staticmethod
    def pad_logit_bias(job: InfillJob, context: Context, engine: Engine) -> float | None:
        """A multi-line hole's 64 slots are more than most middles need, and the model ends such fills
        early with pads; a negative bias on the pad makes them longer (measured on held-out files:
        engine/weights/MODEL_CARD.md). A rewrite is sized from its selection, and keeps the model's bias."""
        if context.mode is not Mode.MULTI_LINE or job.rewrite:
            return None
        return engine.defaults.multiline_pad_logit_bias

    async def infill(self, job: InfillJob, on_update: Callable[[Update], None] | None = None) -> InfillResult:
        """Fill the job's hole; on_update runs on the event loop after every step.

        Raises asyncio.CancelledError when a newer job for the same document supersedes this one.
        """
        if self.engine is None:
            if self.state == "error":
                raise ServiceError(f"model not loaded: {self.error}")
            await self.load()
        engine = self.engine
        assert engine is not None
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        context = self.context_for(job)
        slots = self.hole_size(job, context, engine)
        alternatives = max(1, min(job.alternatives, MAX_ALTERNATIVES))
        line_context = self.line_reading(job, context, alternatives)
        request = InfillRequest(
            prefix=job.prefix,
            suffix=job.suffix,
            max_tokens=slots,
            steps=job.steps or self.config.steps or self.default_steps(context, slots, engine),
            cache_key=job.document,
            alternatives=alternatives - (line_context is not None),
            # Measured on held-out files (docs/quality): probing the length helps single-line fills
            # (exact match 12.2% vs 10.0%) but cuts multi-line ones short (edit similarity 0.185 vs 0.229).
            fit_length=None if context.mode is Mode.SINGLE_LINE and not job.rewrite else False,
            pad_logit_bias=self.pad_logit_bias(job, context, engine),
            syntax_errors=fill_errors(job.prefix, job.suffix, context),
            document_candidates=recalled_fills(job.prefix, job.suffix, others=job.open_documents),
            word_completion=word_completion(job.prefix, job.suffix, context.language, others=job.open_documents),
            **LENGTH_RULES[self.config.length],
        )
        line_request = None
        if line_context is not None:  # sized and probed as a single-line hole is
            line_request = replace(request, max_tokens=self.hole_size(job, line_context, engine),
                                   steps=job.steps or self.config.steps, alternatives=1, fit_length=None,
                                   pad_logit_bias=None, syntax_errors=fill_errors(job.prefix, job.suffix, line_context))

        def shape(text: str) -> str:
            return postprocess(text, job.prefix, job.suffix, context)

        def run() -> tuple[tuple[str, ...], int] | None:
            final = None
            for refinement in engine.infill(request, cancel):
                final = refinement
                if on_update is not None:
                    update = Update(refinement.step, shape(refinement.text), refinement.done)
                    loop.call_soon_threadsafe(on_update, update)
            if final is None or not final.done:
                return None
            texts = tuple(shape(text) for text in final.texts)
            if line_request is not None and line_context is not None:
                line = engine.complete(line_request, cancel)
                if line is None:
                    return None  # cancelled between the two fills
                texts = (texts[0], postprocess(line.text, job.prefix, job.suffix, line_context), *texts[1:])
            return texts, final.step

        previous = self._running.get(job.document)
        if previous is not None:
            previous.set()  # superseded: the older fill stops at its next step
        cancel = threading.Event()
        self._running[job.document] = cancel
        try:
            outcome = await loop.run_in_executor(self._worker, run)
        except asyncio.CancelledError:
            cancel.set()
            raise
        except EngineError as error:
            raise ServiceError(str(error)) from None
        finally:
            if self._running.get(job.document) is cancel:
                del self._running[job.document]
        if outcome is None:
            raise asyncio.CancelledError(f"superseded: {job.document}")
        texts, steps = outcome
        texts = _distinct(texts)
        ms = (time.perf_counter() - started) * 1000
        self.last_ms = ms
        self._remember(job, texts[0])
        return InfillResult(texts, steps, ms)

    # ---- typed-through suggestions -------------------------------------------------------------

    def _remember(self, job: InfillJob, text: str, limit: int = 256) -> None:
        self._shown[job.document] = _Shown(job.prefix, job.suffix, text)
        self._shown.move_to_end(job.document)
        while len(self._shown) > limit:
            self._shown.popitem(last=False)

    def lookup(self, document: str, prefix: str, suffix: str) -> str | None:
        """The rest of the last suggestion when the user has typed its first characters."""
        shown = self._shown.get(document)
        if shown is None or suffix != shown.suffix or not prefix.startswith(shown.prefix):
            return None
        typed = prefix[len(shown.prefix) :]
        if not shown.text.startswith(typed) or len(typed) >= len(shown.text):
            return None
        return shown.text[len(typed) :]


def _distinct(texts: tuple[str, ...]) -> tuple[str, ...]:
    """Alternatives without repeats; the best one always stays first, even when empty."""
    seen: list[str] = []
    for index, text in enumerate(texts):
        if text in seen or (index > 0 and not text.strip()):
            continue
        seen.append(text)
    return tuple(seen)
