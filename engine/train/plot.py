"""Draw the loss curve of a training log (log.jsonl written by train.py) as a PNG.

Usage:
    python -m engine.train.plot engine/train/loss_log.jsonl --out engine/train/loss_curve.png \
        --mark "4.06=grown to 12 layers"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on the machines this runs on
import matplotlib.pyplot as plt  # noqa: E402


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average: single training batches are noisy (t is random per example)."""
    out, running = [], values[0] if values else 0.0
    for value in values:
        running = weight * running + (1 - weight) * value
        out.append(running)
    return out


def plot(log: Path, out: Path, marks: dict[float, str] | None = None) -> None:
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "diffusion" in r]
    held_out = [r for r in rows if "eval" in r]
    tokens = [r["tokens"] / 1e9 for r in train]
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, height_ratios=(3, 1))
    ax.plot(tokens, smooth([r["diffusion"] for r in train]), label="train: diffusion (hole)", color="C0")
    ax.plot(tokens, smooth([r["next_token"] for r in train]), label="train: next token (prefix)", color="C1")
    if held_out:
        eval_tokens = [r["tokens"] / 1e9 for r in held_out]
        ax.plot(eval_tokens, [r["eval"]["diffusion"] for r in held_out], "o--", color="C0", label="held-out: diffusion")
        ax.plot(eval_tokens, [r["eval"]["next_token"] for r in held_out], "s--", color="C1",
                label="held-out: next token")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_ylim(top=min(6.0, ax.get_ylim()[1]))
    ax.grid(alpha=0.3)
    ax.legend()
    for at, label in (marks or {}).items():  # where the run changed shape, e.g. grown deeper
        for axis in (ax, ax_lr):
            axis.axvline(at, color="0.4", linestyle=":")
        ax.annotate(label, (at, 0.97), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=8, color="0.3")
    ax.set_title("dgem-infill native model: training and held-out loss")
    ax_lr.plot(tokens, [r["lr"] for r in train], color="C2")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("tokens seen (billions; real prefix + canvas tokens)")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path)
    parser.add_argument("--out", type=Path, default=Path("engine/train/loss_curve.png"))
    parser.add_argument("--mark", action="append", default=[], metavar="BILLIONS=LABEL",
                        help="a dotted line at this many tokens seen, with a label (repeatable)")
    args = parser.parse_args(argv)
    marks = {float(at): label for at, _, label in (mark.partition("=") for mark in args.mark)}
    plot(args.log, args.out, marks)


if __name__ == "__main__":
    main()
