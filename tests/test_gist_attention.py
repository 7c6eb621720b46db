"""Patched Qwen2/Llama (thinkc_gist attention) vs the same model fed the dense reference mask."""
import pytest
import torch

from thinkc.data.synth import synth_records
from thinkc.gist.config import GistConfig
from thinkc.gist.layout import add_gist_tokens, build_sample
from thinkc.gist.packing import pack_samples
from thinkc.gist.rule import GistMeta, additive_mask, reference_mask
from thinkc.models.patch import enable_gist_attention, gist_attention_mask
from thinkc.models.tiny import tiny_model

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def _batch(tokenizer, cfg, n=3, max_len=None):
    samples = [build_sample(r, tokenizer, cfg) for r in synth_records(n, seed=3, max_steps=3)]
    max_len = max_len or len(samples[0]) + len(samples[1])
    rows = pack_samples(samples[:2], max_len, tokenizer.pad_token_id) + \
        pack_samples(samples[2:], max_len, tokenizer.pad_token_id)  # one packed row, one padded row
    meta = GistMeta(*(torch.stack([getattr(r.meta, k) for r in rows]) for k in ("role", "seg", "doc", "expire")),
                    rows[0].meta.flags)
    return torch.stack([r.input_ids for r in rows]), torch.stack([r.position_ids for r in rows]), meta


@torch.no_grad()
def test_patched_tiny_models_match_dense_reference(tokenizer, arch):
    cfg = GistConfig.load("tiny").replace(bi_directional=True, exclude_continue=True)
    model = tiny_model(arch, vocab_size=len(tokenizer) + 8)
    add_gist_tokens(tokenizer, model, cfg)
    ids, pos, meta = _batch(tokenizer, cfg)
    ref = model(ids, attention_mask=additive_mask(reference_mask(meta), torch.float32)[:, None],
                position_ids=pos).logits
    enable_gist_attention(model)
    assert model.config._attn_implementation == "thinkc_gist"
    valid = meta.doc >= 0
    dense = model(ids, attention_mask=gist_attention_mask(meta, torch.float32, "cpu"), position_ids=pos).logits
    torch.testing.assert_close(dense[valid], ref[valid], atol=1e-5, rtol=0)
    bm = gist_attention_mask(meta, torch.float32, "cpu", use_flex=True, block_size=64)
    flex = model(ids, attention_mask=bm, position_ids=pos).logits  # eager flex on CPU
    torch.testing.assert_close(flex[valid], ref[valid], atol=1e-5, rtol=0)
    # the mask matters: plain causal attention gives other logits
    causal = model(ids, position_ids=pos).logits
    assert (causal[valid] - ref[valid]).abs().max() > 1e-3


@torch.no_grad()
def test_2d_padding_mask_still_honoured(tokenizer):
    """With the AttentionMaskInterface registration, a 2D mask keeps padding out (stack-notes)."""
    model = tiny_model("qwen2", vocab_size=len(tokenizer))
    ids = torch.tensor([tokenizer.encode("Tom has 12 apples.")])
    ref = model(ids).logits
    enable_gist_attention(model)
    padded = torch.cat([ids, torch.zeros_like(ids[:, :3])], 1)
    am = torch.cat([torch.ones_like(ids), torch.zeros_like(ids[:, :3])], 1)
    out = model(padded, attention_mask=am).logits[:, : ids.shape[1]]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@torch.no_grad()
def test_smollm2_gqa_9_over_3(smollm2_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval()
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (9, 3)
    cfg = GistConfig.load("llama")
    add_gist_tokens(tok, model, cfg)
    s = build_sample(synth_records(1, seed=1, max_steps=3)[0], tok, cfg)
    L = 96
    meta = GistMeta(*(getattr(s.meta, k)[:L] for k in ("role", "seg", "doc", "expire")), s.meta.flags)
    ids, pos = s.input_ids[None, :L], s.position_ids[None, :L]
    ref = model(ids, attention_mask=additive_mask(reference_mask(meta), torch.float32)[:, None],
                position_ids=pos).logits
    enable_gist_attention(model)
    dense = model(ids, attention_mask=gist_attention_mask(meta, torch.float32, "cpu"), position_ids=pos).logits
    torch.testing.assert_close(dense, ref, atol=1e-5, rtol=0)
    flex = model(ids, attention_mask=gist_attention_mask(meta, torch.float32, "cpu", use_flex=True),
                 position_ids=pos).logits
    # fp32 rounding over 30 layers: ~8e-5 absolute at logit scale ~40 (float64 gives 0 difference)
    assert (flex - ref).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.cuda
@torch.no_grad()
def test_compiled_flex_on_gpu_28_query_heads(tokenizer):
    cfg = GistConfig.load("tiny")
    model = tiny_model("qwen2", vocab_size=len(tokenizer) + 8, num_attention_heads=28, num_key_value_heads=4,
                       hidden_size=28 * 16).cuda()
    add_gist_tokens(tokenizer, model, cfg)
    ids, pos, meta = _batch(tokenizer, cfg)
    ids, pos = ids.cuda(), pos.cuda()
    ref = model(ids, attention_mask=gist_attention_mask(meta, torch.float32, "cuda", use_flex=False),
                position_ids=pos).logits
    enable_gist_attention(model)
    flex = model(ids, attention_mask=gist_attention_mask(meta, torch.float32, "cuda", model=model),
                 position_ids=pos).logits
    valid = (meta.doc >= 0).cuda()
    torch.testing.assert_close(flex[valid], ref[valid], atol=1e-4, rtol=0)
