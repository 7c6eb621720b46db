"""Subprocess for test_cts_pipeline's kill -9 test: runs the CTS pipeline on a tiny model.
argv: input output scores [slow]. With "slow", each scored chunk is followed by a pause so the
test can kill the process between chunks (the pause is in this harness, not in the library)."""
import sys
import time

from thinkc.cts.backends.native import NativeBackend
from thinkc.cts.pipeline import CtsJob, run
from thinkc.models.tiny import tiny_model
from thinkc.models.tokenizer import tiny_tokenizer

inp, out, scores = sys.argv[1:4]
if len(sys.argv) > 4 and sys.argv[4] == "slow":
    _score = NativeBackend.score

    def slow_score(self, records, on_tokens=None):
        res = _score(self, records, on_tokens)
        time.sleep(0.4)
        return res

    NativeBackend.score = slow_score
tok = tiny_tokenizer()
model = tiny_model("qwen2", vocab_size=len(tok))
run(CtsJob(input=inp, output=out, ratios=[0.5, 0.7], chunk_size=2, batch_size=3, window=24, scores=scores),
    model=model, tokenizer=tok)
