"""Canvas passes replayed as CUDA graphs: a small model's denoising step on a GPU without launch overhead.

On a GPU a small model's step is bound by its kernel launches and the Python between them, not by arithmetic
(docs/BENCHMARKS.md, session 13: 9-12 ms a step on an H200 for well under a millisecond of GPU work). A CUDA
graph records a pass's kernels once and replays them with one launch. A graph reads fixed addresses with fixed
shapes, so:
- each step copies the canvas (and the self-conditioning logits) into buffers the graph reads;
- the prefix keys and values are copied once per prefix, not per step, into buffers padded to a multiple of
  PREFIX_BUCKET tokens, with a mask over the padding: the next keystroke's fill, one token longer, replays the
  graphs of the last fill instead of recording new ones;
- graphs are kept per shape (batch, canvas, hole, padded prefix), the least recently used dropped beyond
  MAX_SHAPES (each shape holds its own copy of the prefix keys and the memory its graphs computed in).
The pass must not synchronise with the host (no .item(), no data-dependent shapes). Capture raises
GraphCaptureError where it does; the caller then runs the pass eagerly.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch

PREFIX_BUCKET = 128  # prefix tokens per padding step: a graph serves 128 keystrokes of typing
MAX_SHAPES = 4

# canvas (B, C), hole, self-conditioning logits or None, per layer prefix keys and values (kv heads, L', d),
# per layer rotary cos and sin (1, C, d), per layer attention masks (1, 1, 1, L' + C) or None -> logits
CanvasPass = Callable[..., torch.Tensor]


class GraphCaptureError(RuntimeError):
    """The pass could not be recorded (it synchronises with the host, or the device refused)."""


class GraphedCanvasPasses:
    """`canvas_pass` behind CUDA graphs recorded per shape; called like it, plus the prefix's version."""

    def __init__(self, canvas_pass: CanvasPass, device: torch.device, max_shapes: int = MAX_SHAPES,
                 bucket: int = PREFIX_BUCKET):
        self.canvas_pass = canvas_pass
        self.device = device
        self.max_shapes = max_shapes
        self.bucket = bucket
        self._shapes: OrderedDict[tuple, ShapeBuffers] = OrderedDict()  # least recently used first
        self.recorded = 0  # graphs recorded so far (a test and the bench read it)

    def __call__(
        self,
        canvas: torch.Tensor,
        hole: int,
        condition: torch.Tensor | None,
        prefix: list[tuple[torch.Tensor, torch.Tensor]],
        rotary: list[tuple[torch.Tensor, torch.Tensor]],
        prefix_version: object,
    ) -> torch.Tensor:
        """The pass's logits (B, hole, V), a tensor of the caller's (the next replay does not overwrite it).
        `prefix_version` changes whenever the prefix keys do (the backend's cache counts its edits)."""
        padded = tuple(self.padded(keys.shape[1]) for keys, _ in prefix)
        key = (tuple(canvas.shape), hole, padded)
        shape = self._shapes.pop(key, None)
        if shape is None:
            shape = ShapeBuffers(canvas, prefix, padded, rotary)
        self._shapes[key] = shape
        while len(self._shapes) > self.max_shapes:
            self._shapes.popitem(last=False)
        shape.load(canvas, condition, prefix, rotary, prefix_version)
        conditioned = condition is not None
        if conditioned not in shape.graphs:
            shape.graphs[conditioned] = self._record(shape, hole, conditioned)
            self.recorded += 1
        graph, output = shape.graphs[conditioned]
        graph.replay()
        return output.clone()

    def padded(self, length: int) -> int:
        return max(1, math.ceil(length / self.bucket)) * self.bucket

    def _record(self, shape: ShapeBuffers, hole: int, conditioned: bool) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        def run() -> torch.Tensor:
            condition = shape.condition if conditioned else None
            return self.canvas_pass(shape.canvas, hole, condition, shape.prefix, shape.rotary, shape.masks)

        try:
            current = torch.cuda.current_stream(self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(current)
            with torch.cuda.stream(side):  # lazy set-up (library handles, workspaces) must happen before capture
                run()
            current.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                output = run()
        except RuntimeError as error:
            raise GraphCaptureError(str(error).strip().splitlines()[0] if str(error).strip() else repr(error)) from error
        return graph, output


class ShapeBuffers:
    """The buffers that one shape's graphs read, and its graphs: the first step's and a self-conditioned one's."""

    def __init__(
        self,
        canvas: torch.Tensor,
        prefix: list[tuple[torch.Tensor, torch.Tensor]],
        padded: tuple[int, ...],
        rotary: list[tuple[torch.Tensor, torch.Tensor]],
    ):
        C = canvas.shape[1]
        self.canvas = torch.empty_like(canvas)
        # zeros, not empty: a masked key still enters the products, and 0 x NaN would be NaN
        self.prefix = [
            (keys.new_zeros(keys.shape[0], length, keys.shape[2]), values.new_zeros(values.shape[0], length, values.shape[2]))
            for (keys, values), length in zip(prefix, padded, strict=True)
        ]
        # True where a query may look: the prefix's real keys and the whole canvas
        self.masks = [torch.ones(1, 1, 1, length + C, dtype=torch.bool, device=canvas.device) for length in padded]
        self.rotary = [(cos.clone(), sin.clone()) for cos, sin in rotary]
        self.condition: torch.Tensor | None = None
        self.version: object = None  # the prefix whose keys the buffers hold
        self.graphs: dict[bool, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def load(
        self,
        canvas: torch.Tensor,
        condition: torch.Tensor | None,
        prefix: list[tuple[torch.Tensor, torch.Tensor]],
        rotary: list[tuple[torch.Tensor, torch.Tensor]],
        version: object,
    ) -> None:
        self.canvas.copy_(canvas)
        if condition is not None:
            if self.condition is None:
                self.condition = torch.empty_like(condition)
            self.condition.copy_(condition)
        if version == self.version:
            return  # the prefix (and so the canvas's positions) of the last step: its keys are in place
        for (keys, values), (into_keys, into_values), mask in zip(prefix, self.prefix, self.masks, strict=True):
            length = keys.shape[1]
            into_keys[:, :length].copy_(keys)
            into_values[:, :length].copy_(values)
            mask[..., :length] = True
            mask[..., length : into_keys.shape[1]] = False
        for (cos, sin), (into_cos, into_sin) in zip(rotary, self.rotary, strict=True):
            into_cos.copy_(cos)
            into_sin.copy_(sin)
        self.version = version
