#!/usr/bin/env bash
# Ablation for issue 13: is tiny-cts's result the reference's doing? Train the same six-part
# schedule as tiny-cts (configs/train/tiny_cts{,_2.._6}.yaml) on traces compressed with *random*
# scores under the same selection (digits and operators force-kept, ratios 0.5 / 0.6 / 0.7), then
# decode the demo's 200 test problems. About 45 minutes on one core.
#   run from the repo root: bash docs/bench/cts_random_ablation.sh   (needs runs/cts/train.jsonl,
#   runs/tiny-base-6/final and runs/demo200g/data/test.jsonl from the tiny recipes and the demo)
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
T=${THINKC:-.venv/bin/thinkc}
OUT=runs/ablation-random
mkdir -p "$OUT/configs"
$T data cts -i runs/cts/train.jsonl -o "$OUT/traces/train.jsonl" -m tiny-cts-reference --backend random \
   -r 0.5 -r 0.6 -r 0.7 --force-keep-operators
prev=runs/tiny-base-6/final
for part in "" _2 _3 _4 _5 _6; do
  cfg="$OUT/configs/tiny_cts$part.yaml"
  sed -e "s#runs/cts-ops/#$OUT/traces/#g" -e "s#name: runs/[^}]*#name: $prev#" \
      -e "s#output: runs/tiny-cts[-0-9]*#output: $OUT/tiny-cts$part#" "configs/train/tiny_cts$part.yaml" > "$cfg"
  $T train "$cfg" --resume never
  prev="$OUT/tiny-cts$part/final"
done
$T infer -i runs/demo200g/data/test.jsonl -o "$OUT/infer.jsonl" --model "$prev" --method vanilla --max-new-tokens 768
$T eval "$OUT/infer.jsonl"
