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
  MAX_SHAPES (each shape holds its own copy of the prefix keys and the memory its graphs computed in);
- a shape's graphs are recorded at its second fill (RECORD_AT), not its first: the first fill of every shape
  runs the eager pass and nothing else. Recording costs more than it saves in one fill (measured on an H200
  with the bench's small checkpoint: fills that each met a new shape and recorded at their third step took
  3x the eager ones, docs/BENCHMARKS.md, session 14), and a shape met once (a jump in a large file) would pay
  that for nothing; a shape met twice is typing in place, whose next fills replay. A fill is counted at its
  first step, the one pass without a self-conditioning signal.
The pass must not synchronise with the host (no .item(), no data-dependent shapes). Capture raises
GraphCaptureError where it does; the caller then runs the pass eagerly.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

PREFIX_BUCKET = 128  # prefix tokens per padding step: a graph serves 128 keystrokes of typing
MAX_SHAPES = 4
RECORD_AT = 2  # the fill of a shape at which its graphs are recorded

# canvas (B, C), hole, self-conditioning logits or None, per layer prefix keys and values (kv heads, L', d),
# per layer rotary cos and sin (1, C, d), per layer attention masks (1, 1, 1, L' + C) or None -> logits
CanvasPass = Callable[..., torch.Tensor]


class GraphCaptureError(RuntimeError):
    """The pass could not be recorded (it synchronises with the host, or the device refused)."""


class GraphedCanvasPasses:
    """`canvas_pass` behind CUDA graphs recorded per shape; called like it, plus the prefix's version."""

    def __init__(self, canvas_pass: CanvasPass, device: torch.device, max_shapes: int = MAX_SHAPES,
                 bucket: int = PREFIX_BUCKET, record_at: int = RECORD_AT):
        self.canvas_pass = canvas_pass
        self.device = device
        self.max_shapes = max_shapes
        self.bucket = bucket
        self.record_at = record_at
        self._shapes: OrderedDict[tuple, ShapeBuffers] = OrderedDict()  # least recently used first
        self._fills: OrderedDict[tuple, int] = OrderedDict()  # fills begun per shape not yet recorded
        self._pool: Any = None  # one memory pool for every graph (see `_capture`)
        self._stream: torch.cuda.Stream | None = None  # one capture stream: a new one costs new library workspaces
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
        conditioned = condition is not None
        if key not in self._shapes:
            fills = self._fills.pop(key, 0) + (not conditioned)
            if fills < self.record_at:
                self._fills[key] = fills
                while len(self._fills) > 16 * self.max_shapes:
                    self._fills.popitem(last=False)
                return self.canvas_pass(canvas, hole, condition, prefix, rotary)
        shape = self._shapes.pop(key, None)
        if shape is None:
            shape = ShapeBuffers(canvas, prefix, padded, rotary)
        self._shapes[key] = shape
        while len(self._shapes) > self.max_shapes:
            self._shapes.popitem(last=False)
        shape.load(canvas, condition, prefix, rotary, prefix_version)
        if conditioned not in shape.graphs:
            shape.graphs[conditioned] = self._record(shape, hole, conditioned)
            self.recorded += 1
        graph, output = shape.graphs[conditioned]
        graph.replay()
        return output.clone()

    def padded(self, length: int) -> int:
        return max(1, math.ceil(length / self.bucket)) * self.bucket

    def _record(self, shape: ShapeBuffers, hole: int, conditioned: bool) -> tuple[Any, torch.Tensor]:
        """A graph of the pass over `shape`'s buffers, and the tensor each replay writes its logits to."""

        def run() -> torch.Tensor:
            condition = shape.condition if conditioned else None
            return self.canvas_pass(shape.canvas, hole, condition, shape.prefix, shape.rotary, shape.masks)

        try:
            return self._capture(run)
        except RuntimeError as error:
            text = str(error).strip()
            raise GraphCaptureError(text.splitlines()[0] if text else repr(error)) from error

    def _capture(self, run: Callable[[], torch.Tensor]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # Not torch.cuda.graph(): it empties the allocator's cache before every capture, and the memory is then
        # allocated anew. One pool for all graphs: a graph's scratch memory may be another's, which is safe
        # because graphs replay one at a time on one stream and each replay's output is copied out before the
        # next one. One capture stream, as torch.cuda.graph() keeps: a new stream costs new library workspaces.
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
            self._stream = torch.cuda.Stream(self.device)
        current = torch.cuda.current_stream(self.device)
        side = self._stream
        assert side is not None
        side.wait_stream(current)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.stream(side):
                run()  # lazy set-up (library handles, workspaces) must happen before capture
                side.synchronize()
                graph.capture_begin(pool=self._pool, capture_error_mode="thread_local")
                try:
                    output = run()
                finally:
                    graph.capture_end()
        finally:
            current.wait_stream(side)
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
        self.graphs: dict[bool, tuple[Any, torch.Tensor]] = {}  # a CUDA graph (anything with replay())

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
