"""The engine: text in, refinement steps out. No editor or protocol knowledge.

    engine = Engine.load()                      # the shipped model, on the best device
    for refinement in engine.infill(InfillRequest(prefix, suffix)):
        print(refinement.step, refinement.text)

Layout of one fill (DiffusionGemma's): [bos][prefix window] -> causal pass -> prefix KV cache, kept per
document; canvas = [hole slots][suffix head], denoised bidirectionally. Holes longer than one canvas are
filled block after block, each finished block appended to the prefix cache.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from engine.backends import Backend, PrefixKV, TailCache, load_backend
from engine.model_dir import LENGTH_CHOICES, GenerationDefaults, read_json, resolve_model
from engine.prefix_cache import CacheStats, KeptSuffixHead, PrefixCache
from engine.sampler import (
    ConfidenceCommit,
    EntropyBoundAccept,
    HoleState,
    Sampler,
    denoise_hole,
    drop_expands,
    fill_score,
    grow_at_expands,
    right_pad_run,
)
from engine.tokenizer import CodeTokenizer, SpecialTokens
from engine.types import EngineError, InfillRequest, ModelLoadError, Refinement

Progress = Callable[[str, float], None]

WINDOW_STRIDE = 256  # the prefix window moves in steps of this many tokens, so the cache survives typing
CHARS_PER_TOKEN_BOUND = 8  # more characters than any token of code holds; bounds what is tokenised
MAX_ALTERNATIVES = 4
SCRATCH_KEY = "\0scratch"  # the prefix cache of a request that names no document


@dataclass(frozen=True)
class ModelInfo:
    source: str
    backend: str
    noise: str
    device: str
    dtype: str  # the matrix products' (the native backend on a CPU: float32 or bfloat16, see its load)
    parameters: int
    max_prefix_tokens: int
    canvas_length: int


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError("--device cuda: no CUDA device is available (use cpu or auto)")
    if device not in ("cpu", "cuda"):
        raise EngineError(f"unknown device {device!r} (use cpu, cuda or auto)")
    return torch.device(device)


class Engine:
    def __init__(
        self,
        backend: Backend,
        tokenizer: CodeTokenizer,
        defaults: GenerationDefaults,
        info: ModelInfo,
    ):
        self.backend = backend
        self.tokenizer = tokenizer
        self.defaults = defaults
        self.info = info
        self.prefix_cache = PrefixCache(backend)

    @classmethod
    def load(cls, model: str | Path | None = None, device: str = "auto", progress: Progress | None = None,
             dtype: str | None = None, warm_up: bool = True) -> Engine:
        """Load a model directory (None: the shipped model) or a Hugging Face id from the local cache.

        `dtype` (float32, bfloat16, float16; None: the backend's choice) is for measurements: the service
        leaves it to the backend (engine/backends/precision.py; $DGEM_INFILL_DTYPE overrides).
        `warm_up=False` leaves a backend's compiled passes uncompiled until the caller warms them up itself
        (the bench compiles only the shapes it measures)."""
        report = progress or (lambda message, fraction: None)
        report("finding model", 0.0)
        model_dir = resolve_model(None if model is None else str(model))
        config = read_json(model_dir / "config.json")
        model_type = config.get("model_type")
        if not isinstance(model_type, str):
            raise ModelLoadError(f"{model_dir}/config.json: no model_type")
        torch_device = pick_device(device)
        report(f"loading {model_type} weights on {torch_device.type}", 0.2)
        backend = load_backend(model_dir, torch_device, model_type, dtype)
        backend_warm_up = getattr(backend, "warm_up", None)  # a backend with compiled passes compiles them here
        if warm_up and backend_warm_up is not None:
            report("warming up", 0.6)
            backend_warm_up()
        report("loading tokenizer", 0.8)
        special = _special_tokens(config, backend, model_dir)
        tokenizer = CodeTokenizer.from_file(model_dir / "tokenizer.json", special)
        generation = dict(getattr(backend, "generation_defaults", dict)())
        generation.update(read_json(model_dir / "generation_config.json", required=False))
        defaults = GenerationDefaults.from_dict(generation)
        parameters = sum(p.numel() for p in backend.model.parameters())
        matmul_dtype = getattr(backend, "products", None) or getattr(backend, "dtype", None) or next(
            backend.model.parameters()
        ).dtype
        info = ModelInfo(
            source=str(model_dir),
            backend=model_type,
            noise=backend.noise,
            device=torch_device.type,
            dtype=str(matmul_dtype).removeprefix("torch."),
            parameters=parameters,
            max_prefix_tokens=int(config.get("max_prefix_tokens", 4096)),
            canvas_length=int(config.get("canvas_length", 256)),
        )
        report("ready", 1.0)
        return cls(backend, tokenizer, defaults, info)

    @property
    def stats(self) -> CacheStats:
        return self.prefix_cache.stats

    # ---- the request's token layout ------------------------------------------------------------

    def prefix_ids(self, prefix: str) -> list[int]:
        """[bos] + the nearest part of the prefix that fits, with a window start that moves in strides."""
        limit = self.info.max_prefix_tokens - 1
        char_budget = limit * CHARS_PER_TOKEN_BOUND
        if len(prefix) > char_budget:
            # cut at a line start chosen from a coarse grid, so the cut (and the cache) stays put while typing
            cut = (len(prefix) - char_budget) // 4096 * 4096
            newline = prefix.find("\n", cut)
            prefix = prefix[newline + 1 :] if newline >= 0 else prefix[cut:]
        ids = self.tokenizer.encode(prefix)
        if len(ids) > limit:
            drop = math.ceil((len(ids) - limit) / WINDOW_STRIDE) * WINDOW_STRIDE
            ids = ids[drop:]
        bos = self.tokenizer.special.bos
        return ([bos] if bos is not None else []) + ids

    def suffix_ids(self, suffix: str) -> list[int]:
        head = self.defaults.suffix_head_tokens
        window = suffix[: head * CHARS_PER_TOKEN_BOUND]
        ids = self.tokenizer.encode(window)
        if len(window) < len(suffix):
            ids = ids[:-1]  # the last token may be cut mid-word
        return ids[:head]

    def make_sampler(self, slots: int, steps: int | None, seed: int, independent_rows: bool = False,
                     spare: int = 0, pad_logit_bias: float | None = None, expand: bool = False) -> Sampler:
        """`spare`: slots at the hole's right end beyond the probed length (see margin_in_order);
        `pad_logit_bias`: None takes the model's; `expand`: the fill may commit the model's expand token
        (see _denoise_growing), which is otherwise forbidden."""
        generator = torch.Generator().manual_seed(seed)
        if self.backend.noise == "uniform":
            # noise only from ids the tokenizer knows (the checkpoint's table can be larger, e.g. image ids)
            noise_vocab = min(self.backend.vocab_size, self.tokenizer.vocab_size)
            return EntropyBoundAccept(self.defaults, noise_vocab, steps or self.defaults.max_steps, generator)
        special = self.tokenizer.special
        if special.mask is None:
            raise ModelLoadError(f"{self.info.source}: mask noise needs a mask token in config.json")
        if steps is None:
            steps = math.ceil(slots / self.defaults.tokens_per_step)
        forbidden = [special.mask] + ([special.bos] if special.bos is not None else [])
        if special.expand is not None and not expand:
            forbidden.append(special.expand)
        return ConfidenceCommit(
            special.mask,
            special.pad,
            forbidden,
            max(1, min(steps, slots, self.defaults.max_steps)),
            self.defaults.temperature,
            generator,
            commit_confidence=self.defaults.commit_confidence,
            independent_rows=independent_rows,
            # kept hole keys save work only where the pass knows which slots' logits are read
            masked_rows_only=self.defaults.masked_rows_only or self.defaults.hole_refresh_steps != 1,
            inner_pads=self.defaults.inner_pads,
            ordered_tail=spare if self.defaults.margin_in_order else 0,
            pad_logit_bias=self.defaults.pad_logit_bias if pad_logit_bias is None else pad_logit_bias,
            spread_commits=self.defaults.spread_commits,
            expand_bias=(special.expand, self.defaults.expand_logit_bias)
            if expand and special.expand is not None and self.defaults.expand_logit_bias else None,
            commit_window=self.defaults.commit_window,
            hold_twin_commits=self.defaults.hold_twin_commits,
        )

    # ---- filling ----------------------------------------------------------------------------

    def infill(self, request: InfillRequest, cancel: threading.Event | None = None) -> Iterator[Refinement]:
        """Yield a Refinement after every denoising step; the last has done=True.

        If `cancel` is set, the fill stops between two steps and no done refinement is yielded.
        """
        slots = self.defaults.default_slots if request.max_tokens is None else request.max_tokens
        if slots < 0:
            raise EngineError(f"max_tokens must be >= 0 (got {slots})")
        batch = max(1, min(request.alternatives, MAX_ALTERNATIVES))
        offsets, choice = self._length_rule(request)
        if slots == 0:
            yield Refinement(0, ("",) * batch, 0, 0, True)
            return
        key = request.cache_key or SCRATCH_KEY
        prefix = self.prefix_ids(request.prefix)
        suffix_ids = self.suffix_ids(request.suffix)
        if len(suffix_ids) >= self.info.canvas_length:  # a small canvas: leave the hole half of it
            suffix_ids = suffix_ids[: self.info.canvas_length // 2]
        suffix = torch.tensor(suffix_ids, dtype=torch.long, device=self.backend.device)
        block = self.info.canvas_length - len(suffix)
        blocks = [min(block, slots - start) for start in range(0, slots, block)]

        cache = self.prefix_cache.sync(key, prefix)
        fit = self.defaults.fit_length if request.fit_length is None else request.fit_length
        step = 0
        tail = self.new_tail(suffix) if len(blocks) == 1 else None
        probing = fit and self.backend.noise == "mask" and len(blocks) == 1
        budget = slots  # the slots asked for: a probe may shrink the hole, a growing fill may not pass them
        # one fill that grows at expand slots (rows of a batch would grow apart)
        grows = (self.defaults.expand and self.tokenizer.special.expand is not None and self.backend.noise == "mask"
                 and len(blocks) == 1 and batch == 1)
        # a fill before the same suffix and hole size as the document's last one reads that fill's suffix head
        keeps_head = tail is not None and self.defaults.suffix_head_across_fills and self.backend.noise == "mask"
        if keeps_head:
            tail = self._suffix_head_for(key, suffix_ids, slots, len(prefix), tail)
        denoiser = self.canvas_denoiser(cache, suffix if len(blocks) == 1 else suffix[:0], tail)
        denoise_steps = request.steps  # sized by the caller for the hole it asked for
        spare = 0  # slots beyond the probed length
        leading: tuple[str, ...] = ()  # the ranked fills of several sizes, where the alternatives start with them
        if probing:
            fitted, guess = self.probe_length(denoiser, slots)
            if keeps_head:
                self._keep_suffix_head(key, suffix_ids, slots, len(prefix), tail)
            rounds = 0
            while True:
                shrunk = fitted < slots
                if shrunk:
                    # A shorter canvas moves the suffix head. Measured on the held-out holes, shrinking beats
                    # keeping the slots as committed pads (13.3% vs 8.9% single-line exact match): a hole of
                    # all masks beside revealed pads is rare in training.
                    if tail is not None and self.defaults.probe_moves_suffix_head:
                        tail.move(fitted - slots)
                    elif tail is not None:
                        tail.clear()
                    if denoise_steps is not None:  # a shrunk hole keeps the caller's tokens per step
                        denoise_steps = max(1, math.ceil(denoise_steps * fitted / slots))
                    slots, blocks = fitted, [fitted]
                    denoiser = self.canvas_denoiser(cache, suffix, tail)
                spare = max(0, slots - len(guess))
                # a probe is a full forward over the hole: its guess is a draft the user sees
                step += 1
                yield Refinement(step, (self.tokenizer.decode(guess),) * batch, 0, slots, False)
                if not shrunk or rounds >= self.defaults.reprobe_rounds:
                    break
                rounds += 1
                fitted, guess = self.probe_length(denoiser, slots)
            # several sizes, ranked: the first is the fill, the next ones are the alternatives asked for (on 736
            # held-out lines, one of three is exact for 24.7% of them, against 22.3% for three sampled rows)
            if offsets and budget <= self.defaults.length_offsets_max_slots and not grows:
                sizes = sorted({min(budget, max(1, slots + offset)) for offset in offsets})
                fills = self._fill_at_sizes(cache, suffix, slots, sizes, denoise_steps, request, cancel, prefix,
                                            choice, tail if self.defaults.probe_moves_suffix_head else None)
                best: HoleState | None = None
                for state, ranked in fills:  # the probed size's row streams as drafts, then the ranked fills
                    step += 1
                    if ranked is None:
                        draft = self.tokenizer.decode(state.guess[0].tolist())
                        yield Refinement(step, (draft,) * batch, int(state.committed[0].sum()), state.tokens.shape[1],
                                         False)
                    else:
                        best, leading = state, tuple(self.tokenizer.decode(fill.guess[0].tolist()) for fill in ranked)
                if best is None:
                    return  # cancelled
                if len(leading) >= batch:
                    yield Refinement(step, leading[:batch], int(best.committed[0].sum()), best.tokens.shape[1], True)
                    return
                # the sizes agreed on fewer texts than the alternatives asked for: sampled rows add the rest
        done_text: list[list[int]] = [[] for _ in range(batch)]
        for index, block_slots in enumerate(blocks):
            final_block = index == len(blocks) - 1
            if index > 0:  # only the last block touches the suffix; earlier blocks continue the prefix
                tail = self.new_tail(suffix) if final_block else None
                denoiser = self.canvas_denoiser(cache, suffix if final_block else suffix[:0], tail)
            sampler = self.make_sampler(block_slots, denoise_steps, request.seed + index, spare=spare,
                                        pad_logit_bias=request.pad_logit_bias, expand=grows and block_slots < budget)
            start = sampler.start(batch, block_slots, self.backend.device)
            states = (self._denoise_growing(denoiser, sampler, start, cache, suffix, tail, budget, denoise_steps,
                                            request, spare, cancel)
                      if grows else denoise_hole(denoiser, sampler, start, cancel))
            state: HoleState | None = None
            for state in states:
                if keeps_head and not probing and step == 0:  # the first pass filled the tail
                    self._keep_suffix_head(key, suffix_ids, slots, len(prefix), tail)
                step += 1
                texts = tuple(
                    self.tokenizer.decode(done_text[row] + state.guess[row].tolist()) for row in range(batch)
                )
                last = state.done and (final_block or self._ended(state))
                if leading:
                    texts = (*leading, *(text for text in texts if text not in leading))[:batch]
                elif last and batch > 1:
                    texts = self._offer_document_candidate(texts, request, budget)
                yield Refinement(step, texts, int(state.committed[0].sum()), state.tokens.shape[1], last)
                if last:
                    return
            if state is None or not state.done:
                return  # cancelled
            for row in range(batch):
                done_text[row] += state.guess[row].tolist()
            # the next block reads this one as prefix (row 0's text; alternatives share the cache)
            cache = self.prefix_cache.append(key, state.guess[0].tolist())

    def _denoise_growing(self, denoiser: Callable, sampler: Sampler, start: HoleState, cache: PrefixKV,
                         suffix: torch.Tensor, tail: TailCache | None, budget: int, steps: int | None,
                         request: InfillRequest, spare: int, cancel: threading.Event | None) -> Iterator[HoleState]:
        """denoise_hole for a one-row fill whose steps may commit expand slots: each becomes two masked slots
        (grow_at_expands) and the fill goes on in the grown hole, with a new denoiser and sampler. A growth
        that would pass `budget` slots masks those slots again and forbids expand from then on. `steps`: the
        caller's steps for the hole's first size (None: the model's tokens_per_step); a grown hole's sampler
        keeps that rate over the slots still masked."""
        expand, mask = self.tokenizer.special.expand, self.tokenizer.special.mask
        assert expand is not None and mask is not None  # Engine.infill's `grows`
        first_slots = start.tokens.shape[1]
        while True:
            for state in denoise_hole(denoiser, sampler, start, cancel):
                if not bool((state.committed & (state.tokens == expand)).any()):
                    yield state
                    continue
                grown, added = grow_at_expands(state, expand, mask)
                grew = grown.tokens.shape[1] <= budget
                if grew:
                    state = grown
                    if tail is not None:
                        tail.move(added)  # the suffix head now sits `added` slots later
                    # every slot right of the growth moved: a new denoiser keeps no hole keys from before
                    denoiser = self.canvas_denoiser(cache, suffix, tail)
                else:
                    state = drop_expands(state, expand, mask)
                yield state  # this step's refinement, in the grown hole
                break
            else:
                return  # the fill ended, or was cancelled
            slots, masked = state.tokens.shape[1], int((~state.committed).sum())
            if steps is None:
                more = math.ceil(masked / self.defaults.tokens_per_step)
            else:  # the caller's tokens per step, as a probe that shrinks the hole keeps them
                more = max(1, math.ceil(steps * masked / first_slots))
            sampler = self.make_sampler(slots, more, request.seed, spare=spare, pad_logit_bias=request.pad_logit_bias,
                                        expand=grew and slots < budget)
            start = state

    def _length_rule(self, request: InfillRequest) -> tuple[tuple[int, ...], str]:
        """The request's length offsets and choice, else the model's generation_config ones."""
        offsets = self.defaults.length_offsets if request.length_offsets is None else request.length_offsets
        choice = request.length_choice or self.defaults.length_choice
        if choice not in LENGTH_CHOICES:
            raise EngineError(f"length_choice must be one of {', '.join(LENGTH_CHOICES)} (got {choice!r})")
        return tuple(offsets), choice

    def _fill_at_sizes(self, cache: PrefixKV, suffix: torch.Tensor, slots: int, sizes: list[int],
                       steps: int | None, request: InfillRequest, cancel: threading.Event | None,
                       prefix_ids: list[int], choice: str,
                       probed_head: TailCache | None = None) -> Iterator[tuple[HoleState, list[HoleState] | None]]:
        """Fill the hole at every size of `sizes` in one batch (a row each, greedy) and rank the fills by
        `choice` (GenerationDefaults.length_choice). Yields (the row nearest `slots`, None) after each step,
        so that the user sees the probed size's fill form, then (the best fill, every distinct fill best
        first); nothing more if cancelled. Each state has one row and that row's size. `prefix_ids`: the
        cached prefix's tokens.

        A row's hole is its first `size` slots of the widest; the slots after them start as committed pads
        and no query attends to them, and its suffix head sits right after its own hole (the backend's
        `hole_lengths`): each row computes what a fill at its size alone would, for about the price of one.

        `probed_head`: the probe's suffix head, at `slots`. Each row then reads it moved to its own size, as a
        probed fill at that size alone would (`probe_moves_suffix_head`), and the first pass runs the hole
        slots only: the suffix head would otherwise run once per row (5 x 64 rows for five sizes)."""
        pad = self.tokenizer.special.pad
        widest = max(sizes)
        lengths = torch.tensor(sizes, device=self.backend.device)  # (K,)
        shown = min(range(len(sizes)), key=lambda row: (abs(sizes[row] - slots), sizes[row]))
        head = self.new_tail(suffix)
        if head is not None and probed_head is not None and probed_head.filled:
            head = probed_head.moved_per_row([size - slots for size in sizes])
        denoiser = self.canvas_denoiser(cache, suffix, head, hole_lengths=lengths)
        sampler = self.make_sampler(widest, steps, request.seed, independent_rows=True,
                                    pad_logit_bias=request.pad_logit_bias)
        start = sampler.start(len(sizes), widest, self.backend.device)
        dead = torch.arange(widest, device=self.backend.device)[None] >= lengths[:, None]  # (K, S)
        start = replace(start, tokens=start.tokens.masked_fill(dead, pad), committed=start.committed | dead)
        state = None
        for state in denoise_hole(denoiser, sampler, replace(start, guess=start.tokens), cancel):
            if not state.done:
                yield _one_row(state, shown, sizes[shown]), None
        if state is None or not state.done or state.scores is None:
            return  # cancelled
        fills = [_one_row(state, row, size) for row, size in enumerate(sizes)]
        trusted = [False] * len(fills)
        if choice == "likelihood":
            found = self._document_candidates(request, state)
            retyped = self._retyped_fill(request, fills + [fill for fill, _ in found], state, prefix_ids, cancel)
            if cancel is not None and cancel.is_set():
                return  # during the second fill
            found += [(retyped, False)] if retyped is not None else []
            fills, sizes = fills + [fill for fill, _ in found], sizes + [fill.tokens.shape[1] for fill, _ in found]
            trusted += [sure for _, sure in found]
        errors = self._syntax_errors(fills, request.syntax_errors)
        rows = range(len(fills))
        if choice == "vote":
            votes = self._votes(fills)
            keys = [(-errors[row], votes[row], sizes[row]) for row in rows]  # ties: the larger hole
        elif choice == "likelihood":
            scores = self._continuation_likelihoods(cache, prefix_ids, fills, request.suffix)
            keys = [(-errors[row], trusted[row], scores[row], -abs(sizes[row] - slots)) for row in rows]
        else:
            keys = [(-errors[row], float(fill_score(fills[row].tokens, fills[row].scores, pad)[0])) for row in rows]
        ranked: dict[str, HoleState] = {}  # text -> its best-ranked fill; equal keys keep the earlier row
        for row in sorted(rows, key=keys.__getitem__, reverse=True):
            ranked.setdefault(self.tokenizer.decode(fills[row].tokens[0].tolist()), fills[row])
        distinct = list(ranked.values())
        yield distinct[0], distinct

    def _document_candidates(self, request: InfillRequest, done: HoleState) -> list[tuple[HoleState, bool]]:
        """The request's first `GenerationDefaults.document_candidates` document candidates that fit the slots
        asked for, each as a done one-row fill (its tokens committed, no scores) to rank with the model's, and
        whether it is trusted (`document_candidate_trusted_chars`). On 736 held-out single lines, one candidate
        turned 130 exact fills into 144, and trusting those found among 64 matching characters into 154
        (MODEL_CARD.md, session 19)."""
        budget = self.defaults.default_slots if request.max_tokens is None else request.max_tokens
        trust = self.defaults.document_candidate_trusted_chars
        rows = []
        for text, matching in request.document_candidates[: self.defaults.document_candidates]:
            ids = self.tokenizer.encode(text)
            if 0 < len(ids) <= budget:
                rows.append((self._written_row(done, ids), 0 < trust <= matching))
        return rows

    def _written_row(self, done: HoleState, ids: list[int]) -> HoleState:
        """A fill the engine did not denoise (found in the document, or written after typed characters) as a
        done one-row fill like `done`'s: its tokens committed, no scores."""
        tokens = torch.tensor([ids], dtype=torch.long, device=self.backend.device)
        return replace(done, tokens=tokens, committed=torch.ones_like(tokens, dtype=torch.bool), guess=tokens,
                       logits=None, scores=torch.zeros(tokens.shape, device=self.backend.device))

    def _retyped_fill(self, request: InfillRequest, fills: list[HoleState], done: HoleState, prefix_ids: list[int],
                      cancel: threading.Event | None) -> HoleState | None:
        """Where every fill finishes the cursor's word into one the document never spells
        (`InfillRequest.word_completion`), the hole filled again after the characters of the document's
        word: those characters and that fill, as a done one-row fill to rank with the others. None
        otherwise, when cancelled, or when it fits no slots asked for. The second fill reads the document's
        cache, which is synced back to `prefix_ids` after it. On 736 held-out single lines it was ranked
        first 63 times out of the 117 where it was made: 14 exact lines more, none fewer (MODEL_CARD.md,
        session 20)."""
        if request.word_completion is None or not self.defaults.retype_unknown_words:
            return None
        texts = dict.fromkeys(self.tokenizer.decode(fill.tokens[0].tolist()) for fill in fills)
        typed = [request.word_completion(text) for text in texts]
        if not typed or not all(typed):
            return None
        budget = self.defaults.default_slots if request.max_tokens is None else request.max_tokens
        room = budget - len(self.tokenizer.encode(typed[0]))
        if room < 1:
            return None
        count = request.syntax_errors
        again = replace(request, prefix=request.prefix + typed[0], max_tokens=room, alternatives=1,
                        document_candidates=(), word_completion=None,
                        syntax_errors=None if count is None else lambda text: count(typed[0] + text))
        final = self.complete(again, cancel)
        self.prefix_cache.sync(request.cache_key or SCRATCH_KEY, prefix_ids)
        if final is None:
            return None
        ids = self.tokenizer.encode(typed[0] + final.text)
        return self._written_row(done, ids) if 0 < len(ids) <= budget else None

    def _offer_document_candidate(self, texts: tuple[str, ...], request: InfillRequest, budget: int) -> tuple[str, ...]:
        """Sampled alternatives (an explicit request filled without sizes to rank) offer the document's first
        candidate as well: first when trusted (`document_candidate_trusted_chars`), else in place of the last
        alternative; as they were if it fits no `budget` slots or an alternative reads it."""
        if self.defaults.document_candidates < 1 or not request.document_candidates:
            return texts
        text, matching = request.document_candidates[0]
        if text in texts or not 0 < len(self.tokenizer.encode(text)) <= budget:
            return texts
        if 0 < self.defaults.document_candidate_trusted_chars <= matching:
            return (text, *texts[:-1])
        return (*texts[:-1], text)

    def _syntax_errors(self, fills: list[HoleState], count: Callable[[str], int] | None) -> list[int]:
        """The caller's syntax error count of each fill's text (row 0), each distinct text counted once; all 0
        without a counter. A fill that breaks the document is rarely the one its writer meant: on 736
        held-out single lines, keeping the likeliest of the fills with the fewest errors turned 33 fills,
        4 of them into exact ones and none out of one (MODEL_CARD.md, session 18)."""
        texts = [self.tokenizer.decode(state.tokens[0].tolist()) for state in fills]
        if count is None or len(set(texts)) == 1:
            return [0] * len(fills)
        counted = {text: count(text) for text in dict.fromkeys(texts)}
        return [counted[text] for text in texts]

    def _continuation_likelihoods(self, cache: PrefixKV, prefix_ids: list[int], fills: list[HoleState],
                                  suffix: str) -> list[float]:
        """For each fill (row 0), the causal pass's log-probability of its text followed by the suffix's first
        `likelihood_suffix_lines` lines (the first is the rest of the hole's line), after the prefix. The
        candidates continue the same document, so the sums compare across lengths with no normalisation,
        and the suffix's lines score how well each fill joins them. The prefix's last
        `likelihood_heal_tokens` tokens are scored again, tokenised together with each fill (`heal_split`)."""
        score = getattr(self.backend, "continuation_logprobs", None)
        if score is None:
            raise EngineError(f"length_choice 'likelihood' needs a causal scoring pass, which the "
                              f"{self.info.backend} backend lacks")
        pad = self.tokenizer.special.pad
        rest = suffix_lines(suffix, self.defaults.likelihood_suffix_lines)
        texts = [self.tokenizer.decode([token for token in state.tokens[0].tolist() if token != pad])
                 for state in fills]
        distinct = list(dict.fromkeys(texts))  # sizes often agree: each text is scored once
        if len(distinct) == 1:  # nothing to choose between (the caller's tie-break keeps the probed size)
            return [0.0] * len(fills)
        kept, head = self.heal_split(prefix_ids, self.defaults.likelihood_heal_tokens)
        encoded = [self.tokenizer.encode(head + text + rest) for text in distinct]
        width = max(len(ids) for ids in encoded)
        if width == 0:
            return [0.0] * len(fills)
        ids = torch.tensor([row + [pad] * (width - len(row)) for row in encoded], device=self.backend.device)
        counted = torch.tensor([[i < len(row) for i in range(width)] for row in encoded], device=self.backend.device)
        logprobs = score(cache, prefix_ids[kept - 1], ids, kept)  # (distinct texts, T)
        sums = dict(zip(distinct, logprobs.masked_fill(~counted, 0.0).sum(-1).tolist(), strict=True))
        bonus = self.defaults.likelihood_token_bonus
        lengths = [int((state.tokens[0] != pad).sum()) for state in fills]
        return [sums[text] + bonus * length for text, length in zip(texts, lengths, strict=True)]

    def heal_split(self, prefix_ids: list[int], tokens: int) -> tuple[int, str]:
        """(how many prefix tokens the scoring pass reads from the cache, the text of the rest) for scoring
        the prefix's last `tokens` tokens again with a fill. Never the first token (<bos>), and none where
        those tokens do not decode to whole characters (a character split across tokens)."""
        tokens = max(0, min(tokens, len(prefix_ids) - 1))
        head = self.tokenizer.decode(prefix_ids[len(prefix_ids) - tokens :]) if tokens else ""
        if "\ufffd" in head:
            return len(prefix_ids), ""
        return len(prefix_ids) - tokens, head

    def _votes(self, fills: list[HoleState]) -> list[int]:
        """For each fill, how many of `fills` have its text (row 0, pads dropped). Where lengths disagree, the
        text that several sizes reach is seldom the one a spare slot bent."""
        pad = self.tokenizer.special.pad
        texts = [tuple(token for token in state.tokens[0].tolist() if token != pad) for state in fills]
        return [texts.count(text) for text in texts]

    def _keep_suffix_head(self, key: str, suffix: list[int], slots: int, prefix_length: int,
                          tail: TailCache | None) -> None:
        if tail is not None:
            self.prefix_cache.keep_suffix_head(key, KeptSuffixHead(tuple(suffix), slots, prefix_length, tail.copy()))

    def _suffix_head_for(self, key: str, suffix: list[int], slots: int, prefix_length: int,
                         fresh: TailCache) -> TailCache:
        """The document's kept suffix head, moved to this fill's positions, if it was kept before the same
        suffix and hole size; else `fresh`."""
        kept = self.prefix_cache.suffix_head(key)
        if kept is None or kept.suffix != tuple(suffix) or kept.slots != slots:
            return fresh
        tail = kept.tail.copy()
        tail.move(prefix_length - kept.prefix_length)
        return tail

    def new_tail(self, suffix: torch.Tensor) -> TailCache | None:
        """A cache for the suffix head's keys, where the backend has one and the defaults keep them."""
        new_tail = getattr(self.backend, "new_tail", None)
        if new_tail is None or self.defaults.suffix_refresh_steps == 1 or len(suffix) == 0:
            return None
        return new_tail()  # type: ignore[no-any-return]

    def canvas_denoiser(self, cache: PrefixKV, suffix: torch.Tensor, tail: TailCache | None = None,
                        hole_lengths: torch.Tensor | None = None) -> Callable:
        """hole tokens (B, S)[, rows (R,)] -> logits (B, S, V) (or (B, R, V) for the hole slots `rows`) over the
        canvas [hole][suffix], after the prefix cache.

        With a `tail` (see new_tail), the suffix head runs through the network only when the tail is empty
        and every `suffix_refresh_steps` steps; the steps between run the hole slots alone. With a tail and
        `hole_refresh_steps` != 1 (and a backend that keeps hole keys), those steps run only the slots in
        `rows` and the slots whose input changed; the whole hole runs every `hole_refresh_steps` steps.
        `hole_lengths` (B,): each row's hole is that many of the first slots (see the backend's denoise).
        """
        refresh = self.defaults.suffix_refresh_steps
        hole_refresh = self.defaults.hole_refresh_steps
        selects_rows = hasattr(self.backend, "new_hole_cache")  # DiffusionGemma's backend computes every slot
        hole_cache = None
        if selects_rows and tail is not None and hole_refresh != 1:
            hole_cache = self.backend.new_hole_cache()  # type: ignore[attr-defined]
        steps = 0

        def denoiser(hole: torch.Tensor, previous: torch.Tensor | None, rows: torch.Tensor | None = None) -> torch.Tensor:
            nonlocal steps
            canvas = torch.cat((hole, suffix.expand(hole.shape[0], -1)), dim=1)  # (B, S + suffix)
            if tail is not None and refresh > 1 and steps % refresh == 0 and steps > 0:
                tail.clear()
            if hole_cache is not None and hole_refresh > 1 and steps % hole_refresh == 0 and steps > 0:
                hole_cache.clear()
            steps += 1
            options: dict = {} if tail is None else {"tail": tail}
            if hole_lengths is not None:
                options["hole_lengths"] = hole_lengths
            if selects_rows:
                options.update(rows=rows, hole_cache=hole_cache)
            logits = self.backend.denoise(cache, canvas, hole.shape[1], previous, **options)
            return logits if rows is None or selects_rows else logits[:, rows.to(logits.device)]

        return denoiser

    def probe_length(self, denoiser: Callable, slots: int) -> tuple[int, list[int]]:
        """The fill's length as the model sees it: one forward over an all-mask hole, where the trailing
        run of predicted pads marks the end. A hole sized to it (and a margin) leaves no slots that must
        be forced into text. Returns that length and the forward's argmax guess of the fill.
        """
        special = self.tokenizer.special
        hole = torch.full((1, slots), special.mask, dtype=torch.long, device=self.backend.device)
        logits = denoiser(hole, None)  # (1, S, V)
        never = torch.tensor([special.mask], device=logits.device)
        guess = logits.index_fill(-1, never, float("-inf")).argmax(-1)  # (1, S)
        length = slots - int(right_pad_run(guess, special.pad).sum())
        return max(1, min(slots, length + self.defaults.length_margin)), guess[0, :length].tolist()

    def _ended(self, state: HoleState) -> bool:
        """A block whose fill already ended (eos or trailing pads) needs no further block."""
        special = self.tokenizer.special
        last_tokens = state.guess[:, -1].tolist()
        return all(token in (special.pad, special.eos) for token in last_tokens)

    def complete(self, request: InfillRequest, cancel: threading.Event | None = None) -> Refinement | None:
        """Run a fill to its end; None if cancelled."""
        final = None
        for refinement in self.infill(request, cancel):
            final = refinement
        return final if final is not None and final.done else None


def _special_tokens(config: dict, backend: Backend, model_dir: Path) -> SpecialTokens:
    values = config.get("special_tokens")
    if values is None and hasattr(backend, "special_tokens"):
        return backend.special_tokens()  # type: ignore[no-any-return]
    if not isinstance(values, dict) or "pad" not in values or "eos" not in values:
        raise ModelLoadError(f"{model_dir}/config.json: special_tokens needs at least pad and eos")
    return SpecialTokens(pad=values["pad"], eos=values["eos"], bos=values.get("bos"), mask=values.get("mask"),
                         expand=values.get("expand"))


def _one_row(state: HoleState, row: int, size: int) -> HoleState:
    """Row `row` of a batched fill state, cut to its first `size` slots."""
    cut = {name: getattr(state, name)[row : row + 1, :size] for name in ("tokens", "committed", "guess")}
    scores = None if state.scores is None else state.scores[row : row + 1, :size]
    return replace(state, **cut, logits=None, scores=scores, done=state.done)


def suffix_lines(suffix: str, lines: int) -> str:
    """The suffix up to and including its `lines`-th newline (all of it if it has fewer)."""
    end = -1
    for _ in range(max(lines, 1)):
        end = suffix.find("\n", end + 1)
        if end < 0:
            return suffix
    return suffix[: end + 1]
