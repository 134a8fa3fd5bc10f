"""A terminal screen captured with `tmux capture-pane -p -e`: text and colours per cell, and a PNG of it.

Only the SGR escapes tmux emits are understood (colours, bold, italic, underline, reverse).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

SGR = re.compile(r"\x1b\[([0-9;:]*)m")
OTHER_ESCAPE = re.compile(r"\x1b[\[\]][0-9;:?]*[A-Za-z]")

# xterm's 16 colours, then the 6x6x6 cube and the grey ramp of the 256-colour palette.
BASE16 = [
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205), (0, 205, 205), (229, 229, 229),
    (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0), (92, 92, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255),
]  # fmt: skip
DEFAULT_FG = (220, 220, 220)
DEFAULT_BG = (24, 24, 24)

Color = int | tuple[int, int, int] | None  # palette index, RGB, or the terminal's default


def palette(index: int) -> tuple[int, int, int]:
    if index < 16:
        return BASE16[index]
    if index < 232:
        index -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return steps[index // 36], steps[(index // 6) % 6], steps[index % 6]
    grey = 8 + 10 * (index - 232)
    return grey, grey, grey


@dataclass(frozen=True)
class Style:
    fg: Color = None
    bg: Color = None
    bold: bool = False
    italic: bool = False
    underline: bool = False
    reverse: bool = False


@dataclass
class Screen:
    rows: list[list[tuple[str, Style]]] = field(default_factory=list)

    def text(self, row: int) -> str:
        return "".join(char for char, _ in self.rows[row]).rstrip()

    def lines(self) -> list[str]:
        return [self.text(row) for row in range(len(self.rows))]

    def colored(self, row: int, fg: int) -> str:
        """The characters of `row` drawn in palette colour `fg` (for example ghost text)."""
        return "".join(char for char, style in self.rows[row] if style.fg == fg)

    def rows_with(self, fg: int) -> list[int]:
        return [row for row in range(len(self.rows)) if self.colored(row, fg).strip()]


def _apply(style: Style, params: str) -> Style:
    codes = [int(code) if code else 0 for code in re.split(r"[;:]", params)] if params else [0]
    i = 0
    while i < len(codes):
        code = codes[i]
        if code == 0:
            style = Style()
        elif code in (1, 3, 4, 7):
            style = replace(style, **{{1: "bold", 3: "italic", 4: "underline", 7: "reverse"}[code]: True})
        elif code in (22, 23, 24, 27):
            style = replace(
                style, **{{22: "bold", 23: "italic", 24: "underline", 27: "reverse"}[code]: False}
            )
        elif 30 <= code <= 37 or 90 <= code <= 97:
            style = replace(style, fg=code - 30 if code < 90 else code - 82)
        elif 40 <= code <= 47 or 100 <= code <= 107:
            style = replace(style, bg=code - 40 if code < 100 else code - 92)
        elif code in (39, 49):
            style = replace(style, **{"fg" if code == 39 else "bg": None})
        elif code in (38, 48) and i + 1 < len(codes):
            target = "fg" if code == 38 else "bg"
            if codes[i + 1] == 5 and i + 2 < len(codes):
                style = replace(style, **{target: codes[i + 2]})
                i += 2
            elif codes[i + 1] == 2 and i + 4 < len(codes):
                style = replace(style, **{target: (codes[i + 2], codes[i + 3], codes[i + 4])})
                i += 4
        i += 1
    return style


def parse(capture: str) -> Screen:
    screen = Screen()
    style = Style()
    for line in capture.split("\n"):
        row: list[tuple[str, Style]] = []
        position = 0
        for match in SGR.finditer(line):
            text = OTHER_ESCAPE.sub("", line[position : match.start()])
            row += [(char, style) for char in text]
            style = _apply(style, match.group(1))
            position = match.end()
        row += [(char, style) for char in OTHER_ESCAPE.sub("", line[position:])]
        screen.rows.append(row)
    while screen.rows and not screen.rows[-1]:
        screen.rows.pop()
    return screen


def _rgb(color: Color, default: tuple[int, int, int]) -> tuple[int, int, int]:
    if color is None:
        return default
    return palette(color) if isinstance(color, int) else color


def save_png(screen: Screen, path: Path, columns: int, font_size: int = 16) -> None:
    """Draws the screen cell by cell with the DejaVu Sans Mono font that matplotlib ships."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    regular = ImageFont.truetype(str(font_dir / "DejaVuSansMono.ttf"), font_size)
    bold = ImageFont.truetype(str(font_dir / "DejaVuSansMono-Bold.ttf"), font_size)
    cell_w = round(regular.getlength("M"))
    cell_h = round(font_size * 1.35)
    pad = 12
    image = Image.new("RGB", (2 * pad + columns * cell_w, 2 * pad + len(screen.rows) * cell_h), DEFAULT_BG)
    draw = ImageDraw.Draw(image)
    for y, row in enumerate(screen.rows):
        for x, (char, style) in enumerate(row[:columns]):
            fg, bg = _rgb(style.fg, DEFAULT_FG), _rgb(style.bg, DEFAULT_BG)
            if style.reverse:
                fg, bg = bg, fg
            left, top = pad + x * cell_w, pad + y * cell_h
            if bg != DEFAULT_BG:
                draw.rectangle([left, top, left + cell_w - 1, top + cell_h - 1], fill=bg)
            if char.strip():
                draw.text((left, top + 2), char, font=bold if style.bold else regular, fill=fg)
            if style.underline:
                draw.line([left, top + cell_h - 2, left + cell_w, top + cell_h - 2], fill=fg)
    image.save(path)
