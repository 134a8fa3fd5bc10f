"""Golden cases for the post-processing filters, read from Markdown files in golden/.

One file per filter (golden/<filter module>.md). Each case is a `## title` followed by two fences:

    ```model            the raw model output, exactly
    ```<language>       the document with the expected ghost text between ├ and ┤

The document the model saw is the fence with ├…┤ (and everything between) removed; the cursor is
at ├. Fence contents exclude the newline before the closing fence. Languages: python, javascript,
typescript, tsx, go, rust, or text (no language).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "golden"
CURSOR, GHOST_END = "├", "┤"
_FENCE = re.compile(r"^```(\w+)\n(.*?)\n?^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class GoldenCase:
    filter: str
    title: str
    language: str | None
    model: str
    document: str
    offset: int
    ghost: str

    @property
    def id(self) -> str:
        return f"{self.filter}: {self.title}"


def _case(filter_name: str, section: str) -> GoldenCase:
    title, _, body = section.partition("\n")
    fences = _FENCE.findall(body)
    assert len(fences) == 2 and fences[0][0] == "model", (
        f"{filter_name}: {title!r} needs a model fence then a document fence"
    )
    (_, model), (language, marked) = fences
    assert marked.count(CURSOR) == 1 and marked.count(GHOST_END) == 1, (
        f"{title!r}: mark the hole once with ├…┤"
    )
    start, end = marked.index(CURSOR), marked.index(GHOST_END)
    return GoldenCase(
        filter=filter_name,
        title=title.strip(),
        language=None if language == "text" else language,
        model=model,
        document=marked[:start] + marked[end + 1 :],
        offset=start,
        ghost=marked[start + 1 : end],
    )


def load(path: Path) -> list[GoldenCase]:
    sections = re.split(r"^## ", path.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]
    return [_case(path.stem, section) for section in sections]


def all_cases() -> list[GoldenCase]:
    return [case for path in sorted(GOLDEN_DIR.glob("*.md")) for case in load(path)]
