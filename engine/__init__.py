"""dgem-infill's engine: text in, refinement steps out (see engine/engine.py)."""

from engine.engine import Engine, ModelInfo
from engine.types import EngineError, InfillRequest, ModelLoadError, Refinement

__all__ = ["Engine", "EngineError", "InfillRequest", "ModelInfo", "ModelLoadError", "Refinement"]
