"""nvim/README.md documents every option, key, command and highlight of the Neovim plugin."""

from __future__ import annotations

import re

import pytest

from .support import NVIM_PLUGIN_DIR

INIT = (NVIM_PLUGIN_DIR / "lua" / "dgem_infill" / "init.lua").read_text(encoding="utf-8")
README = (NVIM_PLUGIN_DIR / "README.md").read_text(encoding="utf-8")


def defaults_block() -> str:
    return INIT.split("local defaults = {", 1)[1].split("\n}\n", 1)[0]


def option_names() -> list[str]:
    # Top-level keys sit at two spaces of indentation, nested ones deeper.
    return re.findall(r"^  (\w+) = ", defaults_block(), flags=re.M)


def nested_names() -> list[str]:
    return re.findall(r"^    (\w+) = ", defaults_block(), flags=re.M)


def test_defaults_are_found() -> None:
    assert {"cmd", "keys", "settings", "native"} <= set(option_names())


@pytest.mark.parametrize("name", option_names() + nested_names())
def test_every_option_is_documented(name: str) -> None:
    assert re.search(rf"\b{name}\b", README), f"option {name} is not in nvim/README.md"


@pytest.mark.parametrize("command", re.findall(r'nvim_create_user_command\("(\w+)"', INIT))
def test_every_command_has_a_help_tag(command: str) -> None:
    assert f"*:{command}*" in README


@pytest.mark.parametrize("group", sorted(set(re.findall(r"highlight default link (\w+)", INIT))))
def test_every_highlight_group_is_documented(group: str) -> None:
    assert group in README


@pytest.mark.parametrize("key", re.findall(r'^    \w+ = "(<[^"]+>)"', defaults_block(), flags=re.M))
def test_every_default_key_is_documented(key: str) -> None:
    assert key.replace("\\\\", "\\") in README
