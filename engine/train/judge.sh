#!/usr/bin/env bash
# Here, after a device run: is the model that came back better than the shipped one? It is filled on the
# three held-out sets of the headline table as the service fills them, on this machine's CPU, and paired hole
# by hole with the shipped model's runs of the same sets (docs/quality, session 21). Nothing in the
# repository changes: install the model with install_results.sh only if it wins.
#   bash engine/train/judge.sh FILES_AT OUT     (OUT: a scratch folder; 11 minutes on 2 cores in session 22)
# Session 22 ran it on the shipped model itself (a bundle of engine/weights): every hole of the three sets paired
# with its session-21 fill unchanged, which is also what a fresh sitting of the shipped model must give.
set -euo pipefail
from=$1
out=$2
mkdir -p "$out/model"
tar -xzf "$from/bundle.tar.gz" -C "$out/model"
cp "$from"/model*.safetensors "$out/model/"
export OMP_WAIT_POLICY=PASSIVE  # two cores: a spinning OpenMP thread steals the other's time
PYTHON=${PYTHON:-.venv/bin/python}

fill() {  # $1: name, then evaluate run's arguments
  local name=$1
  shift
  "$PYTHON" -m engine.train.evaluate run --model "$out/model" --generation '{}' --out "$out/$name.json.xz" "$@" \
    > "$out/$name.log"
}
fill single_736 --holes engine/train/eval_holes_single.jsonl.xz --per-group 300 --kinds single_line \
  --tokens-per-step 2 --fit-length on
fill multi_213 --per-group 100 --kinds multi_line --tokens-per-step 4 --fit-length off
fill single_214 --per-group 100 --kinds single_line --tokens-per-step 2 --fit-length on

# one line a length (true, unknown): the shipped model first, the new one second
for pair in single_736:eval_cpu_session21_twins_single_736 multi_213:eval_cpu_session21_twins_multi_213 \
            single_214:eval_cpu_session21_final_single_214; do
  echo "# ${pair%%:*}"
  "$PYTHON" -m engine.train.evaluate compare "docs/quality/${pair#*:}.json.xz" "$out/${pair%%:*}.json.xz" \
    --across-generation | tee "$out/compare_${pair%%:*}.jsonl"
done
