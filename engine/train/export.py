"""Write the model folder the engine loads (`engine/weights/`) from a training checkpoint.

Writes config.json, int8 row-wise safetensors (sharded under 16 MiB), tokenizer.json,
generation_config.json, train_state.json and MODEL_CARD.md; measures on held-out files the loss of the
bf16 weights against the int8 ones, and single-line exact match.

Usage:
    python -m engine.train.export --ckpt /tmp/dgem/ckpt --tokenizer tokenizer.json \\
        --corpus /tmp/dgem/corpus --manifest engine/train/manifest.jsonl.xz --out engine/weights
    python -m engine.train.export --card-only --manifest engine/train/manifest.jsonl.xz --out engine/weights
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import time
from collections import Counter
from pathlib import Path

import torch
from tokenizers import Tokenizer

from engine.native import NativeConfig, NativeModel
from engine.train.corpus import load_split
from engine.train.examples import Layout, Texts, fixed_batches
from engine.train.heldout import exact_match, held_out_losses
from engine.train.objective import use_table_rotary
from engine.train.quantize import dequantize_int8, quantize_int8, save_sharded
from engine.train.tokenizer import EXPAND
from engine.train.train import LANGUAGE_WEIGHTS, load_weights

# the decoding defaults chosen on the held-out holes (MODEL_CARD.md; the service's, in engine/model_dir.py)
GENERATION = {"default_slots": 16, "multiline_slots": 64, "suffix_head_tokens": 64, "tokens_per_step": 2,
              "max_steps": 48, "fit_length": True, "multiline_tokens_per_step": 4,
              "suffix_refresh_steps": 0, "commit_confidence": 0.8, "probe_moves_suffix_head": True,
              "suffix_head_across_fills": True, "masked_rows_only": True, "hole_refresh_steps": 0,
              "length_offsets": [-2, -1, 0, 1, 2], "length_choice": "likelihood", "multiline_pad_logit_bias": -2,
              "likelihood_token_bonus": 0.5, "likelihood_heal_tokens": 2, "commit_window": 16,
              "document_candidates": 1, "document_candidate_trusted_chars": 64,
              "retype_unknown_words": True, "hold_twin_commits": True}
SPECIAL = {"pad": 0, "eos": 1, "bos": 2, "mask": 3}
# The card's hand-written measurements (held-out infilling, decoding choices): kept in the source tree so
# that an export, which regenerates the card from the training state, never drops them.
MEASUREMENTS = Path(__file__).with_name("model_card_measurements.md")


def model_config(cfg: NativeConfig, layout: Layout, expand: bool = False) -> dict:
    """`expand`: the model was trained with <expand> slots (Layout.expand_share), so config.json names the id."""
    special = {**SPECIAL, "expand": EXPAND} if expand else SPECIAL
    # the prefix limit is the trained one: on held-out files a 1024-token prefix scored +0.12 nats worse
    # than 512 (rotary positions past those seen in training)
    return {"model_type": "dgem_native", "noise": "mask", "architecture": cfg.to_dict(), "special_tokens": special,
            "max_prefix_tokens": layout.prefix_tokens, "canvas_length": 256, "quantization": "int8_rowwise"}


def measure(state: dict, cfg: NativeConfig, args: argparse.Namespace, device: torch.device) -> dict:
    """Held-out losses for the bf16 and the int8 weights, and exact match with the int8 ones."""
    layout = Layout()
    tok = Tokenizer.from_file(str(args.tokenizer))
    texts = Texts(load_split(args.corpus, "eval"), LANGUAGE_WEIGHTS)
    batches = fixed_batches(tok, texts, layout, args.eval_batches, args.eval_batch_size)
    result = {}
    for name, weights in (("bf16", state), ("int8", dequantize_int8(quantize_int8(state)))):
        model = use_table_rotary(NativeModel(cfg).to(device))
        model.load_state_dict(weights)
        result[name] = held_out_losses(model, batches, layout.hole_slots, device)
    result["exact_match"] = exact_match(model, tok, texts, layout, device, count=args.exact_match_examples)
    result["examples"] = args.eval_batches * args.eval_batch_size
    return result


def corpus_summary(manifest: Path) -> dict:
    files, size, licences, origins = Counter(), Counter(), Counter(), Counter()
    with lzma.open(manifest, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            lang = "Python" if row["path"].endswith(".py") else "JavaScript/TypeScript"
            files[(lang, row["split"])] += 1
            size[(lang, row["split"])] += row["bytes"]
            licences[row["licence"]] += row["bytes"]
            origins[row["origin"].rsplit("@", 1)[0]] += row["bytes"]
    return {"files": files, "bytes": size, "licences": licences, "origins": origins}


# how the last run drew a hole's spare pad slots (examples.spare_slots), in the card's words
SPARE_DRAW_WORDS = {
    "uniform": "uniform in 1..max(16, m)",
    "short": "in the last run half log-uniform, half uniform in 1..max(16, m)",
    "short-and-wide": "in the last run half log-uniform in 1..max(16, m), half uniform in 1..max(64, m)",
}


def card(cfg: NativeConfig, params: int, files: list[str], folder: Path, train: dict, quality: dict | None,
         summary: dict | None) -> str:
    size_mb = sum((folder / f).stat().st_size for f in files) / 1e6
    lines = [
        "# dgem-infill native model", "",
        "A small masked-diffusion infiller for code (Python, JavaScript, TypeScript), trained from scratch.",
        "Layout: causal pass over the prefix (KV cache), bidirectional pass over [hole slots][suffix head].", "",
        "## Size", "",
        f"- {params / 1e6:.2f}M parameters: dim {cfg.dim}, {cfg.n_layers} layers, {cfg.n_heads} heads, "
        f"FFN {cfg.ffn_dim}, vocabulary {cfg.vocab_size}, tied embeddings",
        f"- weights: int8 row-wise with float32 per-row scales, {size_mb:.1f} MB in {len(files)} file(s)", "",
        "## Training", "",
        f"- steps: {train.get('step', 0)}, examples: {train.get('examples', 0):,}, "
        f"tokens seen (real prefix + canvas tokens): {train.get('tokens', 0) / 1e9:.3f}B",
        f"- training time: {train.get('train_seconds', 0) / 60:.1f} minutes on one GPU at a time (H100, later "
        f"H200; bf16 autocast, torch.compile, AdamW, warmup-stable-decay), {train.get('runs', 0)} process(es)",
        "- objective: masked diffusion on the hole (t ~ U(0,1], masked slots only) + 0.5 x next-token loss "
        "on the prefix; holes cut at character positions: single line 35%, 2-8 lines 25%, short mid-line "
        "span 20%, random span 15%, empty 5%; 30% of holes have the true length, the rest extra <pad> slots "
        f"({SPARE_DRAW_WORDS[train.get('layout', {}).get('spare_draw', 'uniform')]})",
    ]
    if train.get("new_blocks"):
        lines.append(f"- grown deeper in its last run: blocks {', '.join(map(str, train['new_blocks']))} were added "
                     "as identities (`grow.py`) and trained with the rest")
    if "last_train" in train:
        last = train["last_train"]
        lines.append(f"- last logged training losses: diffusion {last['diffusion']:.3f}, "
                     f"next-token {last['next_token']:.3f}; throughput {last['tokens_per_s'] / 1e6:.2f}M tokens/s, "
                     f"peak GPU memory {last.get('max_memory_gb', 0):.0f} GB at batch 192")
    if quality:
        bf16, int8, em = quality["bf16"], quality["int8"], quality["exact_match"]
        lines += [
            "", "## Measured quality (held-out files, never trained on)", "",
            f"{quality['examples']} held-out examples of the training mix, noise levels stratified over (0, 1]:", "",
            "| weights | diffusion loss | next-token loss |", "| --- | --- | --- |",
            f"| bf16 | {bf16['diffusion']:.4f} | {bf16['next_token']:.4f} |",
            f"| int8 (shipped) | {int8['diffusion']:.4f} | {int8['next_token']:.4f} |", "",
            f"int8 cost: {int8['diffusion'] - bf16['diffusion']:+.4f} diffusion, "
            f"{int8['next_token'] - bf16['next_token']:+.4f} next-token (nats).", "",
            f"Single-line exact match ({em['examples']} holes from the cursor to the line end, middles of "
            "1-16 tokens, int8 weights, plain decoder committing the 2 most confident slots per step): "
            f"true length {em['true_length']:.1%}, 16 slots with pads {em['slots16']:.1%}.",
        ]
    if MEASUREMENTS.exists():
        lines += ["", MEASUREMENTS.read_text().strip()]
    if summary:
        lines += ["", "## Data", "",
                  "Permissively licensed source only; every file is listed with origin, licence and sha256 in "
                  "`engine/train/manifest.jsonl.xz`. Files are deduplicated by content; ~2% of files are held "
                  "out by hash.", "", "| language | split | files | MB |", "| --- | --- | --- | --- |"]
        for key in sorted(summary["files"]):
            lines.append(f"| {key[0]} | {key[1]} | {summary['files'][key]:,} | {summary['bytes'][key] / 1e6:.1f} |")
        lines += ["", "Licences (by bytes): " + ", ".join(
            f"{name} {count / 1e6:.1f} MB" for name, count in summary["licences"].most_common()) + ".",
            "", "Largest sources: " + ", ".join(
                f"{name} ({count / 1e6:.1f} MB)" for name, count in summary["origins"].most_common(25)) + "."]
    lines += ["", "Loss curve: `engine/train/loss_curve.png` (log: `engine/train/loss_log.jsonl`).", "",
              "## Limits", "",
              "- Small and briefly trained: expect short, local completions (finish a line, a call, an argument).",
              "- Given more slots than the fill needs, <pad> slots are the most confident ones; a sampler must not",
              "  commit pads ahead of text (grow the pad run from the right end only).",
              "- Only Python and JavaScript/TypeScript were seen in training.",
              "- Trained with prefixes of at most 512 tokens (<bos> included), so config.json says",
              "  max_prefix_tokens 512: on long held-out Python files the hole loss was 1.19 nats with 512 prefix",
              "  tokens, 1.25 with 768 and 1.31 with 1024 (96 holes, same holes each time).",
              "", "## Reproduce", "",
              "See `engine/train/README.md`: `engine/train/device.sh` runs corpus, tokenizer, training and export on",
              "the GPU machine; `python -m engine.train.export --card-only` rewrites this card.", ""]
    return "\n".join(lines)


def rewrite_card(args: argparse.Namespace) -> None:
    train = json.loads((args.out / "train_state.json").read_text())
    cfg = NativeConfig.from_dict(train["config"])
    index = args.out / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else [
        "model.safetensors"]
    params = sum(p.numel() for p in NativeModel(cfg).parameters())
    summary = corpus_summary(args.manifest) if args.manifest and args.manifest.exists() else None
    (args.out / "MODEL_CARD.md").write_text(card(cfg, params, files, args.out, train, train.get("quality"), summary))
    print(f"rewrote {args.out / 'MODEL_CARD.md'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, help="checkpoint folder (or an exported model folder)")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer.json to ship")
    parser.add_argument("--out", type=Path, default=Path("engine/weights"))
    parser.add_argument("--corpus", type=Path, default=None, help="corpus folder: measure held-out quality")
    parser.add_argument("--manifest", type=Path, default=None, help="manifest.jsonl.xz: data table in the card")
    parser.add_argument("--eval-batches", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=64, help="as in training, for comparable losses")
    parser.add_argument("--card-only", action="store_true",
                        help="rewrite OUT/MODEL_CARD.md from OUT/train_state.json; weights untouched")
    parser.add_argument("--exact-match-examples", type=int, default=512)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.card_only:
        rewrite_card(args)
        return
    if args.ckpt is None or args.tokenizer is None:
        parser.error("--ckpt and --tokenizer are required unless --card-only")

    train = json.loads((args.ckpt / "state.json").read_text()) if (args.ckpt / "state.json").exists() else {}
    if not train and (args.ckpt / "train_state.json").exists():
        train = json.loads((args.ckpt / "train_state.json").read_text())
    train.pop("param_groups", None)
    cfg = NativeConfig.from_dict(train.get("config") or json.loads((args.ckpt / "config.json").read_text())["architecture"])
    state = load_weights(args.ckpt)
    log = args.ckpt / "log.jsonl"
    if log.exists():
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        rows = [row for row in rows if "diffusion" in row]
        if rows:
            train["last_train"] = rows[-1]

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    files = save_sharded(quantize_int8(state), args.out)
    expand = float(train.get("layout", {}).get("expand_share", 0.0)) > 0
    (args.out / "config.json").write_text(json.dumps(model_config(cfg, Layout(), expand), indent=2) + "\n")
    (args.out / "generation_config.json").write_text(json.dumps(GENERATION, indent=2) + "\n")
    if args.tokenizer.resolve() != (args.out / "tokenizer.json").resolve():
        shutil.copy(args.tokenizer, args.out / "tokenizer.json")
    quality = measure(state, cfg, args, device) if args.corpus else None
    train_state = {k: v for k, v in train.items() if k not in ("args",)}
    if quality:
        train_state["quality"] = quality
    (args.out / "train_state.json").write_text(json.dumps(train_state, indent=1) + "\n")
    summary = corpus_summary(args.manifest) if args.manifest and args.manifest.exists() else None
    params = sum(v.numel() for v in state.values())
    (args.out / "MODEL_CARD.md").write_text(card(cfg, params, files, args.out, train, quality, summary))
    total = sum((args.out / f).stat().st_size for f in files)
    print(f"exported {args.out}: {files}, {total / 1e6:.1f} MB weights ({time.time() - started:.0f}s)")
    if quality:
        print(json.dumps(quality))


if __name__ == "__main__":
    main()
