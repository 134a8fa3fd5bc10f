"""Token resolution and comparison: explicit > environment > a private file created on first use."""

import os
import stat
from pathlib import Path

import pytest

from infill_server.websocket.auth import (
    TOKEN_ENV,
    default_token_path,
    normalize_origin,
    resolve_token,
    tokens_equal,
)


def test_explicit_token_wins_over_environment(tmp_path: Path) -> None:
    assert resolve_token("abc", {TOKEN_ENV: "env"}, tmp_path / "t") == ("abc", None)


def test_environment_token_wins_over_file(tmp_path: Path) -> None:
    assert resolve_token(None, {TOKEN_ENV: "env"}, tmp_path / "t") == ("env", None)
    assert not (tmp_path / "t").exists()


def test_generated_token_file_is_readable_only_by_the_user(tmp_path: Path) -> None:
    path = tmp_path / "state" / "dgem-infill" / "ws-token"
    token, where = resolve_token(None, {}, path)
    assert where == path
    assert path.read_text().strip() == token
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_generated_token_is_reused_on_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "ws-token"
    first, _ = resolve_token(None, {}, path)
    assert resolve_token(None, {}, path) == (first, path)


def test_token_file_readable_by_others_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "ws-token"
    path.write_text("leaked\n")
    os.chmod(path, 0o644)
    token, _ = resolve_token(None, {}, path)
    assert token != "leaked"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_default_token_path_follows_xdg_state_home(tmp_path: Path) -> None:
    assert default_token_path({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "dgem-infill" / "ws-token"
    assert default_token_path({}).parts[-4:] == (".local", "state", "dgem-infill", "ws-token")


@pytest.mark.parametrize("bad", ["", "   ", "has space", "tab\there"])
def test_unusable_explicit_tokens_are_rejected(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--token"):
        resolve_token(bad, {}, tmp_path / "t")


def test_tokens_compare_equal_only_when_identical() -> None:
    assert tokens_equal("secret", "secret")
    assert not tokens_equal("secreT", "secret")
    assert not tokens_equal("secret-longer", "secret")
    assert not tokens_equal("\ud800", "secret")  # a lone surrogate from a query string must not crash


def test_origins_compare_without_case_or_trailing_slash() -> None:
    assert normalize_origin("http://Localhost:3000/") == normalize_origin("http://localhost:3000")
