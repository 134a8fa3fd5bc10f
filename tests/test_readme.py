"""The README is the spec of the command line: every command and flag in --help is documented there."""

from __future__ import annotations

import argparse
from pathlib import Path

from infill_server.cli import build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def all_parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [("", parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [(name, sub) for name, sub in action.choices.items()]
    return found


def test_every_flag_of_every_command_is_in_the_readme() -> None:
    missing = []
    for command, parser in all_parsers(build_parser()):
        if command and f"dgem-infill {command}" not in README:
            missing.append(f"dgem-infill {command}")
        for action in parser._actions:
            long = [flag for flag in action.option_strings if flag.startswith("--") and flag != "--help"]
            missing += [f"{command} {flag}".strip() for flag in long if flag not in README]
    assert not missing, f"not documented in README.md: {missing}"


def test_the_readme_quick_start_names_the_two_setup_commands() -> None:
    assert "bash scripts/setup.sh && .venv/bin/dgem-infill complete" in README
    assert "bash scripts/test.sh" in README
    assert "scripts/test.sh" in (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()


def test_the_example_cursor_in_the_quick_start_is_inside_the_file() -> None:
    lines = (Path(__file__).resolve().parents[1] / "examples" / "stack.py").read_text().split("\n")
    assert lines[12] == "        return " and len(lines[12]) + 1 == 16
