"""The editor clients use exactly the protocol names declared in infill_server/protocol.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infill_server import protocol

ROOT = Path(__file__).resolve().parent.parent
VSCODE_PROTOCOL = ROOT / "vscode-extension" / "src" / "protocol.ts"
NVIM_PROTOCOL = ROOT / "nvim" / "lua" / "dgem_infill" / "protocol.lua"

# The LSP names both editor clients speak (the websocket names belong to other clients).
LSP_NAMES = ["REFINEMENT_NOTIFICATION", "REWRITE_COMMAND", "ACCEPT_REWRITE_COMMAND", "REJECT_REWRITE_COMMAND"]

# A protocol-shaped string literal: "dgem/..." (a method) or "dgem.x..." (a command).
PROTOCOL_LITERAL = re.compile(r"""["'](dgem(?:/|\.)[A-Za-z$][\w/.$]*)["']""")


def declared(path: Path, pattern: str) -> dict[str, str]:
    return dict(re.findall(pattern, path.read_text(encoding="utf-8")))


def client_sources() -> list[Path]:
    sources = sorted((ROOT / "vscode-extension" / "src").rglob("*.ts"))
    sources += sorted((ROOT / "nvim").rglob("*.lua"))
    return sources


def expected() -> dict[str, str]:
    return {name: getattr(protocol, name) for name in LSP_NAMES}


def test_vscode_extension_declares_the_server_names() -> None:
    names = declared(VSCODE_PROTOCOL, r'export const ([A-Z_]+) = "([^"]+)";')
    assert names == expected()


def test_nvim_plugin_declares_the_server_names() -> None:
    names = declared(NVIM_PROTOCOL, r'([A-Z_]+) = "([^"]+)",')
    assert names == expected()


@pytest.mark.parametrize("source", client_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_protocol_strings_appear_only_in_the_protocol_modules(source: Path) -> None:
    literals = PROTOCOL_LITERAL.findall(source.read_text(encoding="utf-8"))
    if source in (VSCODE_PROTOCOL, NVIM_PROTOCOL):
        assert set(literals) == set(expected().values())
    else:
        assert literals == [], (
            f"{source.name} spells protocol names itself; import them from its protocol module"
        )


def test_every_server_name_is_used_by_both_clients() -> None:
    vscode_code = "\n".join(p.read_text(encoding="utf-8") for p in client_sources() if p.suffix == ".ts")
    nvim_code = "\n".join(p.read_text(encoding="utf-8") for p in client_sources() if p.suffix == ".lua")
    for name in LSP_NAMES:
        # Declared once, used at least once elsewhere.
        assert vscode_code.count(name) >= 2, f"the VS Code extension never uses {name}"
        assert nvim_code.count(name) >= 2, f"the Neovim plugin never uses {name}"


def test_vscode_settings_live_under_the_declared_section() -> None:
    settings = (ROOT / "vscode-extension" / "src" / "settings.ts").read_text(encoding="utf-8")
    assert f'export const SECTION = "{protocol.SETTINGS_SECTION}";' in settings
    package = (ROOT / "vscode-extension" / "package.json").read_text(encoding="utf-8")
    assert f'"{protocol.SETTINGS_SECTION}.model"' in package
