#!/usr/bin/env bash
# The KV pool's GPU checks (issue 22), prepared for a session lent an H100/H200; run from the
# repository root on the device machine, results under $OUT (default ./gpu-out):
#   1. build the extension for sm_90, 2. the CUDA tests of the pool (compact_kv_paged, flex + graphs
#   over a tight pool), 3. decode tokens/s and cold start of vanilla and LightThinker with and without
#   the pool, random 7B-shaped model, bs 1 and 8, 128 and 512 new tokens (graphs).
# TINY=1 runs the same steps at tiny sizes on the CPU (how this script was tested without a GPU).
set -euo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
if [ "${TINY:-0}" = 1 ]; then
  DEV=cpu; MODEL=tiny; NEW="16 32"; BUDGET=512; TESTS="tests/test_kv_pool.py -k bookkeeping"
else
  DEV=cuda; MODEL=random-7b; NEW="128 512"; BUDGET=200000
  TESTS="tests/test_compact_paged.py tests/test_infer_engine_cuda.py -m cuda"
  CUDA_HOME=/usr/local/cuda THINKC_CUDA_ARCHS=90 python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1
fi
python3 -m pytest -q $TESTS 2>&1 | tail -5 | tee "$OUT/tests.txt"
# the CLI from the source tree, uninstalled (cli/ installs as thinkc.cli)
thinkc() {
  python3 -c 'import sys, importlib.util as u
s = u.spec_from_file_location("thinkc.cli", "cli/__init__.py", submodule_search_locations=["cli"])
m = u.module_from_spec(s); sys.modules["thinkc.cli"] = m; s.loader.exec_module(m)
from thinkc.cli.main import main; sys.argv[0] = "thinkc"; main()' "$@"
}
for n in $NEW; do
  thinkc bench decode --device "$DEV" --model "$MODEL" -b 1 -b 8 --max-new-tokens "$n" \
    --method vanilla --method lightthinker --kv-budget "$BUDGET" --compile --baseline hf-dynamic \
    --json "$OUT/decode-$n.json" 2>&1 | tail -40 > "$OUT/decode-$n.txt"
done
echo "wrote $OUT"
