"""Find and read a model directory: config.json, generation_config.json, weights, tokenizer.

A model is named by a local directory or a Hugging Face id (resolved from the local cache, offline
when HF_HUB_OFFLINE is set). Weights are read from safetensors only, never pickle.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file

from engine.types import ModelLoadError

SHIPPED_MODEL = Path(__file__).resolve().parent / "weights"


LENGTH_CHOICES = ("score", "vote", "likelihood")


@dataclass(frozen=True)
class GenerationDefaults:
    """Sampler defaults; a model directory's generation_config.json overrides them."""

    default_slots: int = 16  # hole slots when the caller gives no length (single line)
    multiline_slots: int = 64
    suffix_head_tokens: int = 64  # suffix tokens placed on the canvas after the hole
    tokens_per_step: float = 2.0  # mask noise: slots committed per step on average
    multiline_tokens_per_step: float = 4.0  # multi-line holes are larger and less sensitive to it
    max_steps: int = 48
    temperature: float = 0.0  # mask noise: 0 = greedy for the first alternative
    fit_length: bool = False  # mask noise: probe the fill's length with one forward before denoising
    length_margin: int = 2  # slots kept beyond the probed length
    # mask noise, after a probe that shrank the hole: probe again over the shorter hole, up to this many
    # times or until the length holds (a shorter hole moves the suffix closer, and the guess can change)
    reprobe_rounds: int = 0
    # mask noise, with the probe: fill at these offsets from the probed hole size, every size a row of one
    # batched fill, and keep one of them by `length_choice` (() = off)
    length_offsets: tuple[int, ...] = ()
    # how one of those fills is kept: "score" (the best mean log-probability), "vote" (the text most of the
    # fills agree on; a tie goes to the larger hole's text, which has room for the whole fill) or
    # "likelihood" (the causal pass's log-probability of the fill followed by the rest of the suffix's line:
    # every candidate continues the same document, so the sums compare across lengths)
    length_choice: str = "score"
    # "likelihood" scores each fill followed by this many lines of the suffix (1: the rest of the hole's line;
    # more lets the lines after the hole judge a fill, e.g. one that leaves a bracket open)
    likelihood_suffix_lines: int = 1
    # "likelihood" adds this much to a fill's log-probability for each token of the fill (> 0: the longer of
    # two fills wins more often; the causal pass alone prefers a line cut short)
    likelihood_token_bonus: float = 0.0
    # "likelihood" scores the prefix's last this many tokens again, as one text with the fill: a hole that
    # starts inside a word (`'use s|trict'`) otherwise leaves the causal pass a split it never saw in
    # training (` s` + `trict` for ` strict`), and the fill that joins the split best is not the one it likes
    likelihood_heal_tokens: int = 0
    # "likelihood" also ranks up to this many of the request's document_candidates (text that followed the
    # same context elsewhere in the document) with the model's fills (0: off)
    document_candidates: int = 0
    # a document candidate whose surroundings match the hole's over at least this many characters goes before
    # every fill with as few syntax errors, whatever the likelihood: the causal pass reads 512 tokens of prefix
    # and finds a line it cannot see unlikely (0: never)
    document_candidate_trusted_chars: int = 0
    # "likelihood" also ranks a fill written after a document word's characters, where every fill finishes
    # the cursor's word into a word the document never spells (the request's word_completion; False: off)
    retype_unknown_words: bool = False
    # length_offsets apply to holes asked with at most this many slots (single-line holes: a multi-line
    # fill's rows cost too much to multiply) and to fills without alternatives
    length_offsets_max_slots: int = 32
    # mask noise: the suffix head runs through the network every this many steps and its keys are reused
    # in between (1: every step, the exact computation; 0: only in a block's first step)
    suffix_refresh_steps: int = 1
    commit_confidence: float = 1.0  # mask noise: also commit every slot this certain (>= 1.0: off)
    # with the suffix head kept: a probe that shrinks the hole moves its kept keys to their new positions
    # instead of running the head again in the first step
    probe_moves_suffix_head: bool = False
    # with the suffix head kept: a document's next fill before the same suffix and hole size reuses the keys
    # of its last fill's first pass (a probe, or a multi-line fill's first step), moved to their new
    # positions, and runs the hole slots alone (keys that lag the edit)
    suffix_head_across_fills: bool = False
    # mask noise: the last layer, LM head and sampler run on still-masked slots only (exact: a committed
    # slot's logits are never read)
    masked_rows_only: bool = False
    # mask noise, with the suffix head kept: a committed slot's keys are kept from the step after its commit,
    # and the steps between full hole passes run only the still-masked slots and those just committed (keys
    # that lag); the whole hole runs every this many steps (1: every step, exact; 0: only in the first pass)
    hole_refresh_steps: int = 1
    # mask noise: pads may also be committed left of committed text, not only from the hole's right end
    # (ConfidenceCommit); for models trained with pad runs inside the middle (examples.place_pads)
    inner_pads: bool = False
    # mask noise, with the probe: the margin's slots take text only left to right, each once its left
    # neighbour holds text, so that a fill cannot anchor its last token (a line's `;`) at the hole's far end
    # and be forced to write text into the slots between
    margin_in_order: bool = False
    # mask noise: added to the pad token's logit in every denoising step (> 0: fills end sooner)
    pad_logit_bias: float = 0.0
    # mask noise: the same for a multi-line hole, filled without a probe in as many slots as a few lines may
    # need (the service's and the evaluation's multi-line fills ask for it); < 0: fills end later
    multiline_pad_logit_bias: float = 0.0
    # mask noise: a step's k commits go to slots that are not neighbours where the free slots allow it
    # (two neighbours committed in one step are chosen independently of each other: `= =`, `from from`)
    spread_commits: bool = False
    # mask noise, a single-block fill without alternatives, for a model with an expand token (config.json
    # special_tokens): a slot committed as expand becomes two masked slots, so a fill that started short
    # grows while it denoises, up to the slots asked for (a probed hole may grow back to that budget)
    expand: bool = False
    # added to the expand token's logit while a fill may grow (< 0: a slot grows only where the model is sure)
    expand_logit_bias: float = 0.0
    # mask noise: a step commits only among the first this many still-masked slots of the hole, left to
    # right (semi-autoregressive), and reads only their logits; the masked slots after them wait with the keys
    # of their last pass, and a pad there counts as the hole's end (0: any masked slot, the whole hole read)
    commit_window: int = 0
    # mask noise: of two neighbouring slots that one step would commit to the same text token, the less certain
    # waits a step (each was predicted without the other's token, and both often start the same word)
    hold_twin_commits: bool = False
    # uniform noise (DiffusionGemma)
    entropy_bound: float = 0.1
    t_max: float = 0.8
    t_min: float = 0.4
    stability_threshold: int = 1
    confidence_threshold: float = 0.005

    def __post_init__(self) -> None:
        if self.length_choice not in LENGTH_CHOICES:
            raise ValueError(f"length_choice must be one of {LENGTH_CHOICES} (got {self.length_choice!r})")

    @classmethod
    def from_dict(cls, values: dict) -> GenerationDefaults:
        # a Hugging Face generation_config.json carries many keys of its own: take only ours
        known = {f.name: f.type for f in fields(cls)}
        chosen = {k: v for k, v in values.items() if k in known and v is not None}
        if "length_offsets" in chosen:  # JSON has lists, the frozen defaults keep tuples
            chosen["length_offsets"] = tuple(int(offset) for offset in chosen["length_offsets"])
        return cls(**chosen)


