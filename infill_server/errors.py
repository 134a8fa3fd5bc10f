"""Errors the service reports to front ends; importable without loading the engine."""

from engine.types import EngineError, ModelLoadError


class ServiceError(Exception):
    """A request the service cannot serve (no model, bad job); the message is for the user."""


__all__ = ["EngineError", "ModelLoadError", "ServiceError"]
