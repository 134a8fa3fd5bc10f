"""Neovim 0.7 with the plugin, under tmux: what the user sees on screen and what ends up in the file."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .scripted_server import FRAMES
from .support import (
    NVIM_PLUGIN_DIR,
    SAMPLE,
    Model,
    isolated_env,
    save_docs_image,
    server_executable,
    wait_until,
)
from .terminal import Screen, parse, save_png

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("editor_tools")]

SCRIPTED_SERVER = Path(__file__).with_name("scripted_server.py")
COLUMNS, ROWS = 100, 16
GHOST = 244  # the palette colour the test's init.lua gives DgemInfillGhost, so ghost text is recognisable
SERVER_START_S = 120  # importing torch and loading the model on a busy CI machine
INFILL_S = 60
FINISHED = re.compile(r"dgem \d+ ms")  # the plugin's status once a request has answered


INIT_LUA = """
vim.opt.runtimepath:prepend({plugin})
vim.opt.swapfile = false
vim.opt.shadafile = "NONE"
vim.opt.termguicolors = false
vim.opt.laststatus = 2
require("dgem_infill").setup{{ cmd = {cmd}, settings = {{ max_tokens = 16, device = "cpu" }} }}
vim.cmd("highlight DgemInfillGhost ctermfg={ghost}")
vim.o.statusline = " %t %m%=%{{v:lua.require'dgem_infill'.status()}}  %l:%c "
-- The readiness signal: the server has seen didOpen for this buffer.
vim.api.nvim_create_autocmd("User", {{
  pattern = "DgemInfillAttached",
  callback = function()
    local marker = io.open({marker} .. vim.fn.fnamemodify(vim.api.nvim_buf_get_name(0), ":t"), "w")
    marker:write("attached")
    marker:close()
  end,
}})
"""


def lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Tmux:
    """One tmux server on its own socket, running one window."""

    def __init__(self, socket: Path, env: dict[str, str]):
        self.socket = socket
        self.env = env

    def run(self, *args: str) -> str:
        command = ["tmux", "-S", str(self.socket), "-f", "/dev/null", *args]
        return subprocess.run(command, env=self.env, check=True, capture_output=True, text=True).stdout

    def start(self, command: list[str]) -> None:
        self.run("new-session", "-d", "-x", str(COLUMNS), "-y", str(ROWS), "--", *command)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", *keys)

    def type(self, text: str) -> None:
        self.run("send-keys", "-l", text)

    def screen(self) -> Screen:
        return parse(self.run("capture-pane", "-p", "-e"))

    def close(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], env=self.env, capture_output=True)


class Neovim:
    def __init__(self, tmux: Tmux, folder: Path):
        self.tmux = tmux
        self.folder = folder

    def open(self, name: str, text: str) -> Path:
        """Opens a new file and waits until the plugin has attached the server to it."""
        path = self.folder / name
        path.write_text(text)
        self.normal_mode()
        self.tmux.type(f":edit {path}")
        self.tmux.keys("Enter")
        marker = self.folder / f"attached-{name}"
        wait_until(
            marker.exists, SERVER_START_S, f"the plugin to attach the server to {name}", explain=self.dump
        )
        return path

    def dump(self) -> str:
        return "screen:\n" + "\n".join(self.tmux.screen().lines())

    def ghost(self) -> Screen:
        """The screen once the infill has finished streaming (the status line shows its latency)."""
        return wait_until(
            lambda: (
                (screen := self.tmux.screen()).rows_with(GHOST)
                and FINISHED.search(screen.text(ROWS - 2))
                and screen
            ),
            INFILL_S,
            "ghost text on screen",
            explain=self.dump,
        )

    def normal_mode(self) -> None:
        """Esc, then wait for the mode line to clear: an Esc followed at once by ':' would read as Alt-:."""
        self.tmux.keys("Escape")
        wait_until(
            lambda: (
                not any("-- INSERT --" in line or "-- VISUAL" in line for line in self.tmux.screen().lines())
            ),
            10,
            "normal mode",
            explain=self.dump,
        )

    def save(self) -> None:
        self.normal_mode()
        self.tmux.type(":write")
        self.tmux.keys("Enter")
        # Neovim says '"name" 9L, 210B written' when the file is complete; a read before that can see it
        # half-written (empty), which differs from the original and passed for the saved text.
        wait_until(
            lambda: any(line.rstrip().endswith("written") for line in self.tmux.screen().lines()),
            10,
            "Neovim to finish writing the file",
        )


def start_neovim(cmd: list[str], tmp_path_factory: pytest.TempPathFactory) -> Neovim:
    if shutil.which("nvim") is None or shutil.which("tmux") is None:
        pytest.fail("nvim and tmux should have been installed by scripts/install-editors.sh")
    home = tmp_path_factory.mktemp("nvim-home")
    folder = tmp_path_factory.mktemp("nvim-files")
    init = home / "init.lua"
    init.write_text(
        INIT_LUA.format(
            plugin=lua_string(str(NVIM_PLUGIN_DIR)),
            cmd="{ " + ", ".join(lua_string(part) for part in cmd) + " }",
            ghost=GHOST,
            marker=lua_string(str(folder / "attached-")),
        )
    )
    env = isolated_env(home, TERM="xterm-256color", TMUX_TMPDIR=str(home / "runtime"))
    env.pop("TMUX", None)
    tmux = Tmux(home / "runtime" / "tmux.sock", env)
    tmux.start(["nvim", "-u", str(init), "-i", "NONE"])
    return Neovim(tmux, folder)


@pytest.fixture(scope="module")
def nvim(
    editor_tools: None, editor_model: Model, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Neovim]:
    """Neovim with the plugin and the real server."""
    editor = start_neovim([str(server_executable()), *editor_model.cli_args, "--stdio"], tmp_path_factory)
    try:
        yield editor
    finally:
        editor.tmux.close()


@pytest.fixture(scope="module")
def scripted_nvim(editor_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neovim]:
    """Neovim with the plugin and scripted_server.py: fixed refinements, 0.25 s apart."""
    editor = start_neovim([sys.executable, str(SCRIPTED_SERVER)], tmp_path_factory)
    try:
        yield editor
    finally:
        editor.tmux.close()


def ghost_block(screen: Screen, row: int) -> list[str]:
    """The screen rows from `row` down to the last one holding ghost text, as the file will read."""
    last = max(r for r in screen.rows_with(GHOST) if r >= row)
    return [screen.text(r) for r in range(row, last + 1)]


def test_typing_shows_ghost_text_and_tab_inserts_what_was_shown(
    nvim: Neovim, editor_model: Model, artifacts: Path
) -> None:
    path = nvim.open("shout.py", SAMPLE)
    nvim.tmux.keys("G", "A", "Enter")
    nvim.tmux.type("return text.up")

    screen = nvim.ghost()
    row = next(r for r in screen.rows_with(GHOST))
    assert screen.text(row).startswith("    return text.up"), screen.lines()
    shown = ghost_block(screen, row)
    save_png(screen, artifacts / "neovim-ghost-text.png", COLUMNS)
    save_docs_image(artifacts / "neovim-ghost-text.png", "neovim.png", editor_model)

    nvim.tmux.keys("Tab")
    wait_until(lambda: not nvim.tmux.screen().rows_with(GHOST), INFILL_S, "the ghost text to be accepted")
    nvim.save()
    lines = wait_until(
        lambda: (text := path.read_text()) != SAMPLE and text.split("\n"), 10, "the file to be written"
    )
    assert [line.rstrip() for line in lines[row : row + len(shown)]] == shown


def test_tab_without_ghost_text_inserts_a_tab(nvim: Neovim) -> None:
    path = nvim.open("indent.py", "x = 1\n")
    # Tab comes in the same burst as `o`, before any infill could answer: it must keep its own meaning.
    nvim.tmux.keys("o", "Tab", "y", "Escape")
    nvim.save()
    line = wait_until(lambda: path.read_text().split("\n")[1], 10, "the file to be written")
    assert line.endswith("y") and line[:-1] and not line[:-1].strip(), repr(line)


def test_escape_dismisses_the_ghost_text(nvim: Neovim) -> None:
    nvim.open("dismiss.py", SAMPLE)
    nvim.tmux.keys("G", "A", "Enter")
    nvim.tmux.type("return text.")
    nvim.ghost()
    nvim.tmux.keys("Escape")
    wait_until(lambda: not nvim.tmux.screen().rows_with(GHOST), 10, "Esc to remove the ghost text")


def test_dgem_rewrite_previews_a_selection_and_tab_applies_it(nvim: Neovim, artifacts: Path) -> None:
    path = nvim.open("rewrite.py", SAMPLE)
    # Line 2 ("    total = 0"), selected linewise.
    nvim.tmux.keys("2", "G", "V")
    nvim.tmux.type(":DgemRewrite")
    nvim.tmux.keys("Enter")
    screen = wait_until(
        lambda: (s := nvim.tmux.screen()) and any("<Tab> accept" in line for line in s.lines()) and s,
        INFILL_S,
        "the rewrite preview to finish",
    )
    save_png(screen, artifacts / "neovim-rewrite.png", COLUMNS)
    hint_row = next(r for r, line in enumerate(screen.lines()) if "<Tab> accept" in line)
    preview = [screen.text(r) for r in range(2, hint_row)]  # screen row 1 is line 2, the preview follows it
    nvim.tmux.keys("Tab")
    wait_until(
        lambda: not any("<Tab> accept" in line for line in nvim.tmux.screen().lines()),
        30,
        "the rewrite to apply",
    )
    nvim.save()
    before = SAMPLE.split("\n")
    after = wait_until(
        lambda: (text := path.read_text()) != SAMPLE and text.split("\n"), 10, "the rewritten file"
    )
    # Only line 2 changed: the lines around it are as they were.
    assert after[0] == before[0] and after[-len(before[2:]) :] == before[2:]
    assert [line.rstrip() for line in after[1 : 1 + len(preview)]] == preview


@pytest.mark.parametrize(
    ("key", "what"),
    [("M-Right", "word"), ("C-M-Right", "line")],
    ids=["alt-right-word", "ctrl-alt-right-line"],
)
def test_partial_accept_inserts_the_start_of_the_ghost_text(nvim: Neovim, key: str, what: str) -> None:
    typed = "    return text.up"
    path = nvim.open(f"partial-{what}.py", SAMPLE)
    nvim.tmux.keys("G", "A", "Enter")
    nvim.tmux.type(typed.strip())
    screen = nvim.ghost()
    row = screen.rows_with(GHOST)[0]
    ghost_first_line = screen.colored(row, GHOST)
    nvim.tmux.keys(key)
    wait_until(
        lambda: nvim.tmux.screen().colored(row, GHOST) != ghost_first_line, 10, f"{key} to take a {what}"
    )
    nvim.save()
    line = wait_until(
        lambda: (text := path.read_text()) != SAMPLE and text.split("\n")[row], 10, "the saved file"
    )
    taken = line[len(typed) :]
    assert line.startswith(typed) and taken, line
    assert ghost_first_line.startswith(taken)
    if what == "line":
        assert taken == ghost_first_line.rstrip()


BLANK_LINE_SAMPLE = (
    "import os\n\n\ndef read_config(path):\n    if not os.path.exists(path):\n        return {}\n"
    "\n    return json.loads(text)\n"
)


def test_asking_on_a_blank_line_offers_a_one_line_alternative_that_tab_inserts(nvim: Neovim) -> None:
    path = nvim.open("alternatives.py", BLANK_LINE_SAMPLE)
    row = 6  # the blank line inside read_config
    nvim.tmux.keys(str(row + 1), "G", "i")
    nvim.tmux.keys("M-\\")  # keys.trigger: an invoked request, which gets alternatives
    first = ghost_block(nvim.ghost(), row)

    def one_line_shown() -> str | None:
        screen = nvim.tmux.screen()
        rows = [r for r in screen.rows_with(GHOST) if r >= row]
        text = screen.text(row)
        return text if rows == [row] and (len(first) > 1 or text != first[0]) else None

    nvim.tmux.keys("M-]")  # keys.next
    line = wait_until(one_line_shown, 10, "M-] to show the one-line alternative", explain=nvim.dump)
    nvim.tmux.keys("Tab")
    wait_until(lambda: not nvim.tmux.screen().rows_with(GHOST), 10, "the alternative to be accepted")
    nvim.save()
    lines = wait_until(
        lambda: (text := path.read_text()) != BLANK_LINE_SAMPLE and text.split("\n"), 10, "the saved file"
    )
    assert lines[row].rstrip() == line.rstrip() and line.strip(), (first, lines)
    assert lines[row + 1] == "    return json.loads(text)"


def test_a_missing_server_is_reported_with_the_fix(editor_tools: None, tmp_path: Path) -> None:
    init = tmp_path / "init.lua"
    init.write_text(
        f"vim.opt.runtimepath:prepend({lua_string(str(NVIM_PLUGIN_DIR))})\n"
        'require("dgem_infill").setup{ cmd = { "dgem-infill-not-installed", "--stdio" } }\n'
    )
    (tmp_path / "a.py").write_text("x = 1\n")
    done = subprocess.run(
        ["nvim", "--headless", "-u", str(init), "-i", "NONE", "a.py", "+DgemStatus", "+qall!"],
        cwd=tmp_path,
        env=isolated_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = done.stdout + done.stderr
    assert '"dgem-infill-not-installed" was not found' in said and "pip install dgem-infill" in said, said
    assert "dgem: error" in said


def test_every_refinement_is_drawn_in_turn(scripted_nvim: Neovim) -> None:
    scripted_nvim.open("stream.py", SAMPLE)
    scripted_nvim.tmux.keys("G", "A", "Enter")
    scripted_nvim.tmux.type("total = ")
    drawn: list[str] = []

    def final_frame_drawn() -> bool:
        # The frames are 0.25 s apart; a capture every 50 ms sees each of them.
        screen = scripted_nvim.tmux.screen()
        rows = screen.rows_with(GHOST)
        text = screen.colored(rows[0], GHOST) if rows else ""
        if text and (not drawn or drawn[-1] != text):
            drawn.append(text)
        return text == FRAMES[-1]

    wait_until(final_frame_drawn, INFILL_S, "the last scripted refinement", explain=scripted_nvim.dump)
    assert drawn == FRAMES


def type_until_scripted_ghost_text(nvim: Neovim, typed: str) -> int:
    """On a new last line, type `typed` and wait for the scripted server's last frame; its screen row."""
    nvim.tmux.keys("G", "A", "Enter")
    nvim.tmux.type(typed)
    screen = wait_until(
        lambda: (
            (s := nvim.tmux.screen()).rows_with(GHOST)
            and FRAMES[-1] in s.colored(s.rows_with(GHOST)[0], GHOST)
            and s
        ),
        INFILL_S,
        "the scripted infill",
    )
    return screen.rows_with(GHOST)[0]


