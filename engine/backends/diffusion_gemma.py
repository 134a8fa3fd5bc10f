"""The `diffusion_gemma` backend: Google's DiffusionGemma through transformers.

How the Backend calls map onto `DiffusionGemmaForBlockDiffusion` (transformers' module names):
- `extend`  -> the layers of `model.model.encoder.language_model`: the causal pass over prefix tokens, whose
  keys and values are appended to a transformers `DynamicCache` (the encoder is the only writer of that cache).
- `denoise` -> the submodules of `model.model.decoder` (embedding, self-conditioning block, rotary tables,
  layers, final norm), which read the cache without writing it, then `model.lm_head` and the final logit
  soft-capping on the hole slots only.

Both passes run the layers' own submodules (norms, projections, router, experts) in transformers' order, so
the numbers are transformers' own (the tests compare logits with transformers' forward to 1e-5), but the loop
around them is ours, because what forward() computes that an infill does not need dominates a small model's
cost on a CPU (measured, with the bench's reference checkpoint: see `infill_server/bench/compare.py`):
1. the encoder's last layer: only its keys and values are read later, so its queries, attention, MLP and
   experts (half of a 2-layer model's prefix pass) are skipped, and so is the final norm;
2. attention masks: the encoder's causal mask is SDPA's own `is_causal` (a new document) or a small boolean
   mask; sliding-window layers attend block by block to their window, not to the whole prefix through a
   (T, T) mask; the decoder needs no mask at all (bidirectional over the visible keys);
3. the prefix cache keeps every layer's keys (transformers' own cache drops sliding-window layers' old keys,
   and `truncate` must be able to cut it anywhere), so the decoder's sliding-window layers read a view of
   the last `sliding_window - 1` prefix keys: what transformers' cache would have kept;
4. self-conditioning: the signal of the hole slots comes from (B, hole, V) logits (forward() wants
   (B, C, V) and a (C, V) x (V, D) product, as large as a second LM head over the canvas); the first step's
   signal is zero, so its feed-forward block (which maps zero to zero) is skipped;
5. on the CPU, fewer and larger matrix products (`_Layer`): on a 64-token canvas each product is small, and
   with two threads on a busy machine every parallel operation can wait a scheduler slice for its second
   thread, so the count of products matters more than their size;
6. the rotary tables of a fill's canvas are made once, not at every step;
7. optionally (`compiled`), the canvas pass runs under torch.compile: the same matrix products, with the
   ~400 small element-wise operations of a step between them fused (1.4x a step on the bench's checkpoint);
   so do the prefix pass's layers (around their attention), with a dynamic length;
   on a GPU (`cuda_graphs`, the default there) the canvas pass is recorded as CUDA graphs and replayed
   (engine/backends/cuda_graphs.py): a small model's step there costs its kernel launches, not its arithmetic;
8. on the CPU, eager passes run on one thread between their matrix products, which get the caller's threads
   (engine/backends/cpu_threads.py: waking a sleeping OpenMP thread for each element-wise operation over
   32K elements costs more than the work).

Shapes: B batch, T new prefix tokens, L cached tokens, C canvas, H hole slots, D width, V vocabulary,
heads/kv heads per layer, d head width.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from transformers import DiffusionGemmaForBlockDiffusion, DynamicCache
from transformers.models.diffusion_gemma.modeling_diffusion_gemma import apply_rotary_pos_emb

from engine.backends.cpu_threads import (
    all_threads,
    cheaper_on_one_thread,
    one_thread_between_products,
    products_on_all_threads,
)
from engine.backends.cuda_graphs import GraphCaptureError, GraphedCanvasPasses
from engine.backends.precision import chosen_dtype
from engine.tokenizer import SpecialTokens
from engine.types import ModelLoadError

RotaryTables = dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer type -> cos, sin (1, positions, d)

COMPILE_ENV = "DGEM_INFILL_COMPILE"  # auto (the default: on a CPU) | on | off
CUDA_GRAPHS_ENV = "DGEM_INFILL_CUDA_GRAPHS"  # on (the default; GPUs only) | off

log = logging.getLogger(__name__)
_versions = itertools.count()  # every edit of every prefix cache gets a new number

# transformers' DiffusionGemma generate() defaults, used where the checkpoint's generation config is silent
DEFAULT_GENERATION = {
    "max_steps": 48,
    "entropy_bound": 0.1,
    "t_min": 0.4,
    "t_max": 0.8,
    "stability_threshold": 1,
    "confidence_threshold": 0.005,
}


class DiffusionGemmaKV:
    """The prefix cache: a transformers DynamicCache whose layers all keep every token (croppable anywhere).

    Layer i holds keys and values (1, kv heads, L, d), after the key norm and rotary embedding.
    """

    def __init__(self) -> None:
        self.kv = DynamicCache()  # no config: full layers only, see the module docstring
        self.version = next(_versions)  # changes with every edit: CUDA graphs copy the keys only then

    def edited(self) -> None:
        self.version = next(_versions)

    @property
    def length(self) -> int:
        return self.kv.get_seq_length()

    def truncate(self, length: int) -> None:
        extra = self.length - length
        if extra > 0:
            self.kv.crop(-extra)  # transformers' crop takes the number of tokens to remove, negated
            self.edited()

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Keys and values of layer `index`, or None while the cache is empty."""
        if self.length == 0 or index >= len(self.kv.layers):
            return None
        layer = self.kv.layers[index]
        return layer.keys, layer.values


