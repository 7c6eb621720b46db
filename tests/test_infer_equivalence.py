"""THE equivalence: decoding with in-place KV compaction gives, for every generated token, the
logits of one forward over that row's full augmented sequence with the dense reference gist mask
(thinkc.gist.rule), fp32, atol 1e-4. Ragged batch, compressions forced at random steps per row."""
import random

import pytest
import torch

from thinkc.gist.rule import GistFlags, GistMeta, additive_mask, compute_expire, reference_mask
from thinkc.infer.loop import decode
from thinkc.infer.policies import AnLLMPolicy, GistSpec, LightThinkerPolicy
from thinkc.models.tiny import tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference_logits(model, res, spec_flags, exclude_continue):
    ids = torch.tensor(res.aug_ids)
    role, seg = torch.tensor(res.aug_roles), torch.tensor(res.aug_segs)
    doc = torch.zeros_like(ids)
    meta = GistMeta(role, seg, doc, compute_expire(role, seg, doc, exclude_continue=exclude_continue), spec_flags)
    param = next(model.parameters())
    mask = additive_mask(reference_mask(meta), param.dtype)[:, None].to(param.device)
    with torch.no_grad():  # inputs on the model's device (a CUDA model in the GPU tests)
        out = model(input_ids=ids[None].to(param.device), attention_mask=mask,
                    position_ids=torch.arange(len(ids), device=param.device)[None])
    return out.logits[0].float().cpu()  # the loop records float32 logits, on the host


def random_forces(n_rows, max_new, rng, per_row=3):
    return {i: set(rng.sample(range(1, max_new - 1), per_row)) for i in range(n_rows)}


def check(model, prompts, policy, max_new, forces, exclude_continue=False):
    results = decode(model, prompts, policy, max_new_tokens=max_new, force_compress=forces, record_logits=True)
    for res in results:
        assert len(res.tokens) == max_new
        assert res.compressions >= 1
        ref = reference_logits(model, res, policy.flags, exclude_continue)
        for aug_idx, logits in res.logits:
            torch.testing.assert_close(logits, ref[aug_idx], atol=1e-4, rtol=0)
        # the cache really shrank: at the end it holds fewer keys than the augmented sequence, and
        # physically too (peak_kv is the cache's own length after each forward)
        assert res.kv_trace[-1] < len(res.aug_ids)
        assert res.peak_kv < len(res.aug_ids)
    return results


def ragged_prompts(rng, vocab, lens):
    return [[rng.randrange(3, vocab) for _ in range(n)] for n in lens]


def spec_for(vocab, level="thought", n_cache=3, flags=GistFlags(), exclude_continue=False):
    return GistSpec(cache_ids=tuple(range(vocab - 1 - n_cache, vocab - 1)), output_id=vocab - 1,
                    trigger_id=vocab - 2 - n_cache, level=level, step=5, flags=flags,
                    exclude_continue=exclude_continue)


@pytest.mark.parametrize("flags,exclude_continue", [(GistFlags(), False), (GistFlags(bi_directional=True), True)])
def test_lightthinker_thought_level(arch, flags, exclude_continue):
    rng = random.Random(1)
    model = tiny_model(arch, vocab_size=256)
    prompts = ragged_prompts(rng, 240, [7, 12, 4])
    policy = LightThinkerPolicy(spec_for(256, flags=flags, exclude_continue=exclude_continue))
    check(model, prompts, policy, 24, random_forces(3, 24, rng), exclude_continue)


def test_lightthinker_token_level(arch):
    rng = random.Random(2)
    model = tiny_model(arch, vocab_size=256)
    prompts = ragged_prompts(rng, 240, [5, 11, 8])
    policy = LightThinkerPolicy(spec_for(256, level="token", n_cache=2))
    results = check(model, prompts, policy, 22, None)
    assert [r.compressions for r in results] == [4, 4, 4]  # after tokens 5, 10, 15, 20


def test_anllm(arch):
    rng = random.Random(3)
    model = tiny_model(arch, vocab_size=256)
    prompts = ragged_prompts(rng, 240, [9, 3, 6])
    policy = AnLLMPolicy(spec_for(256))
    assert policy.flags.see_current and policy.spec.output_id is None and len(policy.spec.cache_ids) == 1
    check(model, prompts, policy, 20, random_forces(3, 20, rng))


@pytest.mark.smollm2
def test_smollm2(smollm2_path):
    """A real checkpoint (Llama architecture, 30 layers, GQA): thought level, token level, AnLLM."""
    from transformers import AutoModelForCausalLM

    rng = random.Random(4)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32, attn_implementation="sdpa").eval()
    V = model.config.vocab_size
    prompts = ragged_prompts(rng, 1000, [6, 13, 9])
    check(model, prompts, LightThinkerPolicy(spec_for(V, n_cache=4)), 9, random_forces(3, 9, rng, per_row=2))
    check(model, prompts, LightThinkerPolicy(spec_for(V, level="token", n_cache=2)), 8, None)
    # AnLLM in float64: in fp32 the worst logit of this run differs by 2.1e-4 (|logits| ~ 35, 30 layers of
    # rounding in different reduction orders); in float64 1e-4 leaves no room for a wrong mask or cache
    check(model.double(), prompts, AnLLMPolicy(spec_for(V)), 8, random_forces(3, 8, rng, per_row=2))


def test_anllm_generated_anchor():
    """AnLLM as the original: no trigger; when the model generates the anchor, that token is the
    thought's block (role CACHE) and the thought's keys go. Forced ends append the anchor."""
    from dataclasses import replace

    rng = random.Random(5)
    model = tiny_model("llama", vocab_size=256)  # this random model's row 2 alternates two tokens
    prompts = ragged_prompts(rng, 240, [9, 3, 6])
    free = decode(model, prompts, AnLLMPolicy(spec_for(256)), max_new_tokens=20)
    anchor = free[2].tokens[3]  # a token the model does generate: it plays the anchor
    spec = replace(spec_for(256), cache_ids=(anchor,), output_id=None, trigger_id=None, anchor_generated=True)
    policy = AnLLMPolicy(spec)
    results = check(model, prompts, policy, 20, {0: {5}, 1: {7}})
    assert results[2].compressions >= 2 and anchor in results[2].tokens
    # a row whose only blocks are generated anchors is compacted on its own too
    [alone] = check(model, prompts[2:], policy, 20, None)
    assert alone.compressions >= 2
    for r in results:  # the generated anchor is fed as itself (no extra token), role CACHE
        roles = [ro for t, ro in zip(r.aug_ids, r.aug_roles) if t == anchor and ro != 1]
        assert roles and all(ro == 5 for ro in roles)