def test_accepting_a_word_keeps_the_rest_of_the_ghost_text(scripted_nvim: Neovim) -> None:
    path = scripted_nvim.open("word.py", SAMPLE)
    row = type_until_scripted_ghost_text(scripted_nvim, "total = ")
    scripted_nvim.tmux.keys("M-Right")
    wait_until(
        lambda: scripted_nvim.tmux.screen().colored(row, GHOST) == " a + b", 10, "the rest after one word"
    )
    scripted_nvim.tmux.keys("C-M-Right")
    wait_until(
        lambda: not scripted_nvim.tmux.screen().rows_with(GHOST), 10, "the rest of the line to be taken"
    )
    scripted_nvim.save()
    text = wait_until(lambda: (t := path.read_text()) != SAMPLE and t, 10, "the saved file")
    assert text.split("\n")[row] == "    total = return a + b"


def test_typing_the_start_of_the_ghost_text_keeps_the_rest(scripted_nvim: Neovim) -> None:
    path = scripted_nvim.open("through.py", SAMPLE)
    row = type_until_scripted_ghost_text(scripted_nvim, "total = ")
    # A new request would start the scripted frames again ("r___"); typing through must not send one.
    scripted_nvim.tmux.type("ret")
    wait_until(
        lambda: scripted_nvim.tmux.screen().colored(row, GHOST) == "urn a + b", 10, "the rest after typing"
    )
    scripted_nvim.tmux.keys("Tab")
    scripted_nvim.save()
    text = wait_until(lambda: (t := path.read_text()) != SAMPLE and t, 10, "the saved file")
    assert text.split("\n")[row] == "    total = return a + b"
