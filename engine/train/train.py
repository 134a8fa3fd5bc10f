"""Train the native diffusion infiller; resumable, stopped by wall clock.

The learning rate follows warmup-stable-decay over a TIME budget (`--budget-min`, counted in training
seconds and carried across resumes), because the GPU machine is lent in chunks of minutes, not steps:
a run can stop and resume anywhere, and only the last part of the whole budget decays.

Usage:
    python -m engine.train.train --corpus /tmp/dgem/corpus --tokenizer tokenizer.json \\
        --ckpt /tmp/dgem/ckpt --budget-min 25 --stop-min 8.5
    # resume: run the same command again (the checkpoint folder holds step, tokens, optimizer state)
    # restart from an exported model folder (int8, dequantised) when the checkpoint is gone:
    python -m engine.train.train ... --init-from engine/weights
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from engine.native import NativeConfig, NativeModel
from engine.train.corpus import load_split
from engine.train.examples import SPARE_DRAWS, FimStream, Layout, Texts, fixed_batches
from engine.train.grow import grown_state
from engine.train.heldout import held_out_losses
from engine.train.objective import draw_noise, losses, use_table_rotary
from engine.train.quantize import dequantize_int8, load_sharded

# the training mix; held-out losses always read this one, so that runs with another mix stay comparable
LANGUAGE_WEIGHTS = {"python": 0.7, "javascript": 0.3}


# ---- checkpoint ---------------------------------------------------------------------------------


def save_checkpoint(folder: Path, model: NativeModel, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Written to a sibling folder first and swapped in, so a kill mid-save never leaves half a checkpoint."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().float().contiguous() for k, v in model.state_dict().items()},
              str(tmp / "model.safetensors"))
    opt = optimizer.state_dict()
    flat = {f"{i}.{key}": value.detach().float().reshape(-1) if key == "step" else value.detach().contiguous()
            for i, entry in opt["state"].items() for key, value in entry.items()}
    save_file(flat, str(tmp / "optim.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**state, "param_groups": opt["param_groups"]}, indent=1))
    if (folder / "log.jsonl").exists():
        shutil.copy(folder / "log.jsonl", tmp / "log.jsonl")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def append_log(folder: Path, row: dict) -> None:
    with open(folder / "log.jsonl", "a") as log:
        log.write(json.dumps(row) + "\n")


def load_optimizer(folder: Path, optimizer: torch.optim.Optimizer, param_groups: list[dict]) -> None:
    flat = load_file(str(folder / "optim.safetensors"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value.reshape(()) if name == "step" else value
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """fp32 weights from a checkpoint folder, or dequantised ones from an exported model folder."""
    if (folder / "optim.safetensors").exists():
        return load_file(str(folder / "model.safetensors"))
    return dequantize_int8(load_sharded(folder))


# ---- schedule -----------------------------------------------------------------------------------


def learning_rate(args: argparse.Namespace, step: int, progress: float) -> float:
    """Warmup by steps, flat, then linear decay to min_lr_frac over the last decay_frac of the time budget."""
    warm = min(1.0, (step + 1) / args.warmup_steps)
    decay_start = 1.0 - args.decay_frac
    if progress <= decay_start:
        return args.lr * warm
    frac = min(1.0, (progress - decay_start) / args.decay_frac)
    return args.lr * warm * (1.0 - frac * (1.0 - args.min_lr_frac))


# ---- training -----------------------------------------------------------------------------------


def build_model(args: argparse.Namespace, device: torch.device) -> NativeModel:
    cfg = NativeConfig(dim=args.dim, n_layers=args.layers, n_heads=args.heads, ffn_dim=args.ffn_dim)
    return use_table_rotary(NativeModel(cfg).to(device))


def build_optimizer(model: NativeModel, args: argparse.Namespace, new_blocks: list[int],
                    device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only. After depth growth the blocks the model already had
    train at `--old-lr-scale` of the learning rate, so that the new blocks can learn fast without
    shaking what the old ones know."""
    groups = []
    for is_new in (False, True):
        names = [(name, p) for name, p in model.named_parameters()
                 if (name.startswith("blocks.") and int(name.split(".")[1]) in new_blocks) == is_new]
        scale = 1.0 if is_new or not new_blocks else args.old_lr_scale
        for decay in (True, False):
            params = [p for _, p in names if (p.dim() >= 2) == decay]
            if params:
                groups.append({"params": params, "weight_decay": args.weight_decay if decay else 0.0,
                               "lr_scale": scale})
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="folder written by `corpus build`")
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--ckpt", type=Path, required=True, help="checkpoint folder; resumed when it exists")
    parser.add_argument("--init-from", type=Path, default=None, help="start from an exported model folder")
    parser.add_argument("--budget-min", type=float, default=25.0, help="whole schedule, training minutes")
    parser.add_argument("--stop-min", type=float, default=8.5, help="this process stops after this wall time")
    parser.add_argument("--batch-size", type=int, default=192)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--min-lr-frac", type=float, default=0.05)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--spare-draw", choices=SPARE_DRAWS, default=Layout().spare_draw,
                        help="how many spare <pad> slots follow a middle (engine/train/examples.py, spare_slots)")
    parser.add_argument("--inner-pad-share", type=float, default=Layout().inner_pad_share,
                        help="share of spare-slot examples with the pad run inside the middle (examples.place_pads)")
    parser.add_argument("--expand-share", type=float, default=Layout().expand_share,
                        help="share of examples with a hole shorter than the middle (examples.merge_pairs)")
    parser.add_argument("--grow-to-layers", type=int, default=0,
                        help="with --init-from: add blocks that start as identities (engine/train/grow.py)")
    parser.add_argument("--old-lr-scale", type=float, default=1.0,
                        help="after growth, the learning rate of the blocks the model had, as a share")
    parser.add_argument("--decay-frac", type=float, default=0.3)
    parser.add_argument("--javascript-share", type=float, default=None,
                        help="share of training examples cut from JavaScript/TypeScript (default: 0.3)")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--ar-weight", type=float, default=0.5, help="weight of the prefix next-token loss")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--ffn-dim", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 3)))
    parser.add_argument("--eval-batches", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--eval-every-min", type=float, default=2.0)
    parser.add_argument("--save-every-min", type=float, default=2.0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one tokenizer thread per loader worker
    wall_start = time.time()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(args.seed)
    layout = Layout(spare_draw=args.spare_draw, inner_pad_share=args.inner_pad_share,
                    expand_share=args.expand_share)

    if args.grow_to_layers:
        args.layers = args.grow_to_layers
    model = build_model(args, device)
    # train_seconds counts all training; schedule_seconds only this schedule's (restarts with --init-from)
    state = {"step": 0, "tokens": 0, "examples": 0, "train_seconds": 0.0, "schedule_seconds": 0.0, "runs": 0,
             "new_blocks": []}
    resuming = (args.ckpt / "state.json").exists()
    saved = json.loads((args.ckpt / "state.json").read_text()) if resuming else {}
    if resuming:
        model.load_state_dict(load_weights(args.ckpt))
        state["new_blocks"] = saved.get("new_blocks", [])
    elif args.init_from is not None:
        weights = load_weights(args.init_from)
        if args.grow_to_layers:
            old_layers = json.loads((args.init_from / "config.json").read_text())["architecture"]["n_layers"]
            weights, state["new_blocks"] = grown_state(weights, old_layers, args.grow_to_layers)
            print(f"grown from {old_layers} to {args.grow_to_layers} layers: new blocks {state['new_blocks']}",
                  flush=True)
        model.load_state_dict(weights)
    optimizer = build_optimizer(model, args, state["new_blocks"], device)
    if resuming:
        load_optimizer(args.ckpt, optimizer, saved.pop("param_groups"))
        state.update(saved)
        state.setdefault("schedule_seconds", state["train_seconds"])
        print(f"resumed {args.ckpt}: step {state['step']}, {state['tokens'] / 1e9:.3f}B tokens", flush=True)
    elif args.init_from is not None:
        if (args.init_from / "train_state.json").exists():  # written by export: keep counting tokens
            saved = json.loads((args.init_from / "train_state.json").read_text())
            state.update({k: saved[k] for k in ("step", "tokens", "examples", "train_seconds", "runs") if k in saved})
        print(f"initialised from {args.init_from} (step {state['step']})", flush=True)
    state["runs"] += 1
    state["config"] = model.cfg.to_dict()
    state["layout"] = asdict(layout)
    state["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, {model.cfg.to_dict()}", flush=True)

    train_rows = load_split(args.corpus, "train")
    mix = LANGUAGE_WEIGHTS if args.javascript_share is None else {
        "python": 1.0 - args.javascript_share, "javascript": args.javascript_share}
    texts = Texts(train_rows, mix)
    del train_rows
    held_out = Texts(load_split(args.corpus, "eval"), LANGUAGE_WEIGHTS)
    eval_set = fixed_batches(Tokenizer.from_file(str(args.tokenizer)), held_out, layout, args.eval_batches,
                              args.eval_batch_size)
    stream = FimStream(texts, args.tokenizer, layout, args.batch_size, seed=args.seed * 7919 + state["step"])
    loader = DataLoader(stream, batch_size=None, num_workers=args.workers, pin_memory=device.type == "cuda",
                        prefetch_factor=4 if args.workers else None, persistent_workers=args.workers > 0)

    step_losses = losses if args.no_compile or device.type != "cuda" else torch.compile(losses)
    budget_s = args.budget_min * 60.0
    args.ckpt.mkdir(parents=True, exist_ok=True)
    last_eval = last_save = time.time()
    window_tokens, window_start = 0, time.time()
    model.train()
    for batch in loader:
        step_start = time.time()
        progress = state["schedule_seconds"] / budget_s
        lr = learning_rate(args, state["step"], progress)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # older checkpoints lack it
        tokens = batch.real_tokens()  # counted on the host copy: no device sync
        batch = batch.to(device)
        t, noise, forced = draw_noise(batch)
        try:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                diffusion, next_token, _ = step_losses(model, batch, layout.hole_slots, t, noise, forced)
        except Exception as error:  # a compiler failure must not cost the run: fall back to eager
            if step_losses is losses:
                raise
            print(f"torch.compile failed ({type(error).__name__}: {error}); continuing eagerly", flush=True)
            step_losses = losses
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                diffusion, next_token, _ = step_losses(model, batch, layout.hole_slots, t, noise, forced)
        loss = diffusion + args.ar_weight * next_token
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        state["step"] += 1
        state["tokens"] += tokens
        state["examples"] += batch.prefix.shape[0]
        window_tokens += tokens
        if state["step"] > 3:  # the first steps are compilation, not training
            elapsed = time.time() - step_start
            state["train_seconds"] += elapsed
            state["schedule_seconds"] += elapsed
        if state["step"] % args.log_every == 0:
            rate = window_tokens / (time.time() - window_start)
            row = {"step": state["step"], "tokens": state["tokens"], "loss": float(loss.detach()),
                   "diffusion": float(diffusion.detach()), "next_token": float(next_token.detach()), "lr": lr,
                   "grad_norm": float(grad_norm), "tokens_per_s": rate, "progress": progress,
                   "wall_s": time.time() - wall_start,
                   "max_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else 0.0}
            append_log(args.ckpt, row)
            print(f"step {state['step']:6d}  tokens {state['tokens'] / 1e6:8.1f}M  diff {row['diffusion']:.4f}  "
                  f"ar {row['next_token']:.4f}  lr {lr:.2e}  {rate / 1e6:.2f}M tok/s  progress {progress:.3f}",
                  flush=True)
            window_tokens, window_start = 0, time.time()
        done = progress >= 1.0 or time.time() - wall_start > args.stop_min * 60.0
        if done or time.time() - last_eval > args.eval_every_min * 60.0:
            result = held_out_losses(model, eval_set, layout.hole_slots, device)
            row = {"step": state["step"], "tokens": state["tokens"], "eval": result}
            append_log(args.ckpt, row)
            state["eval"] = result
            print(f"eval step {state['step']}: diffusion {result['diffusion']:.4f}  "
                  f"next-token {result['next_token']:.4f}", flush=True)
            last_eval = time.time()
        if done or time.time() - last_save > args.save_every_min * 60.0:
            save_checkpoint(args.ckpt, model, optimizer, state)
            last_save = time.time()
            print(f"saved {args.ckpt} at step {state['step']}", flush=True)
        if done:
            break
    print(f"stopped: step {state['step']}, {state['tokens'] / 1e9:.3f}B tokens, "
          f"{state['schedule_seconds'] / 60:.1f} training minutes of {args.budget_min} in this schedule, "
          f"{state['train_seconds'] / 60:.1f} in all", flush=True)
    if progress >= 1.0 and math.isfinite(float(loss.detach())):
        (args.ckpt / "DONE").write_text("schedule finished\n")
    os._exit(0)  # skip DataLoader worker teardown, which can hang on a full queue


if __name__ == "__main__":
    main()
