"""Fill-in-the-middle training examples, laid out the way `NativeModel.forward_train` reads them.

A hole is cut at CHARACTER positions (as an editor's cursor does), then prefix, middle and suffix are
tokenised separately, so the model sees the token boundaries a cursor produces.

Row layout (fixed shapes, so the compiled training step never recompiles):
    prefix  (P,)  [<pad> ... <pad>][<bos>][last <= P-1 prefix tokens]       left-padded
    canvas  (C,)  [middle (m)][<pad> filler (S - m)][suffix head (<= 64)][<pad> ...]
    hole = S slots (middle + filler); canvas_len = S + suffix head; slots past canvas_len are not valid.
The filler <pad>s are targets: the model learns to end a fill with pads when it is given too many slots.
With `Layout.expand_share`, some holes are too SHORT instead: S < m, and each of m - S slots holds the
<expand> target for two adjacent middle tokens (see merge_pairs), so that the model learns where a fill
needs more room.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import IterableDataset, get_worker_info

from engine.train.tokenizer import BOS, EXPAND, PAD

SPARE_DRAWS = ("uniform", "short-and-wide", "short")
HOLE_KINDS = {"line": 0.35, "lines": 0.25, "short": 0.20, "span": 0.15, "empty": 0.05}


@dataclass(frozen=True)
class Layout:
    prefix_tokens: int = 512  # <bos> included
    middle_tokens: int = 128
    hole_slots: int = 128  # S never exceeds this
    suffix_tokens: int = 64
    true_length_share: float = 0.3  # examples whose hole has exactly the middle's length
    spare_draw: str = "uniform"  # one of SPARE_DRAWS, see spare_slots
    # examples with spare slots whose pad run sits inside the middle (see place_pads) rather than after it
    inner_pad_share: float = 0.0
    # examples whose hole is shorter than the middle, with <expand> slots standing for two tokens each
    # (merge_pairs); 0 in the shipped recipe
    expand_share: float = 0.0
    prefix_chars: int = 3072  # text cut before tokenising; ~2.8 chars/token in code leaves > 511 tokens
    suffix_chars: int = 768

    @property
    def canvas_tokens(self) -> int:
        return self.hole_slots + self.suffix_tokens


@dataclass
class Batch:
    prefix: torch.Tensor  # (B, P) int64, left-padded with <pad>
    canvas: torch.Tensor  # (B, C) int64, the clean canvas (targets), right-padded
    hole: torch.Tensor  # (B,) hole slots S
    canvas_len: torch.Tensor  # (B,) valid canvas tokens
    middle_len: torch.Tensor  # (B,) true middle tokens m

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in (self.prefix, self.canvas, self.hole,
                                                                  self.canvas_len, self.middle_len)))

    def pin_memory(self) -> Batch:  # DataLoader(pin_memory=True) calls this on custom batch types
        return Batch(*(t.pin_memory() for t in (self.prefix, self.canvas, self.hole, self.canvas_len,
                                                 self.middle_len)))

    def real_tokens(self) -> int:
        return int((self.prefix != PAD).sum()) + int(self.canvas_len.sum())


# ---- cutting holes at character positions --------------------------------------------------------


def _line_at(text: str, pos: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return start, len(text) if end < 0 else end


def _indent(text: str, start: int, end: int) -> int:
    line = text[start:end]
    return start + len(line) - len(line.lstrip())


def cut_hole(text: str, kind: str, rng: random.Random) -> tuple[int, int]:
    """(start, end) character offsets of a hole of the given kind."""
    n = len(text)
    if kind == "empty":
        pos = rng.randint(0, n)
        return pos, pos
    if kind == "span":
        start = rng.randint(0, n - 1)
        return start, min(n, start + int(math.exp(rng.uniform(0, math.log(400)))))
    for _ in range(8):  # look for a line with code on it
        ls, le = _line_at(text, rng.randint(0, n - 1))
        first = _indent(text, ls, le)
        if le - first >= 2:
            break
    else:
        start = rng.randint(0, n - 1)
        return start, min(n, start + rng.randint(1, 40))
    if kind == "short":  # a few characters inside a line, never reaching its end
        start = rng.randint(first, le - 2)
        return start, start + rng.randint(1, min(24, le - start - 1))
    cursor = ls if rng.random() < 0.15 else rng.randint(first, le - 1)
    if kind == "line":
        return cursor, le
    end = le  # "lines": 2-8 lines from the cursor
    for _ in range(rng.randint(2, 8) - 1):
        if end >= n:
            break
        end = _line_at(text, end + 1)[1]
    if cursor == ls and end < n and rng.random() < 0.5:
        end += 1  # whole lines with their last newline, as when the cursor sits on an empty line
    return cursor, end


# ---- tokenising and packing -----------------------------------------------------------------------


def spare_slots(m: int, layout: Layout, rng: random.Random) -> int:
    """How many <pad> slots follow a middle of m tokens (`Layout.spare_draw`):
    - "uniform" (the recipe): uniform in 1..max(16, m).
    - "short-and-wide": half log-uniform in 1..max(16, m), so that the 1-3 spare slots a probed single line
      gets are common, half uniform up to max(64, m). Trained for 16 minutes in session 4: single-line
      unknown length improved (12.2 -> 15.6% exact), the probed single line did not (16.7 -> 15.6%) and
      multi-line fills collapsed (edit similarity 0.262 -> 0.149; 0.319 -> 0.184 even at true length).
    - "short": half log-uniform, half uniform, both in 1..max(16, m): the short runs without the wide half
      (the likelier cause of the collapse: many more pads per example). Trained for 16 minutes in session 5:
      no collapse, but no gain either (single-line probed 15.6%, multi-line 0.253 vs 0.262). Session 20
      grew the shipped model from 8 to 12 layers with it for 18 minutes: the shipped model since then."""
    if layout.spare_draw == "uniform":
        return rng.randint(1, max(16, m))
    if rng.random() < 0.5:
        return int(math.exp(rng.uniform(0.0, math.log(max(16, m) + 1))))
    return rng.randint(1, max(64 if layout.spare_draw == "short-and-wide" else 16, m))


def place_pads(middle: list[int], slots: int, layout: Layout, rng: random.Random) -> list[int]:
    """The hole's clean tokens: the middle and its spare <pad> slots, at the end (the recipe) or, in
    `inner_pad_share` of the examples with spare slots, as one run between two middle tokens.

    Why inside: with a few spare slots the model anchors the middle's last tokens (a line's `;`) against the
    suffix and then has to write text into the gap left of them (`platform;` -> `platform.;`, session 5).
    A model that has seen pad runs inside a middle can fill such a gap with pads, which the text drops
    (the sampler's `inner_pads`). Trained for 15 minutes in session 5 at a share of 0.5: spare slots cost
    more, not less (MODEL_CARD.md, "Training tried in session 5"), so the recipe keeps 0."""
    spare = slots - len(middle)
    if spare <= 0 or len(middle) < 2 or rng.random() >= layout.inner_pad_share:
        return middle + [PAD] * spare
    split = rng.randint(1, len(middle) - 1)  # both ends stay anchored: to the prefix and to the suffix
    return middle[:split] + [PAD] * spare + middle[split:]


def merge_pairs(middle: list[int], rng: random.Random) -> list[int]:
    """The hole's clean tokens for a hole shorter than the middle: k adjacent token pairs each become one
    <expand> slot (k log-uniform in 1..max(1, m // 4), so short by one or two is the common case, as for a
    probed single line), placed uniformly among the m - k slots. The objective always masks <expand>
    slots: the model is asked where a masked slot must hold two tokens, never shown one.

    At inference a slot committed as <expand> becomes two masked slots (DreamOn's expand token), so a fill
    started a few slots short grows to its text instead of squeezing it."""
    m = len(middle)
    k = min(m // 2, max(1, int(math.exp(rng.uniform(0.0, math.log(max(1, m // 4) + 1))))))
    slots = m - k
    merged = set(rng.sample(range(slots), k))
    tokens, at = [], 0
    for slot in range(slots):
        if slot in merged:
            tokens.append(EXPAND)
            at += 2
        else:
            tokens.append(middle[at])
            at += 1
    return tokens


def _fit_middle(tok: Tokenizer, middle: str, suffix: str, limit: int) -> tuple[list[int], list[int]]:
    """Shorten an over-long middle (the cut-off part joins the suffix); returns (middle, suffix) ids."""
    while True:
        cut = middle.rfind("\n", 0, len(middle) // 2 + 1)
        cut = cut + 1 if cut > 0 else len(middle) // 2
        middle, suffix = middle[:cut], middle[cut:] + suffix
        ids = tok.encode(middle, add_special_tokens=False).ids
        if len(ids) <= limit:
            return ids, tok.encode(suffix[:1024], add_special_tokens=False).ids


def pack(
    tok: Tokenizer, pieces: list[tuple[str, str, str]], layout: Layout, rng: random.Random
) -> Batch:
    """Tokenise (prefix, middle, suffix) texts and lay them out as one batch."""
    B, P, C = len(pieces), layout.prefix_tokens, layout.canvas_tokens
    texts = [p[0][-layout.prefix_chars :] for p in pieces]
    texts += [p[1] for p in pieces]
    texts += [p[2][: layout.suffix_chars] for p in pieces]
    ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    prefix = np.full((B, P), PAD, dtype=np.int64)
    canvas = np.full((B, C), PAD, dtype=np.int64)
    hole = np.zeros(B, dtype=np.int64)
    canvas_len = np.zeros(B, dtype=np.int64)
    middle_len = np.zeros(B, dtype=np.int64)
    for b in range(B):
        pre, mid, suf = ids[b], ids[B + b], ids[2 * B + b]
        if len(mid) > layout.middle_tokens:
            mid, suf = _fit_middle(tok, pieces[b][1], pieces[b][2][: layout.suffix_chars], layout.middle_tokens)
        row = [BOS] + pre[-(P - 1) :]
        prefix[b, P - len(row) :] = row
        m = len(mid)
        head = suf[: layout.suffix_tokens]
        if m >= 2 and layout.expand_share and rng.random() < layout.expand_share:
            hole_tokens = merge_pairs(mid, rng)
            S = len(hole_tokens)
        else:
            extra = 0 if rng.random() < layout.true_length_share else spare_slots(m, layout, rng)
            S = max(1, min(m + extra, layout.hole_slots))
            hole_tokens = place_pads(mid, S, layout, rng)
        canvas[b, :S] = hole_tokens
        canvas[b, S : S + len(head)] = head
        hole[b], canvas_len[b], middle_len[b] = S, S + len(head), m
    return Batch(*(torch.from_numpy(a) for a in (prefix, canvas, hole, canvas_len, middle_len)))


class Texts:
    """Source texts of one split, sampled by size within a language and by a fixed language mix."""

    def __init__(self, rows: list[dict], language_weights: dict[str, float]):
        by_lang: dict[str, list[str]] = {}
        for row in rows:
            if len(row["text"]) >= 16:
                by_lang.setdefault(row["lang"], []).append(row["text"])
        self.langs = [lang for lang in language_weights if lang in by_lang]
        self.weights = [language_weights[lang] for lang in self.langs]
        self.texts = [by_lang[lang] for lang in self.langs]
        self.cumulative = [np.cumsum([len(t) for t in texts]) for texts in self.texts]

    def sample(self, rng: random.Random) -> str:
        index = rng.choices(range(len(self.langs)), self.weights)[0]
        cumulative = self.cumulative[index]
        at = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        return self.texts[index][min(at, len(cumulative) - 1)]


def make_batch(tok: Tokenizer, texts: Texts, layout: Layout, batch_size: int, rng: random.Random) -> Batch:
    kinds, weights = list(HOLE_KINDS), list(HOLE_KINDS.values())
    pieces = []
    for _ in range(batch_size):
        text = texts.sample(rng)
        start, end = cut_hole(text, rng.choices(kinds, weights)[0], rng)
        pieces.append((text[max(0, start - layout.prefix_chars) : start], text[start:end], text[end:]))
    return pack(tok, pieces, layout, rng)


class FimStream(IterableDataset):
    """Endless batches; each DataLoader worker has its own seed, so workers never repeat each other."""

    def __init__(self, texts: Texts, tokenizer: Path, layout: Layout, batch_size: int, seed: int):
        self.texts, self.tokenizer, self.layout = texts, tokenizer, layout
        self.batch_size, self.seed = batch_size, seed

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        rng = random.Random(self.seed * 1009 + (info.id if info else 0))
        tok = Tokenizer.from_file(str(self.tokenizer))  # one per worker, built after the fork
        while True:
            yield make_batch(tok, self.texts, self.layout, self.batch_size, rng)


def fixed_batches(tok: Tokenizer, texts: Texts, layout: Layout, batches: int, batch_size: int,
                  seed: int = 1234) -> list[Batch]:
    """The same held-out batches every time (evaluation)."""
    rng = random.Random(seed)
    return [make_batch(tok, texts, layout, batch_size, rng) for _ in range(batches)]
