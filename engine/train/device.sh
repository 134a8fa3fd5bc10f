#!/usr/bin/env bash
# The training steps as run on the GPU machine, from the repository root; results go to $OUT.
# Work files live in /tmp/dgem, outside the repository: they stay while the machine stays warm
# between calls, and the repository copy that each call sends never touches them.
#
#   bash engine/train/device.sh stage             keep the carried corpus archives in $W/archives, for
#                                                 when the working tree with all of them is too large
#                                                 to travel in one call (the 64 MiB limit)
#   bash engine/train/device.sh smoke             corpus + tokenizer + 1-minute training + export
#   bash engine/train/device.sh start BUDGET WAIT corpus, then training of BUDGET minutes in the
#                                                 background; returns a snapshot after WAIT seconds
#   bash engine/train/device.sh wait WAIT         snapshot after WAIT more seconds; when training has
#                                                 ended by then, the full export instead (as finish)
#   bash engine/train/device.sh finish [WAIT]     the same as wait (WAIT s at most, 480): once training
#                                                 has ended, full export; after `continue`, also the
#                                                 held-out infilling evaluation of the new model
#   bash engine/train/device.sh resume BUDGET STOP [ARGS]  on a fresh machine: train in the
#                                                 foreground from engine/weights, STOP minutes
#   bash engine/train/device.sh continue BUDGET WAIT [ARGS]  like start, but from engine/weights
#                                                 (the shipped model), which is evaluated on the
#                                                 held-out holes while the corpus builds (EVAL_OLD=0: not)
#
# The corpus takes every archive packed here that is present, in this order (the first one made the
# shipped corpus; the others only add): .device/js_corpus.tar.xz, js_corpus2.tar.xz, py_corpus.tar.xz, and
# since session 22 js_corpus3.tar.xz and py_corpus2.tar.xz.
# The evaluation needs tree-sitter, which the machine lacks: its wheels travel in .device/wheels.
set -euo pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
W=/tmp/dgem
OUT=${OUT:-$W/out}
mkdir -p "$W" "$OUT"
TOK=engine/weights/tokenizer.json

ARCHIVES=()
for name in js_corpus js_corpus2 py_corpus js_corpus3 py_corpus2; do  # carried now, or staged by an earlier call
  for archive in ".device/$name.tar.xz" "$W/archives/$name.tar.xz"; do
    if [ -f "$archive" ]; then ARCHIVES+=(--js "$archive"); break; fi
  done
done

prepare() {
  if [ ! -f "$W/corpus/stats.json" ]; then
    python3 -m engine.train.corpus build "${ARCHIVES[@]}" --out "$W/corpus" 2> "$W/corpus_skips.log"
  fi
  python3 -m engine.train.corpus check --manifest "$W/corpus/manifest.jsonl.xz"  # stops here on a leak
  if [ ! -f "$TOK" ]; then  # the first run trains it; later runs must reuse the committed one
    python3 -m engine.train.tokenizer --corpus "$W/corpus" --out "$W/tokenizer.json"
    TOK=$W/tokenizer.json
  fi
}

tree_sitter() {  # the syntax layer that the held-out evaluation sizes and post-processes fills with
  local dir
  for dir in .device/wheels .whl; do
    if compgen -G "$dir/tree_sitter*.whl" > /dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$dir"/tree_sitter*.whl
      export PYTHONPATH=/tmp/site
      return
    fi
  done
  echo "no tree-sitter wheels in .device/wheels or .whl: the evaluation will fail" >&2
}

EVAL_ARGS=(--device cuda --per-group 30 --tokens-per-step 2 --fit-length off,on)

evaluate() {  # $1: model folder, $2: name, [$3: bg] -> $W/eval/eval_$2.json (true, unknown, unknown+probe)
  mkdir -p "$W/eval"
  local run=(python3 -m engine.train.evaluate run --model "$1" "${EVAL_ARGS[@]}" --out "$W/eval/eval_$2.json")
  if [ "${3:-}" = bg ]; then  # its own session, so it outlives the call that started it
    setsid nohup "${run[@]}" > "$W/eval/eval_$2.log" 2>&1 < /dev/null &
  else
    "${run[@]}" > "$W/eval/eval_$2.log" 2>&1
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
  if [ "${EVAL_NEW:-0}" = 1 ]; then
    while pgrep -f "engine.train.evaluate" > /dev/null; do sleep 5; done  # the old model's, if still running
    tree_sitter
    evaluate "$W/export" new
  fi
  cp "$W"/eval/eval_* "$W/export/" 2>/dev/null || true
  cp "$W"/export/model*.safetensors "$OUT"/
  cp "$W/corpus/manifest.jsonl.xz" "$OUT"/
  tar -czf "$OUT/bundle.tar.gz" -C "$W/export" --exclude='model*.safetensors' .
  ls -la "$OUT"
}

export_now() {  # a snapshot while training runs; once it has ended, the final export (as `finish`)
  if pgrep -f "engine.train.train" > /dev/null; then
    export_to_out "$W/ckpt" 8 128
  else
    EVAL_NEW=$([ -d "$W/old_weights" ] && echo 1 || echo 0) export_to_out "$W/ckpt" 32 512
    grep -H " all " "$W"/eval/eval_*.log 2>/dev/null || true  # old vs new, all languages
  fi
}

wait_for() {  # $1: seconds; returns early when training ends
  local end=$((SECONDS + $1))
  while [ $SECONDS -lt $end ] && pgrep -f "engine.train.train" > /dev/null; do sleep 10; done
  tail -n 5 "$W/train.log" || true
}

case "$1" in
  stage)
    mkdir -p "$W/archives" && cp -v .device/*.tar.xz "$W/archives/"
    ;;
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
    export_now
    ;;
  wait | finish)  # the same step: a wait that sees training end makes the final export in that call
    wait_for "${2:-480}"
    export_now
    ;;
  continue)
    rm -rf "$W/old_weights" && cp -r engine/weights "$W/old_weights"
    tree_sitter
    # on the GPU while the corpus builds on the CPUs (EVAL_OLD=0: skip it, as when the CPU evaluation here decides)
    if [ "${EVAL_OLD:-1}" = 1 ]; then evaluate "$W/old_weights" old bg; fi
    prepare
    setsid nohup python3 -m engine.train.train --corpus "$W/corpus" --tokenizer "$TOK" --ckpt "$W/ckpt" \
      --init-from "$W/old_weights" --budget-min "$2" --stop-min 60 "${@:4}" > "$W/train.log" 2>&1 < /dev/null &
    sleep 5
    wait_for "$3"
    export_now
    ;;
  resume)
    prepare
    python3 -m engine.train.train --corpus "$W/corpus" --tokenizer "$TOK" --ckpt "$W/ckpt" \
      --init-from engine/weights --budget-min "$2" --stop-min "$3" "${@:4}" 2>&1 | tee "$W/train.log"
    export_to_out "$W/ckpt" 32 512
    ;;
  *) echo "unknown step $1" >&2; exit 2 ;;
esac
