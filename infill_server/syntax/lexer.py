"""A bracket scanner that skips strings and comments.

Tree-sitter's error recovery is poor exactly where a cursor usually is (an unterminated string, an
unclosed call), and the filters see fragments (a completion, the head of a suffix) that do not parse on
their own. This scanner is the robust fallback: it only knows each language's comment and string
delimiters. Known blind spots, accepted: JavaScript regex literals, string interpolation contents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .text import CLOSERS, MATCHING, OPENERS, leading_ws, width

_C_LIKE = [r"//", r"/\*"]
_STARTS: dict[str | None, list[str]] = {
    "python": [r"#", r'"""', r"'''", r'"', r"'"],
    "javascript": [*_C_LIKE, r'"', r"'", r"`"],
    "typescript": [*_C_LIKE, r'"', r"'", r"`"],
    "tsx": [*_C_LIKE, r'"', r"'", r"`"],
    "go": [*_C_LIKE, r'"', r"'", r"`"],
    "rust": [*_C_LIKE, r"\br#*\"", r'"', r"'"],
    None: [],
}
_TOKEN = {lang: re.compile("|".join([r"[()\[\]{}]", *starts])) for lang, starts in _STARTS.items()}
_RUST_CHAR = re.compile(r"'(?:\\[^']{1,10}|[^\\'\n])'")


@dataclass(frozen=True)
class Bracket:
    char: str
    pos: int  # index in the scanned text
    indent: int  # columns of indentation of the bracket's line
    starts_line: bool  # nothing but whitespace before it on its line


@dataclass
class Scan:
    events: list[Bracket] = field(default_factory=list)  # every bracket in code, in order
    open: list[Bracket] = field(default_factory=list)  # unclosed openers, outermost first
    stray: list[Bracket] = field(default_factory=list)  # closers with no opener in the text, in order
    inside: bool = False  # the text ends inside a string or comment


def _string_end(text: str, pos: int, quote: str, multiline: bool, escapes: bool) -> int:
    """Index just past the closing quote; -1 when the text ends inside the string.

    A one-line string left open at a line end stops there, so one stray quote cannot swallow the file.
    """
    stops = re.compile(re.escape(quote) + ("|\\\\" if escapes else "") + ("" if multiline else "|\n"))
    while True:
        m = stops.search(text, pos)
        if m is None:
            return -1
        if m.group() == "\n":
            return m.start()
        if m.group() == "\\":
            pos = m.end() + 1
            continue
        return m.end()


def _skip(text: str, m: re.Match[str], language: str | None) -> int:
    """For a string or comment opening at m, the index after it; -1 if the text ends inside it."""
    tok = m.group()
    if tok in ("#", "//"):
        end = text.find("\n", m.end())
        return -1 if end == -1 else end
    if tok == "/*":
        end = text.find("*/", m.end())
        return -1 if end == -1 else end + 2
    if tok.startswith("r"):  # Rust raw string r#"..."#
        end = text.find('"' + "#" * (len(tok) - 2), m.end())
        return -1 if end == -1 else end + len(tok) - 1
    if tok == "'" and language == "rust":
        char = _RUST_CHAR.match(text, m.start())
        return char.end() if char else m.end()  # not a char literal: a lifetime's quote
    multiline = len(tok) == 3 or tok == "`" or (tok == '"' and language == "rust")
    escapes = not (tok == "`" and language == "go")
    return _string_end(text, m.end(), tok, multiline, escapes)


def scan(text: str, language: str | None, start: int = 0, max_stray: int | None = None) -> Scan:
    """Brackets of text[start:], outside strings and comments.

    Line facts (indent, starts_line) are read from the whole text, so a caller can pass the cursor's
    line before `start` to give the first scanned line its true indentation. With max_stray, the scan
    stops after that many stray closers (a suffix is only read up to what closes the prefix).
    """
    result = Scan()
    if max_stray == 0:
        return result
    token = _TOKEN.get(language, _TOKEN[None])
    pos = start
    line_indent: dict[int, int] = {}  # line start -> indentation width, computed once a line
    while (m := token.search(text, pos)) is not None:
        ch = m.group()
        if ch not in OPENERS and ch not in CLOSERS:
            pos = _skip(text, m, language)
            if pos == -1:
                result.inside = True
                break
            continue
        pos = m.end()
        line_start = text.rfind("\n", 0, m.start()) + 1
        if line_start not in line_indent:
            line_indent[line_start] = width(leading_ws(text[line_start : m.start()]))
        starts_line = not text[line_start : m.start()].strip()
        bracket = Bracket(ch, m.start(), line_indent[line_start], starts_line)
        result.events.append(bracket)
        if ch in OPENERS:
            result.open.append(bracket)
            continue
        # A closer pops down to its opener; openers it skips were left unclosed by broken code.
        for depth in range(len(result.open) - 1, -1, -1):
            if result.open[depth].char == MATCHING[ch]:
                del result.open[depth:]
                break
        else:
            if not result.open:
                result.stray.append(bracket)
                if max_stray is not None and len(result.stray) >= max_stray:
                    break
    return result