class DiffusionGemmaBackend:
    """DiffusionGemma as an infill backend.

    Assumptions about the canvas (C <= config.canvas_length, which is only the training block size):
    - canvas = [hole slots][suffix head], at positions L.. right after the cached prefix, like one block
      of transformers' generate(); a shorter canvas is a smaller block, not padded to canvas_length;
    - every canvas token is a real token (suffix tokens clamped, hole tokens noise or drafts): there is
      no attention padding inside the canvas;
    - the sliding-window layers of the decoder see the last `sliding_window - 1` prefix tokens and the
      whole canvas, full-attention layers see everything (what generate() does with its default cache).
    Self-conditioning: pass the previous step's logits for the hole slots *after* the temperature
    schedule (generate() feeds back its processed logits). Suffix slots are fed the embedding of their
    own token (the soft embedding of a certain prediction), because a clamped token is known.
    """

    noise = "uniform"

    def __init__(
        self,
        model: DiffusionGemmaForBlockDiffusion,
        device: torch.device,
        fuse: bool | None = None,
        compiled: bool = False,
        cuda_graphs: bool | None = None,
    ):
        """fuse: concatenate projection weights so that one matrix product does the work of several (default:
        on the CPU, where a small model's many small products dominate, above all when the two cores are
        shared; it copies the attention and MLP weights once). The results are those of the unfused layers.

        compiled: run the canvas pass (embedding to soft-capped logits) through torch.compile, which fuses
        the norms, rotary and activations between the same matrix products (logits within ~1e-6 of the eager
        ones). The first step of each new shape compiles for seconds (4-25 s on two CPU cores), too long
        for an editor's fill: `warm_up` compiles before the first one (`load` chooses, see there); it can be
        switched per call through `self.compiled`.
        Under it the prefix pass runs each encoder layer's work before and after its attention compiled too,
        with a dynamic length (one compile serves longer prefixes; one- and two-token extends compile once
        more each, torch specialising size 1), and few experts run densely on any number of rows
        (transformers' grouped experts have data-dependent shapes, which break the compiled graph).

        cuda_graphs (None: on unless $DGEM_INFILL_CUDA_GRAPHS=off; GPUs only, and not with `compiled`): record
        the canvas pass per shape as CUDA graphs and replay them (engine/backends/cuda_graphs.py). A pass
        that cannot be recorded runs eagerly from then on, with a warning in the log."""
        self.model = model.eval()
        self.device = device
        self.text_config = model.config.text_config
        self.vocab_size: int = self.text_config.vocab_size
        self.canvas_length: int = model.config.canvas_length
        self.softcap: float | None = getattr(self.text_config, "final_logit_softcapping", None)
        self.layer_types: list[str] = list(self.text_config.layer_types)
        self.window: int | None = getattr(self.text_config, "sliding_window", None)
        self.encoder = model.model.encoder.language_model
        self.decoder = model.model.decoder
        fuse = device.type == "cpu" if fuse is None else fuse
        shared: dict[tuple[int, ...], torch.Tensor] = {}  # the encoder's and decoder's weights are tied
        self._encoder_layers = [_Layer(layer, fuse, shared) for layer in self.encoder.layers]
        self._decoder_layers = [_Layer(layer, fuse, shared) for layer in self.decoder.layers]
        self._self_conditioning = _SelfConditioning(self.decoder.self_conditioning, fuse)
        # a prefix pass of our own needs a causal encoder (the cache of an unchanged prefix stays valid)
        self._own_encoder = all(layer.self_attn.is_causal for layer in self.encoder.layers)
        # ((cached length, canvas length), rotary tables per layer type): the same for every step of a fill
        self._canvas_rotary: tuple[tuple[int, int], RotaryTables] | None = None
        self.compiled = compiled
        self._compiled_pass: Any = None  # made at the first compiled step
        self._compiled_prefix_steps: list[_PrefixSteps] | None = None  # made at the first compiled extend
        self._compiled_on_one_thread = False  # timed by `warm_up` on a CPU
        if cuda_graphs is None:
            cuda_graphs = os.environ.get(CUDA_GRAPHS_ENV, "on").strip().lower() != "off"
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        self._graphed_pass: GraphedCanvasPasses | None = None  # made at the first graphed step
        self._attention: Callable[..., torch.Tensor] = F.scaled_dot_product_attention
        self._causal_attention: Callable[..., torch.Tensor] = _causal_attention
        self._soft_embedding: Callable[..., torch.Tensor] = torch.matmul
        if device.type == "cpu":
            self._products_on_all_threads()

    @property
    def graphs_recorded(self) -> int:
        """CUDA graphs recorded so far (0 where they are off)."""
        return 0 if self._graphed_pass is None else self._graphed_pass.recorded

    def _products_on_all_threads(self) -> None:
        """The matrix products and attention get the caller's threads inside `_between_products` (per
        instance: the model's parameters and state_dict are unchanged). Any layout: every linear layer and
        experts module, and the products this backend makes itself."""
        products_on_all_threads(
            [m for m in self.model.modules() if isinstance(m, torch.nn.Linear)]
            + [layer.experts for layer in (*self.encoder.layers, *self.decoder.layers)]
        )
        self._attention = all_threads(F.scaled_dot_product_attention)
        self._causal_attention = all_threads(_causal_attention)
        self._soft_embedding = all_threads(torch.matmul)
        for layer in (*self._encoder_layers, *self._decoder_layers):
            layer.linear, layer.bmm = all_threads(F.linear), all_threads(torch.bmm)
        self._self_conditioning.linear = all_threads(F.linear)

    def _between_products(self) -> AbstractContextManager[None]:
        """On a CPU: one thread between the products of an eager pass (engine/backends/cpu_threads.py); a
        compiled canvas pass, whose products sit inside the graph, wholly on one thread where that was timed
        faster by `warm_up`."""
        if self.device.type != "cpu" or (self.compiled and not self._compiled_on_one_thread):
            return nullcontext()
        return one_thread_between_products()

    @classmethod
    def load(
        cls,
        source: str | Path,
        device: torch.device,
        dtype: torch.dtype | str | None = None,
        compiled: bool | None = None,
    ) -> DiffusionGemmaBackend:
        """Load from a local model directory or a Hugging Face id (offline when HF_HUB_OFFLINE is set).

        `compiled` (None: $DGEM_INFILL_COMPILE, else auto): run the passes under torch.compile (see
        `__init__`); auto is on for a CPU, where it makes a fill 1.4-1.6x faster on the bench's checkpoint
        (docs/BENCHMARKS.md, session 7), and off on a GPU. Compiled passes are compiled by `warm_up`, which
        `Engine.load` calls before the first fill.

        `dtype`, the whole model's: a torch dtype, or float32 / bfloat16 / auto (None: $DGEM_INFILL_DTYPE,
        else auto). auto is bf16 on GPUs, and on a CPU bf16 where a timed matrix product of the model's
        feed-forward shape runs clearly faster than a float32 one (engine/backends/precision.py). A bf16 model
        runs as transformers runs it: its norms compute in float32 inside, the residual stream is bf16."""
        source = str(source)
        path = Path(source).expanduser()
        looks_like_path = source.startswith((".", "/", "~")) or source.count("/") > 1 or path.exists()
        if looks_like_path and not (path / "config.json").is_file():
            raise ModelLoadError(f"{source}: not a model directory (no config.json)")
        name = str(path) if looks_like_path else source
        try:
            config = DiffusionGemmaForBlockDiffusion.config_class.from_pretrained(
                name, local_files_only=_hub_offline()
            )
        except Exception as error:  # hub, file and config errors all end here: one line for the user
            raise _load_error(source, error) from None
        if not isinstance(dtype, torch.dtype):
            text = config.text_config
            dtype = chosen_dtype(device, text.hidden_size, text.intermediate_size, dtype)
        # with accelerate, weights go straight to the device (a 26B model need not pass through host memory)
        placement = {"device_map": device} if importlib.util.find_spec("accelerate") else {}
        try:
            model = DiffusionGemmaForBlockDiffusion.from_pretrained(
                name,
                config=config,
                dtype=dtype,
                attn_implementation="sdpa",  # the decoder's window masks are additive 4D masks
                local_files_only=_hub_offline(),
                **placement,
            ).to(device)
        except Exception as error:
            raise _load_error(source, error) from None
        return cls(model, device, compiled=_compile_choice(device, compiled))

    def warm_up(self, editor_shapes: bool = True) -> None:
        """Compile the passes (when `compiled`) on the shapes fills take, so that no user's fill waits for a
        compile: a new document's prefix, one- and two-token extends (keystrokes), and canvas passes at two
        canvas sizes and two prefix lengths, after which torch.compile holds a graph for any size (a shape it
        has not seen would otherwise compile for seconds in the middle of a fill). Random ids: the compiled
        code does not depend on the values. Seconds to a minute on two CPU cores; torch keeps the compiled
        kernels on disk, so a later start takes less.

        `editor_shapes=False` compiles a new prefix and whole-canvas holes only, the fills generate() makes
        (the bench's comparison): about half the compile (80 of 158 s on two cores with no kernels on disk),
        since the partial canvas and the extends take graphs of their own."""
        if not self.compiled:
            return
        generator = torch.Generator().manual_seed(0)

        def ids(count: int) -> torch.Tensor:
            return torch.randint(3, self.vocab_size, (count,), generator=generator)

        cache = self.new_cache()
        self.extend(cache, ids(2 * (self.window or self.canvas_length) + 1), 0)  # beyond a sliding window
        if self.device.type == "cpu":  # compiled code is specialised to a thread count: one graph per count
            canvas = ids(self.canvas_length)[None]
            self._compiled_on_one_thread = cheaper_on_one_thread(
                lambda: self.denoise(cache, canvas, self.canvas_length)
            )
        sizes = [(self.canvas_length, self.canvas_length)]
        if editor_shapes:
            sizes.append((self.canvas_length * 3 // 4, self.canvas_length // 2))
        for added in (1, 2) if editor_shapes else (0,):
            for length, hole in sizes:
                canvas = ids(length)[None]  # (1, C)
                logits = self.denoise(cache, canvas, hole)  # the first step, then a self-conditioned one
                # fed back as the sampler does: a normal tensor, not an inference one (another graph)
                self.denoise(cache, canvas, hole, logits.clone())
            if added:
                self.extend(cache, ids(added), cache.length)

    # ---- what the sampler needs from the checkpoint ----------------------------------------------

    def special_tokens(self) -> SpecialTokens:
        """pad, eos, bos token ids from the generation config, else the text config; no mask (uniform noise).

        A checkpoint may list several eos ids; the first one is taken.
        """
        generation = self.model.generation_config
        eos = _first(getattr(generation, "eos_token_id", None))
        if eos is None:
            eos = _first(self.text_config.eos_token_id)
        pad = getattr(generation, "pad_token_id", None)
        bos = getattr(generation, "bos_token_id", None)
        if pad is None:
            pad = self.text_config.pad_token_id
        if bos is None:
            bos = self.text_config.bos_token_id
        if pad is None or eos is None:
            raise ModelLoadError(f"{self.model.name_or_path}: the checkpoint names no pad or eos token")
        return SpecialTokens(pad=pad, eos=eos, bos=bos, mask=None)

    def generation_defaults(self) -> dict[str, Any]:
        """Sampler defaults from the checkpoint's generation config, keyed like engine.model_dir's."""
        generation = self.model.generation_config
        sampler = getattr(generation, "sampler_config", None)
        found = {
            "max_steps": getattr(generation, "max_denoising_steps", None),
            "entropy_bound": getattr(sampler, "entropy_bound", None),
            "t_min": getattr(generation, "t_min", None),
            "t_max": getattr(generation, "t_max", None),
            "stability_threshold": getattr(generation, "stability_threshold", None),
            "confidence_threshold": getattr(generation, "confidence_threshold", None),
        }
        defaults = {key: DEFAULT_GENERATION[key] if value is None else value for key, value in found.items()}
        defaults["canvas_length"] = self.canvas_length
        return defaults

    # ---- the Backend protocol ---------------------------------------------------------------------

    def new_cache(self) -> DiffusionGemmaKV:
        return DiffusionGemmaKV()

    @torch.inference_mode()
    def extend(self, cache: DiffusionGemmaKV, ids: torch.Tensor, start: int) -> None:
        """Encode ids (T,) causally at positions start..start+T-1 and append them to `cache`."""
        assert cache.length == start, "the prefix cache must end where the new tokens start"
        T = ids.shape[0]
        if T == 0:
            return
        # on all threads, unlike the canvas pass: a prefix's element-wise work is large enough to share
        # (1,498 tokens: 19.9 ms against 23.1 on one thread between products; never slower from 32 tokens up)
        self._extend(cache, ids.to(self.device)[None], start)
        cache.edited()

    def _extend(self, cache: DiffusionGemmaKV, ids: torch.Tensor, start: int) -> None:
        """`extend` of ids (1, T)."""
        T = ids.shape[1]
        # a bidirectional prefix (not a text checkpoint we know): transformers' pass
        if not self._own_encoder:
            positions = torch.arange(start, start + T, device=self.device)[None]  # (1, T)
            self.model.model.encoder(input_ids=ids, past_key_values=cache.kv, position_ids=positions)
            return
        encoder = self.encoder
        x = encoder.embed_tokens(ids)  # (1, T, D), already scaled by sqrt(D)
        rotary = self._rotary(encoder.rotary_emb, start, T, x)
        last = len(encoder.layers) - 1
        steps = self._prefix_steps()
        for index, (layer, kind) in enumerate(zip(self._encoder_layers, self.layer_types, strict=True)):
            cos, sin = rotary[kind]
            if index == last:  # nothing reads the last layer's output: only its keys and values
                cache.kv.update(*steps[index].keys_values(x, cos, sin), index)
                break
            # (1, heads, T, d), (1, kv heads, T, d) x2
            queries, keys, values = steps[index].attention_inputs(x, cos, sin)
            keys, values = cache.kv.update(keys, values, index)  # (1, kv heads, start + T, d)
            window = self.window if kind == "sliding_attention" else None
            # (1, heads, T, d)
            out = self._causal_attention(queries, keys, values, start, window, layer.attn.scaling)
            x = steps[index].after_attention(x, out)

    def _prefix_steps(self) -> list[_PrefixSteps]:
        """Each encoder layer's work around its attention: eager, or (`compiled`) compiled once. Many experts
        (the 26B's 128, top-8) stay eager: they go through transformers' grouped experts, whose data-dependent
        shapes break the graph (measured on the bench's model: 44.9 ms compiled against 32.8 eager)."""
        if not (self.compiled and all(layer.dense_experts for layer in self._encoder_layers)):
            return [_PrefixSteps.of(layer) for layer in self._encoder_layers]
        if self._compiled_prefix_steps is None:
            self._compiled_prefix_steps = [
                _PrefixSteps(
                    *(torch.compile(step, dynamic=True) for step in _PrefixSteps.of(layer, any_rows=True))
                )
                for layer in self._encoder_layers
            ]
        return self._compiled_prefix_steps

    @torch.inference_mode()
    def denoise(
        self,
        cache: DiffusionGemmaKV,
        canvas: torch.Tensor,
        hole: int,
        self_condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """canvas (B, C) token ids after the cached prefix -> float32 logits (B, hole, V) for canvas[:, :hole].

        self_condition: (B, hole, V) logits of the previous step, or None at the first step.
        """
        B, C = canvas.shape
        assert 0 < hole <= C, f"hole {hole} must be within the canvas ({C})"
        canvas = canvas.to(self.device)
        prefix, rotary = self.canvas_inputs(cache, C)
        canvas_pass = self._canvas_pass
        conditioned = None if self_condition is None else self_condition.to(self.device)
        if self.cuda_graphs and not self.compiled:
            if self._graphed_pass is None:
                self._graphed_pass = GraphedCanvasPasses(self._canvas_pass, self.device)
            try:
                return self._graphed_pass(canvas, hole, conditioned, prefix, rotary, cache.version)
            except GraphCaptureError as error:
                log.warning("CUDA graphs off: the canvas pass cannot be recorded (%s)", error)
                self.cuda_graphs = False
        if self.compiled:
            if self._compiled_pass is None:
                # one graph per thread count, first step or not, and (after `warm_up`) any size: more than
                # torch's default of 8 graphs a function before it falls back to eager for good
                torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 32)
                self._compiled_pass = torch.compile(self._canvas_pass)
            canvas_pass = self._compiled_pass
            # the prefix length, canvas and hole vary from fill to fill: one graph for all of them, not a
            # static one first and then, at each dimension's first change, a recompile in a user's fill
            for tensor, dim in [(canvas, 1), *((keys, 1) for pair in prefix for keys in pair)]:
                torch._dynamo.maybe_mark_dynamic(tensor, dim)
            if conditioned is not None:
                torch._dynamo.maybe_mark_dynamic(conditioned, 1)
        with self._between_products():
            return canvas_pass(canvas, hole, conditioned, prefix, rotary)

    def canvas_inputs(
        self, cache: DiffusionGemmaKV, C: int
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
        """What a canvas of C slots after `cache` reads besides its tokens: per layer the prefix keys and values
        (kv heads, L', d) it sees (none while the cache is empty), and per layer its rotary cos and sin."""
        L = cache.length
        # rotary tables per layer type (kept for the fill's next steps)
        kept = self._canvas_rotary
        if kept is None or kept[0] != (L, C):
            like = self.decoder.embed_tokens.weight
            kept = self._canvas_rotary = ((L, C), self._rotary(self.decoder.rotary_emb, L, C, like))
        rotary = [kept[1][kind] for kind in self.layer_types]

        # sliding layers see what transformers' sliding cache keeps, the last window - 1 tokens
        prefix: list[tuple[torch.Tensor, torch.Tensor]] = []
        for index, kind in enumerate(self.layer_types):
            layer_kv = cache.layer(index)
            if layer_kv is None:
                break
            seen = self.window - 1 if kind == "sliding_attention" and self.window is not None else L
            keys, values = layer_kv  # (1, kv heads, L, d)
            if seen < L:
                keys, values = keys[:, :, L - seen :], values[:, :, L - seen :]
                if self.compiled:  # a view's strides depend on L: compiled code would recompile for each L
                    keys, values = keys.contiguous(), values.contiguous()
            # without the batch dimension, whose stride (not its size) compiled code would check for each L
            prefix.append((keys[0], values[0]))  # (kv heads, L', d)
        return prefix, rotary

    def _canvas_pass(
        self,
        canvas: torch.Tensor,
        hole: int,
        self_condition: torch.Tensor | None,
        prefix: list[tuple[torch.Tensor, torch.Tensor]],
        rotary: list[tuple[torch.Tensor, torch.Tensor]],
        masks: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The decoder over the canvas (B, C), reading each layer's prefix keys and values (kv heads, L', d)
        (none while the cache is empty) with its cos and sin (1, C, d) -> float32 logits (B, hole, V).
        `masks`: per layer with prefix keys, which of its L' + C keys a query may see, (1, 1, 1, L' + C) bool
        (CUDA graphs pad the prefix); None: all of them.
        Tensors and a static layout only, so that torch.compile and CUDA graphs can take it whole."""
        decoder = self.decoder
        B = canvas.shape[0]

        # 1. token embeddings plus the self-conditioning signal (zero at the first step, as generate() does)
        x = decoder.embed_tokens(canvas)  # (B, C, D), already scaled by sqrt(D)
        if self_condition is not None:
            embed = decoder.embed_tokens
            probs = self_condition.softmax(dim=-1, dtype=torch.float32).to(embed.weight.dtype)
            scale = embed.embed_scale.to(x.dtype)
            soft_hole = self._soft_embedding(probs, embed.weight) * scale  # (B, hole, D)
            soft = torch.cat((soft_hole, x[:, hole:]), dim=1)  # (B, C, D): suffix slots see their own token
        else:
            soft = None  # zero
        x = self._self_conditioning(x, soft)  # (B, C, D)

        # 2. the layers: bidirectional over the visible prefix keys and the canvas, no mask
        for index, (layer, (cos, sin)) in enumerate(zip(self._decoder_layers, rotary, strict=True)):
            queries, keys, values = layer.project(layer.module.input_layernorm(x), cos, sin)
            if index < len(prefix):
                prefix_keys, prefix_values = prefix[index]  # (kv heads, L', d)
                keys = torch.cat((prefix_keys.expand(B, -1, -1, -1), keys), dim=2)  # (B, kv heads, L' + C, d)
                values = torch.cat((prefix_values.expand(B, -1, -1, -1), values), dim=2)
            mask = masks[index] if masks is not None and index < len(masks) else None
            out = self._attention(
                queries, keys, values, attn_mask=mask, scale=layer.attn.scaling,
                enable_gqa=queries.shape[1] != keys.shape[1],
            )  # (B, heads, C, d)
            x = layer.after_attention(x, out)  # (B, C, D)

        # 3. norm, LM head and soft-capping on the hole slots only
        logits = self.model.lm_head(decoder.norm(x[:, :hole])).float()  # (B, hole, V), a new tensor
        return logits if self.softcap is None else soft_cap_(logits, self.softcap)

    def _rotary(
        self, rotary_emb: torch.nn.Module, start: int, length: int, like: torch.Tensor
    ) -> RotaryTables:
        """cos and sin (1, length, d) of positions start.. for each layer type."""
        positions = torch.arange(start, start + length, device=self.device)[None]  # (1, length)
        return {kind: rotary_emb(like, positions, kind) for kind in set(self.layer_types)}


def soft_cap_(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """cap * tanh(logits / cap), in place, written as 2 cap * sigmoid(2 logits / cap) - cap: equal within the
    float32 rounding of 2 cap * 0.5 (7e-6 for a cap of 30; tanh's own 2e-6), and 4x faster on the CPU, where
    tanh over (hole, V) logits costs what the LM head does."""
    return logits.mul_(2 / cap).sigmoid_().mul_(2 * cap).sub_(cap)


# ---- one layer, in transformers' order of operations ------------------------------------------------------


class _PrefixSteps(NamedTuple):
    """An encoder layer's work before its attention (x (1, T, D) and cos, sin -> queries, keys, values, or
    keys and values alone for the last layer) and after it (x and the attention output -> x)."""

    attention_inputs: Callable[..., tuple[torch.Tensor, ...]]
    keys_values: Callable[..., tuple[torch.Tensor, ...]]
    after_attention: Callable[..., torch.Tensor]

    @classmethod
    def of(cls, layer: _Layer, any_rows: bool = False) -> _PrefixSteps:
        """any_rows: few experts run densely on any number of rows (static shapes, for torch.compile)."""
        return cls(
            layer.attention_inputs,
            layer.cached_inputs,
            functools.partial(layer.after_attention, dense_experts_any_rows=any_rows),
        )


DENSE_EXPERTS_MAX_ROWS = 256  # a canvas (or a few): small enough that the number of products dominates


class _Layer:
    """A transformers encoder or decoder layer, run step by step through its own submodules.

    Fused (on the CPU): q, k and v come from one matrix product with their weights concatenated, the MLP's
    gate and up from another. On every device, when the experts are few (at most twice top-k) and the rows
    few (a canvas), every expert runs on every row in two products and the chosen ones are kept: twice the
    arithmetic of top-2 of 4, a third of the products, and static shapes (a CUDA graph can record them, where
    transformers' grouped experts in float32 copy counts to the host). Each output element is the same sum of
    products as unfused.
    """

    def __init__(self, module: torch.nn.Module, fuse: bool, shared: dict[tuple[int, ...], torch.Tensor]):
        self.module = module
        self.attn = module.self_attn
        attn, mlp, experts = self.attn, module.mlp, module.experts
        projections = [attn.q_proj, attn.k_proj] + ([attn.v_proj] if attn.v_proj is not None else [])
        self.qkv_sizes = [p.out_features for p in projections]
        plain = all(p.bias is None for p in [*projections, mlp.gate_proj, mlp.up_proj])
        self.qkv = _concatenated([p.weight for p in projections], shared) if fuse and plain else None
        self.gate_up = (
            _concatenated([mlp.gate_proj.weight, mlp.up_proj.weight], shared) if fuse and plain else None
        )
        # transformers' default experts layout: [gate; up] rows per expert, no bias, no post-expert norm
        default_layout = (
            getattr(experts, "is_concatenated", True)
            and not getattr(experts, "is_transposed", False)
            and not getattr(experts, "has_bias", False)
            and not getattr(experts, "has_post_expert_norm", False)
            and getattr(experts, "has_gate", True)
        )
        top_k = module.router.config.top_k_experts
        self.dense_experts = default_layout and experts.num_experts <= 2 * top_k
        self.linear: Callable[..., torch.Tensor] = F.linear  # the products made here (see the backend's
        self.bmm: Callable[..., torch.Tensor] = torch.bmm  # `_products_on_all_threads`)

    def keys_values(
        self, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, fused: tuple[torch.Tensor, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """normed (B, S, D) -> keys and values (B, kv heads, S, d), as the attention module caches them.
        `fused`: the k and v parts of a fused q/k/v product, when the caller made one."""
        attn = self.attn
        B, S, _ = normed.shape
        shape = (B, S, -1, attn.head_dim)
        if fused:
            keys = fused[0].view(shape)
            values = fused[1].view(shape) if len(fused) > 1 else keys
        elif self.qkv is not None:  # only k and v are wanted: their rows of the fused weight
            parts = self.linear(normed, self.qkv[self.qkv_sizes[0] :]).split(self.qkv_sizes[1:], dim=-1)
            return self.keys_values(normed, cos, sin, parts)
        else:
            keys = attn.k_proj(normed).view(shape)
            # full layers: v = k
            values = attn.v_proj(normed).view(shape) if attn.v_proj is not None else keys
        keys = apply_rotary_pos_emb(attn.k_norm(keys), cos, sin, unsqueeze_dim=2).transpose(1, 2)
        return keys, attn.v_norm(values).transpose(1, 2)

    def attention_inputs(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, S, D), before the input norm -> queries, keys and values (`project`)."""
        return self.project(self.module.input_layernorm(x), cos, sin)

    def cached_inputs(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, S, D), before the input norm -> keys and values (`keys_values`)."""
        return self.keys_values(self.module.input_layernorm(x), cos, sin)

    def project(
        self, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """normed (B, S, D) -> queries (B, heads, S, d), keys and values (B, kv heads, S, d)."""
        attn = self.attn
        B, S, _ = normed.shape
        if self.qkv is not None:
            queries, *fused = self.linear(normed, self.qkv).split(self.qkv_sizes, dim=-1)
        else:
            queries, fused = attn.q_proj(normed), []
        queries = attn.q_norm(queries.view(B, S, -1, attn.head_dim))
        queries = apply_rotary_pos_emb(queries, cos, sin, unsqueeze_dim=2).transpose(1, 2)
        return (queries, *self.keys_values(normed, cos, sin, tuple(fused)))

    def after_attention(
        self, x: torch.Tensor, out: torch.Tensor, dense_experts_any_rows: bool = False
    ) -> torch.Tensor:
        """The rest of the layer: x (B, S, D) and the attention output (B, heads, S, d) -> (B, S, D).
        dense_experts_any_rows: few experts run densely however many rows (see `experts`)."""
        layer = self.module
        B, S, _ = x.shape
        x = x + layer.post_attention_layernorm(self.attn.o_proj(out.transpose(1, 2).reshape(B, S, -1)))
        # the dense MLP and the experts side by side
        normed = layer.pre_feedforward_layernorm(x)
        mlp = layer.mlp
        if self.gate_up is not None:
            gate, up = self.linear(normed, self.gate_up).chunk(2, dim=-1)
            dense = mlp.down_proj(mlp.act_fn(gate) * up)
        else:
            dense = mlp(normed)
        dense = layer.post_feedforward_layernorm_1(dense)
        # (B*S, D): the router reads the residual stream, the experts its norm
        flat = x.reshape(-1, x.shape[-1])
        _, weights, chosen = layer.router(flat)  # (B*S, top-k) each
        normed_2 = layer.pre_feedforward_layernorm_2(flat)
        experts = self.experts(normed_2, chosen, weights, dense_experts_any_rows).reshape(x.shape)
        x = x + layer.post_feedforward_layernorm(dense + layer.post_feedforward_layernorm_2(experts))
        return x * layer.layer_scalar

    def experts(
        self, x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor, any_rows: bool = False
    ) -> torch.Tensor:
        """x (N, D), chosen experts and their weights (N, top-k) -> (N, D). Dense (when the experts are few)
        up to DENSE_EXPERTS_MAX_ROWS rows, or on any number of rows with `any_rows`."""
        experts = self.module.experts
        N = x.shape[0]
        if not self.dense_experts or (N > DENSE_EXPERTS_MAX_ROWS and not any_rows):
            return experts(x, chosen, weights)  # transformers' configured implementation
        E, two_i, D = experts.gate_up_proj.shape
        gate, up = self.linear(x, experts.gate_up_proj.view(E * two_i, D)).view(N, E, two_i).chunk(2, dim=-1)
        hidden = (experts.act_fn(gate) * up).transpose(0, 1)  # (E, N, I)
        out = self.bmm(hidden, experts.down_proj.transpose(1, 2))  # (E, N, D): every expert on every row
        picked = out[chosen, torch.arange(N, device=x.device)[:, None]]  # (N, top-k, D)
        # weighted, then summed over the top-k in order, as transformers' grouped experts do
        return (picked * weights[..., None]).sum(dim=1).to(x.dtype)


class _SelfConditioning:
    """The decoder's self-conditioning block: x + MLP(pre_norm(signal)), then post_norm; gate and up fused."""

    def __init__(self, block: torch.nn.Module, fuse: bool):
        self.block = block
        linears = (block.gate_proj, block.up_proj, block.down_proj)
        plain = all(linear.bias is None for linear in linears)
        self.gate_up = (
            _concatenated([block.gate_proj.weight, block.up_proj.weight], {}) if fuse and plain else None
        )
        self.zero_maps_to_zero = plain  # no biases: a zero signal contributes exactly zero
        self.linear: Callable[..., torch.Tensor] = F.linear

    def __call__(self, x: torch.Tensor, signal: torch.Tensor | None) -> torch.Tensor:
        """x (B, C, D) embeddings, signal (B, C, D) soft embeddings or None for zero -> (B, C, D)."""
        block = self.block
        if signal is None:
            if self.zero_maps_to_zero:
                return block.post_norm(x)  # what the block makes of x plus a zero signal
            signal = torch.zeros_like(x)
        if self.gate_up is None:
            return block(x, signal)
        gate, up = self.linear(block.pre_norm(signal), self.gate_up).chunk(2, dim=-1)
        return block.post_norm(x + block.down_proj(block.act_fn(gate) * up))


def _concatenated(weights: list[torch.Tensor], shared: dict[tuple[int, ...], torch.Tensor]) -> torch.Tensor:
    """The weights stacked by rows, made once for weights that several modules share."""
    key = tuple(weight.data_ptr() for weight in weights)
    if key not in shared:
        shared[key] = torch.cat([weight.detach() for weight in weights])
    return shared[key]


def _causal_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    start: int,
    window: int | None,
    scale: float,
) -> torch.Tensor:
    """queries (1, heads, T, d) at positions start..start+T-1 over keys/values (1, kv heads, start+T, d) at
    positions 0..: each query sees the keys at or before it, and with a window only the last `window` of
    them (itself included), as transformers' sliding-window mask does. -> (1, heads, T, d)."""
    T = queries.shape[2]
    gqa = queries.shape[1] != keys.shape[1]
    if window is None:
        if start == 0:
            return F.scaled_dot_product_attention(
                queries, keys, values, is_causal=True, scale=scale, enable_gqa=gqa
            )
        return _masked_attention(queries, keys, values, start, start + T, 0, None, scale)
    # a window: query blocks of `window` positions, each reading only the keys its window can reach
    block = max(window, 1)
    out = [
        _masked_attention(
            queries[:, :, a : a + block],
            keys,
            values,
            start + a,
            start + min(a + block, T),
            max(0, start + a - window + 1),
            window,
            scale,
        )
        for a in range(0, T, block)
    ]
    return out[0] if len(out) == 1 else torch.cat(out, dim=2)


def _masked_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    first: int,
    end: int,
    key_start: int,
    window: int | None,
    scale: float,
) -> torch.Tensor:
    """Queries at positions first..end-1 over keys key_start..end-1, causal (and within `window`)."""
    keys, values = keys[:, :, key_start:end], values[:, :, key_start:end]
    query_positions = torch.arange(first, end, device=queries.device)[:, None]  # (T', 1)
    key_positions = torch.arange(key_start, end, device=queries.device)[None]  # (1, K)
    mask = key_positions <= query_positions  # (T', K)
    if window is not None:
        mask &= key_positions > query_positions - window
    groups = queries.shape[1] // keys.shape[1]
    if groups > 1:  # transformers repeats the key heads when it passes a mask
        keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, scale=scale)


def _compile_choice(device: torch.device, compiled: bool | None) -> bool:
    """`compiled`, else $DGEM_INFILL_COMPILE: on, off, or auto (on for a CPU)."""
    if compiled is not None:
        return compiled
    name = os.environ.get(COMPILE_ENV, "auto").strip().lower()
    if name not in ("auto", "on", "off"):
        raise ModelLoadError(f"${COMPILE_ENV}={name!r}: expected auto, on or off")
    return name == "on" or (name == "auto" and device.type == "cpu")


def _load_error(source: str, error: Exception) -> ModelLoadError:
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else type(error).__name__
    return ModelLoadError(f"{source}: cannot load DiffusionGemma ({first_line})")


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _first(value: int | list[int] | None) -> int | None:
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value
