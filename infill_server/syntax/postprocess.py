"""Turn a model's raw fill into the ghost text to show: the filters, in order.

Order matters: indentation first (the scope cut measures indentation), then the scope cut (so later
filters see only what will be shown), then the suffix overlap (exact repetitions), then brackets
(closers the overlap rule could not see as repetitions), and last the layout before an auto-paired
closer (it adds the whitespace the others would strip).
"""

from __future__ import annotations

from .context import Context
from .filters.auto_pair import end_before_auto_paired_closer
from .filters.brackets import balance_brackets
from .filters.indentation import fit_indentation
from .filters.scope import cut_to_scope
from .filters.suffix_overlap import drop_suffix_overlap
from .hole import Filter, Hole

FILTERS: tuple[Filter, ...] = (
    fit_indentation,
    cut_to_scope,
    drop_suffix_overlap,
    balance_brackets,
    end_before_auto_paired_closer,
)


def postprocess(completion: str, prefix: str, suffix: str, context: Context) -> str:
    """Ghost text for `completion` between `prefix` and `suffix`; "" when nothing useful is left."""
    hole = Hole.around(prefix, suffix, context)
    text = completion.replace("\r\n", "\n")
    for keep in FILTERS:
        text = keep(text, hole)
        if not text.strip():
            return ""
    return text
