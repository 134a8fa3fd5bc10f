"""ServiceConfig validation: every rule has a case."""

from __future__ import annotations

import pytest

from infill_server.config import ConfigError, ServiceConfig


def test_defaults_are_valid() -> None:
    config = ServiceConfig.from_dict({})
    assert config.device == "auto" and config.model is None and config.language_enabled("python")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"colour": "red"}, "unknown setting"),
        ({"device": "tpu"}, "device"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "64"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"steps": 0}, "steps"),
        ({"model": ""}, "model"),
        ({"languages": "python"}, "languages"),
        ({"languages": [1]}, "languages"),
        ({"length": "longest"}, "length"),
    ],
)
def test_bad_values_are_rejected_with_the_setting_named(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServiceConfig.from_dict(values)


def test_a_non_object_is_rejected() -> None:
    with pytest.raises(ConfigError):
        ServiceConfig.from_dict(["model"])  # type: ignore[arg-type]


def test_merged_changes_only_the_given_keys_and_validates() -> None:
    config = ServiceConfig(device="cpu", languages=("python",))
    changed = config.merged({"steps": 8})
    assert changed.steps == 8 and changed.device == "cpu" and changed.languages == ("python",)
    with pytest.raises(ConfigError):
        config.merged({"steps": -1})


def test_language_filter() -> None:
    config = ServiceConfig(languages=("python", "rust"))
    assert config.language_enabled("rust") and not config.language_enabled("go")
    assert not config.language_enabled(None)
