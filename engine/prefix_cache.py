"""Prefix KV caches per document, reused across calls (like llama.cpp's prompt cache).

The prefix pass is causal, so the keys/values of an unchanged leading part of a document stay valid:
on an edit, keep the cache up to the first changed token and encode only the tokens after it.

Beside it, a document may keep the suffix head of its last fill (see KeptSuffixHead).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from engine.backends import Backend, PrefixKV, TailCache


@dataclass
class CacheStats:
    tokens_encoded: int = 0
    tokens_reused: int = 0


@dataclass(frozen=True)
class KeptSuffixHead:
    """The suffix head's keys from a document's last length probe: while the user types before an
    unchanged suffix, the next probe can turn them to their new positions instead of running the head
    again (they lag the edit: an approximation, measured in MODEL_CARD.md)."""

    suffix: tuple[int, ...]
    slots: int
    prefix_length: int
    tail: TailCache


@dataclass
class _Entry:
    cache: PrefixKV
    ids: list[int] = field(default_factory=list)
    suffix_head: KeptSuffixHead | None = None


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """Least-recently-used caches, one per document key; memory stays bounded by `max_documents`."""

    def __init__(self, backend: Backend, max_documents: int = 4):
        self.backend = backend
        self.max_documents = max_documents
        self.stats = CacheStats()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def sync(self, key: str, ids: list[int]) -> PrefixKV:
        """Make the cache of `key` hold exactly `ids`, encoding only what changed."""
        entry = self._entries.pop(key, None) or _Entry(self.backend.new_cache())
        self._entries[key] = entry
        while len(self._entries) > self.max_documents:
            self._entries.popitem(last=False)
        keep = common_prefix_length(entry.ids, ids)
        entry.cache.truncate(keep)
        if keep < len(ids):
            self.backend.extend(entry.cache, torch.tensor(ids[keep:], dtype=torch.long), keep)
        entry.ids = list(ids)
        self.stats.tokens_reused += keep
        self.stats.tokens_encoded += len(ids) - keep
        return entry.cache

    def append(self, key: str, ids: list[int]) -> PrefixKV:
        """Extend `key`'s cache by a finished block of a long fill."""
        return self.sync(key, self._entries[key].ids + ids)

    def suffix_head(self, key: str) -> KeptSuffixHead | None:
        entry = self._entries.get(key)
        return entry.suffix_head if entry is not None else None

    def keep_suffix_head(self, key: str, kept: KeptSuffixHead) -> None:
        if key in self._entries:
            self._entries[key].suffix_head = kept

    def clear(self) -> None:
        self._entries.clear()