def resolve_model(source: str | None) -> Path:
    """A local directory, the shipped model (None), or a Hugging Face id found in the local cache."""
    if source is None:
        return SHIPPED_MODEL
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise ModelLoadError(f"{source}: not a model directory")
    try:
        from huggingface_hub import snapshot_download

        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        return Path(snapshot_download(source, local_files_only=offline))
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{source}: cannot load from the Hugging Face cache ({first_line})") from None


def read_json(path: Path, required: bool = True) -> dict:
    if not path.is_file():
        if required:
            raise ModelLoadError(f"{path.parent}: missing {path.name}")
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path}: unreadable ({error})") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return value


def safetensors_files(model_dir: Path) -> list[Path]:
    """model.safetensors, or the shards named by model.safetensors.index.json."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map", {})
        return [model_dir / name for name in sorted(set(weight_map.values()))]
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    raise ModelLoadError(f"{model_dir}: no model.safetensors (weights are read from safetensors only)")


def load_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint; int8 row-wise weights (NAME + NAME.scale) dequantised to float32."""
    raw: dict[str, torch.Tensor] = {}
    for file in safetensors_files(model_dir):
        if not file.is_file():
            raise ModelLoadError(f"{model_dir}: missing weight shard {file.name}")
        try:
            raw.update(load_file(str(file)))
        except Exception as error:
            raise ModelLoadError(f"{file}: unreadable safetensors ({error})") from None
    state: dict[str, torch.Tensor] = {}
    for name, tensor in raw.items():
        if name.endswith(".scale"):
            continue
        scale = raw.get(name + ".scale")
        if tensor.dtype == torch.int8 and scale is not None:
            state[name] = tensor.float() * scale.float()[:, None]
        else:
            state[name] = tensor.float()
    return state
