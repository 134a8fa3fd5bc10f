#!/usr/bin/env bash
# The training steps as run on the GPU machine, from the repository root; results go to $OUT.
# Work files live in /tmp/dgem, outside the repository: they stay while the machine stays warm
# between calls, and the repository copy that each call sends never touches them.
#
#   bash engine/train/device.sh smoke             corpus + tokenizer + 1-minute training + export
#   bash engine/train/device.sh start BUDGET WAIT corpus, then training of BUDGET minutes in the
#                                                 background; returns a snapshot after WAIT seconds
#   bash engine/train/device.sh wait WAIT         snapshot after WAIT more seconds (or at the end)
#   bash engine/train/device.sh finish            wait for the end of training, full export
#   bash engine/train/device.sh resume BUDGET STOP [ARGS]  on a fresh machine: train in the
#                                                 foreground from engine/weights, STOP minutes
set -euo pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
W=/tmp/dgem
OUT=${OUT:-$W/out}
mkdir -p "$W" "$OUT"
TOK=engine/weights/tokenizer.json

prepare() {
  if [ ! -f "$W/corpus/stats.json" ]; then
    python3 -m engine.train.corpus build --js .device/js_corpus.tar.xz --out "$W/corpus" 2> "$W/corpus_skips.log"
  fi
  if [ ! -f "$TOK" ]; then  # the first run trains it; later runs must reuse the committed one
    python3 -m engine.train.tokenizer --corpus "$W/corpus" --out "$W/tokenizer.json"
    TOK=$W/tokenizer.json
  fi
}

export_to_out() {  # $1: checkpoint folder, $2: eval batches, $3: exact-match holes
  rm -rf "$W/snap" "$W/export"
  for _ in 1 2 3; do cp -r "$1" "$W/snap" 2>/dev/null && break; rm -rf "$W/snap"; sleep 2; done
  python3 -m engine.train.export --ckpt "$W/snap" --tokenizer "$TOK" --corpus "$W/corpus" \
    --manifest "$W/corpus/manifest.jsonl.xz" --out "$W/export" --eval-batches "$2" --exact-match-examples "$3"
  cp "$W/snap/log.jsonl" "$W/export/log.jsonl"
  cp "$W/corpus/stats.json" "$W/export/corpus_stats.json"
  cp "$W/corpus_skips.log" "$W/export/" 2>/dev/null || true
  [ -f "$W/train.log" ] && tail -c 200000 "$W/train.log" > "$W/export/train.log"
  cp "$W"/export/model*.safetensors "$OUT"/
  cp "$W/corpus/manifest.jsonl.xz" "$OUT"/
  tar -czf "$OUT/bundle.tar.gz" -C "$W/export" --exclude='model*.safetensors' .
  ls -la "$OUT"
}

wait_for() {  # $1: seconds; returns early when training ends
  local end=$((SECONDS + $1))
  while [ $SECONDS -lt $end ] && pgrep -f "engine.train.train" > /dev/null; do sleep 10; done
  tail -n 5 "$W/train.log" || true
}

case "$1" in
  smoke)
    prepare
    python3 -m engine.train.train --corpus "$W/corpus" --tokenizer "$TOK" --ckpt "$W/smoke" \
      --budget-min 1 --stop-min 2.5 --log-every 20 --warmup-steps 50 2>&1 | tee "$W/train.log"
    export_to_out "$W/smoke" 32 256
    ;;
  start)
    prepare
    setsid nohup python3 -m engine.train.train --corpus "$W/corpus" --tokenizer "$TOK" --ckpt "$W/ckpt" \
      --budget-min "$2" --stop-min 60 > "$W/train.log" 2>&1 < /dev/null &
    sleep 5
    wait_for "$3"
    export_to_out "$W/ckpt" 8 128
    ;;
  wait)
    wait_for "$2"
    export_to_out "$W/ckpt" 8 128
    ;;
  finish)
    wait_for 480
    export_to_out "$W/ckpt" 32 512
    ;;
  resume)
    prepare
    python3 -m engine.train.train --corpus "$W/corpus" --tokenizer "$TOK" --ckpt "$W/ckpt" \
      --init-from engine/weights --budget-min "$2" --stop-min "$3" "${@:4}" 2>&1 | tee "$W/train.log"
    export_to_out "$W/ckpt" 32 512
    ;;
  *) echo "unknown step $1" >&2; exit 2 ;;
esac
