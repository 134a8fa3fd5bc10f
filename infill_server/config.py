"""The service's settings: one typed dataclass, validated once, shared by every front end."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
# How a single-line fill's length is chosen: the model's generation_config ("auto"), one fill at the
# probed length ("probe"), or fills at five sizes around it ranked by the causal pass ("likelihood":
# 16.6% exact against 13.9% on 736 held-out lines, about 2.3x a fill's time on a CPU; MODEL_CARD)
LENGTHS = ("auto", "probe", "likelihood")
MAX_HOLE_TOKENS = 1024


class ConfigError(ValueError):
    """A setting is unknown or has a bad value; the message names it."""


@dataclass(frozen=True)
class ServiceConfig:
    model: str | None = None  # model directory or Hugging Face id; None = the shipped model
    device: str = "auto"  # auto | cpu | cuda
    max_tokens: int = 64  # cap on hole slots
    steps: int | None = None  # denoising steps; None = the model's default
    languages: tuple[str, ...] = ("*",)  # enabled canonical language ids; "*" = all
    length: str = "auto"  # one of LENGTHS

    def __post_init__(self) -> None:
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ConfigError("model: expected a model directory or a Hugging Face id")
        if self.device not in DEVICES:
            raise ConfigError(f"device: expected one of {', '.join(DEVICES)} (got {self.device!r})")
        if not _is_int(self.max_tokens) or not 1 <= self.max_tokens <= MAX_HOLE_TOKENS:
            raise ConfigError(f"max_tokens: expected an integer 1..{MAX_HOLE_TOKENS} (got {self.max_tokens!r})")
        if self.steps is not None and (not _is_int(self.steps) or not 1 <= self.steps <= 256):
            raise ConfigError(f"steps: expected an integer 1..256 or null (got {self.steps!r})")
        if not all(isinstance(language, str) for language in self.languages):
            raise ConfigError("languages: expected a list of language ids")
        if self.length not in LENGTHS:
            raise ConfigError(f"length: expected one of {', '.join(LENGTHS)} (got {self.length!r})")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> ServiceConfig:
        """Build from a JSON object (initializationOptions, settings); unknown keys are errors."""
        if values is None:
            return cls()
        if not isinstance(values, dict):
            raise ConfigError("settings: expected a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        values = dict(values)
        if "languages" in values:
            languages = values["languages"]
            if isinstance(languages, str) or not isinstance(languages, list | tuple):
                raise ConfigError("languages: expected a list of language ids")
            values["languages"] = tuple(languages)
        return cls(**values)

    def replace(self, **changes: Any) -> ServiceConfig:
        return replace(self, **changes)

    def merged(self, values: dict[str, Any] | None) -> ServiceConfig:
        """This config with the keys of `values` changed (validated like from_dict)."""
        if not values:
            return self
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current["languages"] = list(self.languages)
        checked = ServiceConfig.from_dict({**current, **values})
        return checked

    def language_enabled(self, language: str | None) -> bool:
        return "*" in self.languages or (language is not None and language in self.languages)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
