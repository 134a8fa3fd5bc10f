"""The syntax layer: pure functions over text, no model and no LSP.

- languages.py   canonical language ids, `language_for`, one cached tree-sitter parser per language
- window.py      parse only a window of lines around the cursor in large documents
- lexer.py       bracket scanner that skips strings and comments (tree-sitter's fallback)
- text.py        line and indentation helpers
- context.py     `analyze`: the node at the cursor -> `Mode`, hole size, indentation; `one_statement`
- hole.py        what the filters know about the hole
- postprocess.py `postprocess`: the filters in order
- errors.py      `syntax_errors`, `fill_errors`: what a fill would break, for the engine's choice among sizes
- recall.py      `recalled_fills`: what followed the same text elsewhere in the document, for that choice too
- words.py       `word_completion`: when a fill finishes the cursor's word into one no document spells
- filters/       one post-processing rule per module
"""

from .context import Context, Mode, Reason, analyze, one_statement
from .errors import fill_errors, syntax_errors
from .languages import LANGUAGES, language_for
from .postprocess import FILTERS, postprocess
from .recall import recalled_fills
from .words import word_completion

__all__ = ["FILTERS", "LANGUAGES", "Context", "Mode", "Reason", "analyze", "fill_errors", "language_for", "one_statement",
           "postprocess", "recalled_fills", "syntax_errors", "word_completion"]
