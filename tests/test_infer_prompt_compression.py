"""Prompt compression at inference (aug layouts, the original's compress_prompt): the prompt is fed
with its sentence cache blocks and their metadata, and every generated token's logits equal one
dense-mask forward over the whole augmented sequence (prompt gist blocks included), for both
prefill_compress values; the expired prompt sentences leave the cache."""
import pytest
import torch

from thinkc.gist.config import GistConfig
from thinkc.gist.layout import build_prompt_sample
from thinkc.gist.rule import Role
from thinkc.gist.tokens import add_gist_tokens
from thinkc.infer.loop import decode
from thinkc.infer.policies import GistSpec, LightThinkerPolicy
from thinkc.models.tiny import tiny_model
from thinkc.models.tokenizer import tiny_tokenizer
from tests.test_infer_equivalence import reference_logits

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTIONS = ["Tom has 3 apples. He buys 4 more. How many apples does he have?",
             "A box holds 12 pens. Two boxes are sold. How many pens are left if there were 5 boxes?"]


@pytest.mark.parametrize("prefill_compress", [True, False])
def test_prompt_compression_equals_dense_forward(prefill_compress, arch):
    tok = tiny_tokenizer()
    cfg = GistConfig.load("tiny").replace(mode="aug", prefill_compress=prefill_compress)
    model = tiny_model(arch, vocab_size=len(tok) + 16)
    add_gist_tokens(tok, model, cfg)
    check_prompt_compression(model, tok, cfg)


@pytest.mark.smollm2
def test_prompt_compression_smollm2(smollm2_path):
    """A real checkpoint (Llama architecture, 30 layers, 9/3 GQA) with its own tokenizer, both
    prefill_compress values; float64 so that 1e-4 leaves no room for a wrong mask."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for prefill_compress in (True, False):
        tok = AutoTokenizer.from_pretrained(smollm2_path)
        model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float64, attn_implementation="sdpa")
        cfg = GistConfig.load("llama").replace(mode="aug", prefill_compress=prefill_compress, n_cache=3)
        add_gist_tokens(tok, model, cfg)
        check_prompt_compression(model.eval(), tok, cfg, max_new=6)


def check_prompt_compression(model, tok, cfg, max_new: int = 10):
    spec = GistSpec.from_config(cfg, tok)
    samples = [build_prompt_sample({"question": q}, tok, cfg) for q in QUESTIONS]
    assert all(bool((s.meta.role == Role.CACHE).any() | (s.meta.role == Role.CACHE_PLAIN).any()) for s in samples)
    policy = LightThinkerPolicy(spec)
    res = decode(model, [s.input_ids.tolist() for s in samples], policy, max_new_tokens=max_new,
                 force_compress={0: {3, max_new - 3}, 1: {5}}, record_logits=True,
                 prompt_meta=[s.meta for s in samples])
    for r, s in zip(res, samples):
        assert r.aug_roles[:len(s)] == s.meta.role.tolist()
        ref = reference_logits(model, r, policy.flags, cfg.exclude_continue)
        for aug_idx, logits in r.logits:
            torch.testing.assert_close(logits, ref[aug_idx], atol=1e-4, rtol=0)
        sentences = int(((s.meta.role == Role.PROMPT) & (s.meta.seg >= 0)).sum())
        assert sentences > 0 and r.kv_trace[0] <= len(s) - sentences  # compressed sentences left the cache
