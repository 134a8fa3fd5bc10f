"""Denoising a hole: the loop, and the small rules it is built from.

Works on token ids only. Two noise kinds, one loop:
- `mask` (absorbing state; the shipped model): slots start as <mask>; each step commits the most
  certain slots. Pad tokens end a fill; they may only grow from the right end of the hole, so a
  confident pad can never cut a fill short in the middle (the collapse DESIGN.md measured).
- `uniform` (DiffusionGemma): slots start as random tokens; each step accepts the lowest-entropy
  samples within an entropy bound and re-randomises the rest, under a falling temperature, and
  stops once the argmax hole is stable and confident. The previous logits are fed back
  (self-conditioning).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from engine.model_dir import GenerationDefaults

Denoiser = Callable[..., torch.Tensor]
"""hole tokens (B, S), previous logits or None[, rows (R,)] -> logits (B, S, V), or (B, R, V) for the hole
slots `rows` when the sampler names them (see ConfidenceCommit.rows)."""


@dataclass(frozen=True)
class HoleState:
    tokens: torch.Tensor  # (B, S) what the network sees in the hole slots next step
    committed: torch.Tensor  # (B, S) bool, slots that are fixed
    guess: torch.Tensor  # (B, S) the current best estimate of the whole fill (shown to the user)
    logits: torch.Tensor | None  # (B, S, V) last step's logits, for self-conditioning
    step: int
    done: bool
    # (B, S) mask noise: log-probability of each committed token when it was committed (0 where free);
    # scores a fill, e.g. to choose among fills of several lengths
    scores: torch.Tensor | None = None


class LinearTemperature:
    """t_max at the first step, falling linearly to t_min at the last allowed step."""

    def __init__(self, t_max: float, t_min: float, max_steps: int):
        self.t_max, self.t_min, self.max_steps = t_max, t_min, max_steps

    def __call__(self, step: int) -> float:
        remaining = max(self.max_steps - step, 0) / self.max_steps
        return self.t_min + (self.t_max - self.t_min) * remaining


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """(..., V) -> (...) in nats: log-sum-exp minus the expected logit, which is -sum(p log p) with one pass
    of exponentials over the vocabulary instead of two (a third of the time on a CPU). Computed on logits
    shifted by their maximum, so float32 rounding stays below ~1e-6 nats (clamped at zero): far below the
    entropy bound and the stopping threshold."""
    return entropy_and_weights(logits.float())[0]


def entropy_and_weights(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 (..., V) -> entropy (...) in nats, argmax (...), and unnormalised probabilities (..., V).

    One max (which is also the argmax), one pass of exponentials of the shifted logits y = x - max, one sum
    and one dot product: entropy = log sum e^y - sum e^y y / sum e^y, the same as log-sum-exp minus the
    expected logit. Every pass over (..., V) is a parallel region whose second thread must be woken (the
    service's OpenMP threads sleep while they wait), so the count of passes is what costs on a CPU."""
    top, argmax = logits.max(-1)  # first index of the largest logit, as argmax()
    shifted = logits - top[..., None]  # <= 0
    weights = shifted.exp()
    total = weights.sum(-1)
    token_entropy = total.log() - torch.linalg.vecdot(weights, shifted) / total
    return token_entropy.clamp_(min=0), argmax, weights


def right_run(flags: torch.Tensor) -> torch.Tensor:
    """bool (B, S) -> bool (B, S): True where this slot's flag and every flag to its right is True."""
    return flags.int().flip(-1).cumprod(-1).flip(-1).bool()


def right_pad_run(tokens: torch.Tensor, pad: int) -> torch.Tensor:
    """(B, S) -> bool (B, S): True where this slot and every slot to its right is pad."""
    return right_run(tokens == pad)


def fill_score(tokens: torch.Tensor, scores: torch.Tensor, pad: int) -> torch.Tensor:
    """tokens, scores (B, S) -> (B,) mean log-probability of a fill's text and of its end (the first
    trailing pad). Pads after the first are left out: a longer hole would otherwise win by its easy pads."""
    trailing = right_pad_run(tokens, pad)  # (B, S)
    first_pad = trailing & ~torch.cat((trailing[:, :1] & False, trailing[:, :-1]), dim=1)
    counted = ~trailing | first_pad
    return (scores * counted).sum(-1) / counted.sum(-1).clamp(min=1)


