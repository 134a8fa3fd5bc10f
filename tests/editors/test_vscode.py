"""Real VS Code (code-server) with the packaged extension, driven in Chromium by playwright-core."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .scripted_server import FRAMES
from .support import (
    CODE_SERVER,
    EXTENSION_DIR,
    NODE24,
    PLAYWRIGHT_MODULES,
    SAMPLE,
    Model,
    isolated_env,
    save_docs_image,
    server_executable,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("editor_tools")]

DRIVER = Path(__file__).with_name("vscode_driver.cjs")
SCRIPTED_SERVER = Path(__file__).with_name("scripted_server.py")
LISTENING = re.compile(r"HTTP server listening on (http://127\.0\.0\.1:\d+/)")
CODE_SERVER_START_S = 60
DRIVER_S = 420


# Settings that keep VS Code's own UI (welcome pages, word suggestions, chat) out of the way of Tab.
USER_SETTINGS: dict[str, Any] = {
    "workbench.startupEditor": "none",
    "workbench.welcomePage.walkthroughs.openOnInstall": False,
    "workbench.tips.enabled": False,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "chat.disableAIFeatures": True,
    "security.workspace.trust.enabled": False,
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
    "extensions.ignoreRecommendations": True,
    "git.enabled": False,
    "files.autoSave": "off",
    "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
    "editor.suggestOnTriggerCharacters": False,
    "editor.wordBasedSuggestions": "off",
    "editor.inlineSuggest.enabled": True,
    "editor.fontSize": 15,
}


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> None:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}")


@pytest.fixture(scope="module")
def vsix(editor_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension compiled (TypeScript strict) and packaged with @vscode/vsce, as users get it."""
    out = tmp_path_factory.mktemp("vsix") / "dgem-infill.vsix"
    env = isolated_env(tmp_path_factory.mktemp("npm-home"))
    bin_dir = EXTENSION_DIR / "node_modules" / ".bin"
    run([str(bin_dir / "tsc"), "-p", "."], EXTENSION_DIR, env, 300)
    run(
        [str(bin_dir / "vsce"), "package", "--skip-license", "--allow-missing-repository", "--out", str(out)],
        EXTENSION_DIR,
        env,
        300,
    )
    return out


class CodeServer:
    def __init__(self, process: subprocess.Popen[str], url: str, log: Path):
        self.process = process
        self.url = url
        self.log = log


