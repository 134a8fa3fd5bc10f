#!/usr/bin/env bash
# Here, after a device run: put what came back from $OUT into the repository.
#   bash engine/train/install_results.sh FILES_AT     (the folder the run's reply names as files_at)
set -euo pipefail
from=$1
tmp=$(mktemp -d)
tar -xzf "$from/bundle.tar.gz" -C "$tmp"
rm -f engine/weights/model*.safetensors engine/weights/model.safetensors.index.json
cp "$from"/model*.safetensors engine/weights/
for f in MODEL_CARD.md config.json generation_config.json tokenizer.json train_state.json model.safetensors.index.json; do
  if [ -f "$tmp/$f" ]; then cp "$tmp/$f" engine/weights/; fi
done
chmod 644 engine/weights/*
cp "$from/manifest.jsonl.xz" engine/train/manifest.jsonl.xz
cp "$tmp/log.jsonl" engine/train/loss_log.jsonl
cp "$tmp/corpus_stats.json" "$tmp/corpus_skips.log" engine/train/
chmod 644 engine/train/manifest.jsonl.xz
for f in "$tmp"/eval_*.json; do  # held-out infilling results (device.sh continue/finish), kept compressed
  if [ -f "$f" ]; then xz -9 -c "$f" > "docs/quality/$(basename "$f").xz"; fi
done
for f in "$tmp"/eval_*.log; do
  if [ -f "$f" ]; then cp "$f" docs/quality/; fi
done
python -m engine.train.plot engine/train/loss_log.jsonl --out engine/train/loss_curve.png
python -m engine.train.export --card-only --out engine/weights --manifest engine/train/manifest.jsonl.xz
rm -rf "$tmp"
du -cb engine/weights | tail -1