def top_k(score: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """score (B, S), -inf where a slot may not be chosen, and k (B,) -> bool (B, S): each row's k best slots."""
    ranks = score.argsort(-1, descending=True).argsort(-1)  # (B, S) rank of each slot
    return (ranks < k[:, None]) & (score > -math.inf)


def hold_twins(commit: torch.Tensor, token: torch.Tensor, confidence: torch.Tensor, pad: int) -> torch.Tensor:
    """commit (B, S) -> the same without the less certain of two neighbouring slots that one step would commit
    to the same text token. Neither saw the other's token, and each often starts the same word (`morphmorph`,
    `compilation,,,`); the one held back is predicted again next step, beside its twin's committed token."""
    twins = commit[:, 1:] & commit[:, :-1] & (token[:, 1:] == token[:, :-1]) & (token[:, 1:] != pad)  # (B, S-1)
    if not bool(twins.any()):
        return commit
    right_weaker = confidence[:, 1:] <= confidence[:, :-1]
    held = torch.zeros_like(commit)
    held[:, 1:] |= twins & right_weaker
    held[:, :-1] |= twins & ~right_weaker
    return commit & ~held


def spread_top_k(score: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """`top_k`, but no two chosen slots are neighbours where that is possible: best first, each choice rules
    out its two neighbours, and a row whose free slots lie too close together for k such choices takes its
    best remaining slots. Slots committed in one step are predicted independently of each other, and two
    neighbours are where that fails most (the same token twice: `= =`, `from from`)."""
    chosen = torch.zeros_like(score, dtype=torch.bool)
    blocked = torch.zeros_like(chosen)
    need = k.clone()
    last = score.shape[1] - 1
    for _ in range(int(k.max())):  # k is a few slots a step
        best_score, best = torch.where(blocked | chosen, -math.inf, score).max(-1)  # (B,) each
        rows = ((need > 0) & (best_score > -math.inf)).nonzero()[:, 0]
        if rows.numel() == 0:
            break
        slot = best[rows]
        chosen[rows, slot] = True
        blocked[rows, (slot - 1).clamp(min=0)] = True
        blocked[rows, (slot + 1).clamp(max=last)] = True
        need[rows] -= 1
    if bool((need > 0).any()):  # too few slots apart from each other: the best of the rest
        chosen |= top_k(torch.where(chosen, -math.inf, score), need.clamp(min=0))
    return chosen


class ConfidenceCommit:
    """Mask noise: commit the k most confident uncommitted slots per step (k spreads the rest evenly
    over the remaining steps), and every slot at least `commit_confidence` certain, so easy stretches
    finish in fewer steps. Row 0 is greedy; further rows (alternatives) sample at `temperature`, unless
    `independent_rows` (rows are separate fills, all greedy: batched requests).

    With `masked_rows_only`, the sampler asks the denoiser for the still-masked slots' logits only: a
    committed slot's logits are never read, so this is exact, and it spares the LM head and the softmax."""

    self_conditioning = False

    def __init__(
        self,
        mask: int,
        pad: int,
        forbidden: list[int],
        steps: int,
        temperature: float,
        generator: torch.Generator,
        pad_bonus: float = 0.9,
        commit_confidence: float = 1.0,
        independent_rows: bool = False,
        masked_rows_only: bool = False,
        inner_pads: bool = False,
        ordered_tail: int = 0,
        pad_logit_bias: float = 0.0,
        spread_commits: bool = False,
        expand_bias: tuple[int, float] | None = None,
        commit_window: int = 0,
        hold_twin_commits: bool = False,
    ):
        self.mask, self.pad, self.forbidden = mask, pad, forbidden
        self.max_steps = steps
        self.temperature = temperature
        self.generator = generator
        self.pad_bonus = pad_bonus  # right-end pads this certain are committed at once, beyond k
        self.commit_confidence = commit_confidence  # any slot this certain is committed, beyond k
        self.independent_rows = independent_rows
        self.masked_rows_only = masked_rows_only
        self.inner_pads = inner_pads
        # the hole's last `ordered_tail` slots take text only left to right (see GenerationDefaults.margin_in_order)
        self.ordered_tail = ordered_tail
        self.pad_logit_bias = pad_logit_bias  # added to the pad's logit: > 0 ends fills sooner
        self.spread_commits = spread_commits  # a step's k commits avoid neighbouring slots (spread_top_k)
        self.expand_bias = expand_bias  # (expand id, added to its logit): < 0 grows only where the model is sure
        self.commit_window = commit_window  # > 0: commit among the first this many masked slots only
        self.hold_twin_commits = hold_twin_commits  # two neighbours committed in one step never get the same text token

    def start(self, batch: int, slots: int, device: torch.device) -> HoleState:
        tokens = torch.full((batch, slots), self.mask, dtype=torch.long, device=device)
        committed = torch.zeros(batch, slots, dtype=torch.bool, device=device)
        return HoleState(tokens, committed, tokens, None, 0, False, torch.zeros(batch, slots, device=device))

    @staticmethod
    def _forbid(logits: torch.Tensor, tokens: list[int]) -> torch.Tensor:
        index = torch.tensor(tokens, device=logits.device)
        return logits.float().index_fill(-1, index, -math.inf)

    def _choose(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """logits (B, S, V) -> token (B, S) and its probability (B, S)."""
        logits = self._forbid(logits, self.forbidden)
        if self.pad_logit_bias:
            logits[..., self.pad] += self.pad_logit_bias
        if self.expand_bias is not None:
            logits[..., self.expand_bias[0]] += self.expand_bias[1]
        probs = torch.softmax(logits, dim=-1)
        confidence, token = probs.max(-1)
        if logits.shape[0] > 1 and not self.independent_rows:  # alternatives: rows 1.. differ from row 0
            temperature = self.temperature if self.temperature > 0 else 0.8
            warm = torch.softmax(logits[1:] / temperature, dim=-1)
            flat = warm.reshape(-1, warm.shape[-1])
            # the generator lives on the CPU, so seeded alternatives are the same on every device
            sampled = torch.multinomial(flat.cpu(), 1, generator=self.generator).view(warm.shape[:-1])
            sampled = sampled.to(logits.device)
            token[1:] = sampled
            confidence[1:] = probs[1:].gather(-1, sampled[..., None])[..., 0]
        return token, confidence

    def rows(self, state: HoleState) -> torch.Tensor | None:
        """The hole slots whose logits the next update reads: (R,) ids of slots masked in any batch row (in its
        commit window, when there is one)."""
        if not self.masked_rows_only:
            return None
        window = self._window(state.committed, state.step)
        if state.step == 0:  # the first step reads every slot, so that pads may end the fill anywhere
            window = None
        return (~state.committed if window is None else window).any(0).nonzero()[:, 0]

    def _window(self, committed: torch.Tensor, step: int) -> torch.Tensor | None:
        """bool (B, S): the masked slots that step `step` may commit, each row's first `commit_window`; None:
        every masked slot (no window, or the last step, which commits all that is left)."""
        if self.commit_window <= 0 or step + 1 >= self.max_steps:
            return None
        free = ~committed
        return free & (free.cumsum(-1) <= self.commit_window)

    @staticmethod
    def _spread(values: torch.Tensor, rows: torch.Tensor | None, fill: torch.Tensor) -> torch.Tensor:
        """values (B, R) for the slots `rows` -> (B, S), `fill` (B, S) at the other slots."""
        if rows is None:
            return values
        return fill.clone().index_copy_(1, rows, values.to(fill.dtype))

    def _text_allowed(self, state: HoleState) -> torch.Tensor:
        """bool (B, S): slots where a text token may be committed now. In the ordered tail, only a slot whose
        left neighbour already holds committed text."""
        allowed = torch.ones_like(state.committed)
        if self.ordered_tail <= 0:
            return allowed
        slots = state.committed.shape[1]
        left_text = state.committed & (state.tokens != self.pad)  # (B, S)
        start = max(slots - self.ordered_tail, 1)
        allowed[:, start:] = left_text[:, start - 1 : -1]
        return allowed

    def update(self, state: HoleState, logits: torch.Tensor, rows: torch.Tensor | None = None) -> HoleState:
        """logits (B, S, V), or (B, R, V) for the slots `rows` (every slot not in `rows` is committed)."""
        token, confidence = self._choose(logits)
        unread = torch.full(state.tokens.shape, -math.inf, device=confidence.device)  # (B, S)
        token = self._spread(token, rows, state.tokens)
        confidence = self._spread(confidence, rows, unread)
        free = ~state.committed
        guess = torch.where(state.committed, state.tokens, token)
        window = self._window(state.committed, state.step)
        # slots waiting after the window count as pads: a pad run that reaches the window's end may end the
        # fill; in the first step every slot is read, and the pads at the hole's right end may be committed
        # wherever they begin (it anchors the fill's end, as without a window)
        ends = guess if window is None or state.step == 0 else guess.masked_fill(free & ~window, self.pad)
        if self.inner_pads:  # a pad may extend a pad run or sit left of committed text
            pad_ok = right_run(state.committed | (ends == self.pad))
        else:  # a pad may only extend the run at the right end
            pad_ok = right_pad_run(ends, self.pad)
        text_ok = self._text_allowed(state)
        eligible = free & torch.where(token == self.pad, pad_ok, text_ok)
        if window is not None:
            eligible &= window | (token == self.pad) if state.step == 0 else window
        last_step = state.step + 1 >= self.max_steps

        score = torch.where(eligible, confidence, torch.full_like(confidence, -math.inf))
        remaining = free.sum(-1)  # (B,)
        steps_left = max(self.max_steps - state.step, 1)
        k = torch.ceil(remaining.float() / steps_left).long().clamp(min=1)  # (B,)
        commit = spread_top_k(score, k) if self.spread_commits else top_k(score, k)
        commit |= eligible & (token == self.pad) & (confidence >= self.pad_bonus)
        if self.commit_confidence < 1.0:  # 1.0 is off: a float32 softmax can round to exactly 1
            commit |= eligible & (confidence >= self.commit_confidence)
        if self.hold_twin_commits:
            commit = hold_twins(commit, token, confidence, self.pad)
        stuck = free.any(-1) & ~commit.any(-1)  # only mid-hole pads were proposed: take text instead
        if stuck.any():
            text_logits = self._forbid(logits, self.forbidden + [self.pad])
            text_conf, text_token = torch.softmax(text_logits, -1).max(-1)
            text_conf = self._spread(text_conf, rows, unread)
            text_token = self._spread(text_token, rows, state.tokens)
            allowed = free & text_ok & (True if window is None else window)
            allowed = torch.where(allowed.any(-1, keepdim=True), allowed, free)  # never stuck twice
            best = torch.where(allowed, text_conf, torch.full_like(text_conf, -math.inf)).argmax(-1)  # (B,)
            batch_rows = stuck.nonzero()[:, 0]
            token[batch_rows, best[batch_rows]] = text_token[batch_rows, best[batch_rows]]
            confidence[batch_rows, best[batch_rows]] = text_conf[batch_rows, best[batch_rows]]
            commit[batch_rows, best[batch_rows]] = True
        if last_step:
            commit = free
        tokens = torch.where(commit, token, state.tokens)
        committed = state.committed | commit
        guess = torch.where(committed, tokens, token)
        scores = None
        if state.scores is not None:
            scores = torch.where(commit, confidence.clamp(min=1e-12).log(), state.scores)
        return HoleState(tokens, committed, guess, None, state.step + 1, bool(committed.all()), scores)


def grow_at_expands(state: HoleState, expand: int, mask: int) -> tuple[HoleState, int]:
    """A batch-1 mask-noise state -> the state where every committed `expand` slot is two uncommitted
    <mask> slots, and how many slots were added. The sampler counts its steps afresh (step 0): the grown
    hole gets a sampler of its own, sized for the slots still masked."""
    flags = state.committed[0] & (state.tokens[0] == expand)  # (S,)
    added = int(flags.sum())
    if added == 0:
        return state, 0
    # each grown slot's source slot: an expand slot's index twice
    index = torch.repeat_interleave(torch.arange(len(flags), device=flags.device), 1 + flags.long())  # (S + added,)
    split = flags[index][None]  # (1, S + added) both slots of an expand's pair
    tokens = state.tokens[:, index].masked_fill(split, mask)
    committed = state.committed[:, index] & ~split
    guess = state.guess[:, index].masked_fill(split, mask)
    scores = None if state.scores is None else state.scores[:, index].masked_fill(split, 0.0)
    return HoleState(tokens, committed, guess, None, 0, False, scores), added


def drop_expands(state: HoleState, expand: int, mask: int) -> HoleState:
    """A batch-1 mask-noise state -> the same hole with its committed `expand` slots masked again (the hole
    may not grow: its sampler forbids expand from now on); the step count starts afresh, as in grow_at_expands."""
    dropped = state.committed & (state.tokens == expand)
    tokens = state.tokens.masked_fill(dropped, mask)
    scores = None if state.scores is None else state.scores.masked_fill(dropped, 0.0)
    return HoleState(tokens, state.committed & ~dropped, state.guess.masked_fill(dropped, mask), None, 0, False,
                     scores)


class EntropyBoundAccept:
    """Uniform noise: accept the k lowest-entropy samples such that
    sum(entropies) - max(entropies) <= bound (they are close to independent), re-randomise the rest."""

    self_conditioning = True

    def __init__(self, defaults: GenerationDefaults, vocab_size: int, steps: int, generator: torch.Generator):
        self.bound = defaults.entropy_bound
        self.max_steps = steps
        self.vocab_size = vocab_size
        self.temperature = LinearTemperature(defaults.t_max, defaults.t_min, steps)
        self.stop = StableAndConfident(defaults.stability_threshold, defaults.confidence_threshold)
        self.generator = generator

    def _noise(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return torch.randint(0, self.vocab_size, shape, generator=self.generator, device="cpu").to(device)

    def start(self, batch: int, slots: int, device: torch.device) -> HoleState:
        tokens = self._noise((batch, slots), device)
        committed = torch.zeros(batch, slots, dtype=torch.bool, device=device)
        self.stop.reset()
        return HoleState(tokens, committed, tokens, None, 0, False)

    def accept(self, token_entropy: torch.Tensor) -> torch.Tensor:
        """(B, S) entropies -> bool (B, S) accepted."""
        ordered, order = token_entropy.sort(-1)
        within = ordered.cumsum(-1) - ordered <= self.bound
        return torch.zeros_like(within).scatter(-1, order, within)

    def rows(self, state: HoleState) -> None:
        """Every slot is re-randomised each step: the update reads them all."""
        return None

    def update(self, state: HoleState, logits: torch.Tensor, rows: None = None) -> HoleState:
        scaled = logits.float() / self.temperature(state.step)  # (B, S, V)
        token_entropy, guess, weights = entropy_and_weights(scaled)  # (B, S) x2, (B, S, V) unnormalised
        accepted = self.accept(token_entropy)
        # draw samples for the accepted slots only: the others are re-randomised anyway
        tokens = self._noise(tuple(accepted.shape), logits.device)
        picked = weights[accepted]  # (accepted, V): multinomial normalises its weights itself
        if picked.shape[0]:
            drawn = torch.multinomial(picked.cpu(), 1, generator=self.generator)[:, 0]  # (accepted,)
            tokens[accepted] = drawn.to(logits.device)
        done = bool(self.stop(guess, token_entropy).all()) or state.step + 1 >= self.max_steps
        # self-conditioning reads the tempered logits, as DiffusionGemma's own generate() feeds back
        return HoleState(tokens, accepted, guess, scaled, state.step + 1, done)


class StableAndConfident:
    """Stop when the argmax hole has not changed for `stability` steps and mean entropy < `threshold`."""

    def __init__(self, stability: int, threshold: float):
        self.stability, self.threshold = stability, threshold
        self.history: list[torch.Tensor] = []

    def reset(self) -> None:
        self.history = []

    def __call__(self, guess: torch.Tensor, token_entropy: torch.Tensor) -> torch.Tensor:
        stable = torch.ones(guess.shape[0], dtype=torch.bool, device=guess.device)
        if self.stability > 0:
            if len(self.history) < self.stability:
                stable = torch.zeros_like(stable)
            for earlier in self.history:
                stable &= (earlier == guess).all(-1)
            self.history = (self.history + [guess])[-self.stability :]
        return stable & (token_entropy.mean(-1) < self.threshold)


Sampler = ConfidenceCommit | EntropyBoundAccept


def denoise_hole(
    denoiser: Denoiser,
    sampler: Sampler,
    state: HoleState,
    cancel: threading.Event | None = None,
) -> Iterator[HoleState]:
    """Fill the hole from `state` (the sampler's start); yields the state after every step.

    1. Start: all <mask> (mask noise) or random tokens (uniform noise), from `sampler.start`.
    2. Denoise: logits for the hole slots the sampler reads, given the prefix cache and the clamped suffix.
    3. Update: the sampler fixes some slots (commit, or accept + re-randomise).
    4. Yield; stop when the sampler is done or the caller cancels (checked between steps).
    """
    for _ in range(sampler.max_steps):  # 1: the caller started the hole
        if cancel is not None and cancel.is_set():
            return
        previous = state.logits if sampler.self_conditioning else None
        rows = sampler.rows(state)  # None: every slot
        args = (state.tokens, previous) if rows is None else (state.tokens, previous, rows)
        logits = denoiser(*args)  # 2
        state = sampler.update(state, logits, rows)  # 3
        yield state  # 4
        if state.done:
            return