@pytest.fixture(scope="module")
def code_server(
    vsix: Path, editor_model: Model, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[CodeServer, Path]]:
    home = tmp_path_factory.mktemp("code-server-home")
    workspace = tmp_path_factory.mktemp("workspace")
    (workspace / "shout.py").write_text(SAMPLE)
    env = isolated_env(home, PATH=f"{NODE24.parent}{os.pathsep}{os.environ['PATH']}")
    config = home / "config.yaml"
    config.write_text("bind-addr: 127.0.0.1:0\nauth: none\ncert: false\n")
    user_data, extensions = home / "user-data", home / "extensions"
    settings = dict(
        USER_SETTINGS,
        **{
            "dgemInfill.server.command": str(server_executable()),
            "dgemInfill.device": "cpu",
            "dgemInfill.maxTokens": 16,
        },
    )
    if editor_model.path is not None:
        settings["dgemInfill.model"] = str(editor_model.path)
    (user_data / "User").mkdir(parents=True)
    (user_data / "User" / "settings.json").write_text(json.dumps(settings, indent=2))
    common = [
        str(CODE_SERVER),
        "--config",
        str(config),
        "--user-data-dir",
        str(user_data),
        "--extensions-dir",
        str(extensions),
    ]
    run([*common, "--install-extension", str(vsix)], home, env, 120)

    log = home / "code-server.log"
    process = subprocess.Popen(
        [
            *common,
            "--bind-addr",
            "127.0.0.1:0",
            "--auth",
            "none",
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            "--reconnection-grace-time",
            "5",
            str(workspace),
        ],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = read_listening_url(process, log)
        yield CodeServer(process, f"{url}?folder={workspace}", log), workspace
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def read_listening_url(process: subprocess.Popen[str], log: Path) -> str:
    """code-server's readiness signal: the line naming the port it bound (we asked for port 0).
    The rest of its output keeps flowing to the log file from a background thread."""
    import threading

    assert process.stdout is not None
    seen: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        with log.open("w") as sink:
            for line in process.stdout:
                sink.write(line)
                sink.flush()
                if not found and (match := LISTENING.search(line)):
                    found.append(match.group(1))
                    ready.set()
                seen.append(line)
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(CODE_SERVER_START_S) or not found:
        pytest.fail(f"code-server did not start within {CODE_SERVER_START_S} s:\n{''.join(seen)[-3000:]}")
    return found[0]


@pytest.fixture(scope="module")
def session(code_server: tuple[CodeServer, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One scripted VS Code session (see vscode_driver.cjs); its JSON report plus the saved file."""
    server, workspace = code_server
    from .support import ARTIFACTS

    artifacts = ARTIFACTS / "vscode"
    artifacts.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium should have been installed by scripts/install-editors.sh")
    home = tmp_path_factory.mktemp("chromium-home")
    env = isolated_env(home, CHROMIUM=chromium, NODE_PATH=str(PLAYWRIGHT_MODULES))
    # dgemInfill.server.command names one executable; this one runs the scripted server.
    scripted = home / "dgem-infill-scripted"
    scripted.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SCRIPTED_SERVER}" "$@"\n')
    scripted.chmod(0o755)
    done = subprocess.run(
        [
            str(NODE24),
            str(DRIVER),
            server.url,
            str(workspace / "shout.py"),
            str(artifacts),
            str(scripted),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=DRIVER_S,
    )
    (artifacts / "driver.log").write_text(done.stderr)
    shutil.copyfile(server.log, artifacts / "code-server.log")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    (artifacts / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    report["artifacts"] = artifacts
    report["file"] = (workspace / "shout.py").read_text()
    return report


def no_error(session: dict[str, Any]) -> None:
    if "error" in session:
        pytest.fail(
            f"the VS Code session failed: {session['error']}\n"
            f"status bar: {session.get('statusAtError')}\nsee {session['artifacts']}"
        )


def lines_after_shout(session: dict[str, Any]) -> list[str]:
    """The lines after `def shout`: the accepted infill, then the accept-word step's line."""
    lines = session["file"].split("def shout(text):\n", 1)[1].split("\n")
    word_line = next(
        i for i, line in enumerate(lines) if line.strip().startswith(session["typedForWord"].strip())
    )
    return lines[: word_line + 1]


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_typing_shows_ghost_text_and_tab_saves_it_to_disk(
    session: dict[str, Any], editor_model: Model
) -> None:
    no_error(session)
    ghost, typed = session["ghost"], session["typed"]
    assert ghost.strip(), "no ghost text was shown"
    save_docs_image(session["artifacts"] / "vscode-ghost-text.png", "vscode.png", editor_model)
    # After `def shout` come the accepted infill, then the line of the accept-word step.
    accepted = "\n".join(lines_after_shout(session)[:-1])
    assert accepted.startswith(typed)
    assert squeeze(accepted[len(typed) :]) == squeeze(ghost)


def test_status_bar_reports_ready_and_the_last_latency(session: dict[str, Any]) -> None:
    no_error(session)
    assert re.fullmatch(r"\S*\s*dgem( \d+ ms)?", session["readyStatus"])
    assert re.search(r"dgem \d+ ms", session["statusAfterInfill"])
    # starting -> loading (the server's $/progress while the model loads) -> ready -> busy -> ready with latency
    series = session["statusSeries"]
    assert any("dgem: loading" in status for status in series), series
    assert any("dgem: busy" in status for status in series), series


def test_rewrite_of_a_selection_is_previewed_then_applied_on_tab(session: dict[str, Any]) -> None:
    no_error(session)
    preview = session["rewritePreview"]
    assert preview, "no rewrite preview was shown"
    lines = session["file"].split("\n")
    new_text = " ⏎ ".join(preview).split(" ⏎ ")
    assert lines[0] == "def mean(values):"
    # Line 2 was "    total = 0"; its text after the indentation was selected and replaced.
    assert squeeze("\n".join(lines[1 : 1 + len(new_text)])) == squeeze("\n".join(new_text))
    assert "    for value in values:" in lines


def test_alt_bracket_shows_a_one_line_alternative_on_a_blank_line(session: dict[str, Any]) -> None:
    no_error(session)
    # Alt+\ on a blank line asks with alternatives: the block first, a one-line fill among the others
    assert session["blankFirst"].strip() and session["blankNext"] != session["blankFirst"]
    assert "\n" not in session["blankNext"].strip()


def test_ghost_text_is_redrawn_as_refinements_stream_in(session: dict[str, Any]) -> None:
    no_error(session)
    # The real model: the last text drawn is the answer (how many steps it shows depends on its speed).
    assert session["ghostSeries"] and session["ghostSeries"][-1] == session["ghost"]
    # The scripted server's refinements come 0.25 s apart: each is drawn, in order.
    assert session["scriptedSeries"] == FRAMES


def test_ctrl_right_accepts_one_word_and_keeps_the_rest(session: dict[str, Any]) -> None:
    no_error(session)
    assert session["ghostBeforeWord"] == "return a + b"
    assert session["ghostAfterWord"]["ghost"] == " a + b"
    assert lines_after_shout(session)[-1] == "    total = return"


def test_toggle_turns_ghost_text_off_and_alt_backslash_asks_again(session: dict[str, Any]) -> None:
    no_error(session)
    assert "dgem: off" in session["statusWhenOff"]
    assert session["ghostWhileOff"].strip() == ""
    assert session["ghostOnTrigger"] == FRAMES[-1]


def test_a_missing_server_is_reported_with_the_setting_that_fixes_it(session: dict[str, Any]) -> None:
    no_error(session)
    message = session["missingServerMessage"]
    assert "dgem-infill-not-installed" in message and "was not found" in message
    assert "pip install dgem-infill" in message and "dgemInfill.server.command" in message
    assert "error" in session["statusWhenMissing"]
