"""dgem-infill's engine: text in, refinement steps out (see engine/engine.py).

`Engine` is imported on first use: importing torch takes seconds, and front ends (the language server
answering `initialize`) should not wait for it before they need the model.
"""

from typing import TYPE_CHECKING, Any

from engine.types import EngineError, InfillRequest, ModelLoadError, Refinement

if TYPE_CHECKING:
    from engine.engine import Engine, ModelInfo

__all__ = ["Engine", "EngineError", "InfillRequest", "ModelInfo", "ModelLoadError", "Refinement"]


def __getattr__(name: str) -> Any:
    if name in ("Engine", "ModelInfo"):
        from engine import engine as engine_module

        return getattr(engine_module, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
