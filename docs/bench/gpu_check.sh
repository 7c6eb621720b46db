#!/usr/bin/env bash
# The one prepared device run for a session that is lent a GPU (H100/H200, torch >= 2.11), about 8 min:
# build the extension, run the CUDA tests, then the decode benchmarks of docs/benchmarks.md and the
# gist-attention fwd+bwd bench (issue 11).
#   run: bash docs/bench/gpu_check.sh   (results under $OUT, or runs/gpu when OUT is unset)
set -uo pipefail
OUT=${OUT:-runs/gpu}; mkdir -p "$OUT"
export PYTHONPATH=$PWD TOKENIZERS_PARALLELISM=false
CUDA_HOME=/usr/local/cuda THINKC_CUDA_ARCHS=90 python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1 \
  || echo "extension build failed (torch fallbacks used): see $OUT/build.log"
python3 -m pytest -q -x -m cuda tests 2>&1 | tail -15 | tee "$OUT/cuda-tests.txt"
B="python3 -m thinkc.cli.main bench decode --device cuda --model random-7b"
$B -b 1 -b 8 --new-tokens 128 --json "$OUT/decode-7b-128.json" 2>&1 | tail -30
$B -b 8 --new-tokens 2048 --method vanilla --method lightthinker --baseline hf-static \
   --json "$OUT/decode-7b-2k.json" 2>&1 | tail -12
# issue 11: gist attention fwd+bwd (FlexAttention + BlockMask) against causal SDPA (flash) at 8k and 16k
python3 -m thinkc.cli.main bench attention --device cuda -L 8192 -L 16384 --backward \
   --json "$OUT/attention-8k-16k.json" 2>&1 | tail -12
