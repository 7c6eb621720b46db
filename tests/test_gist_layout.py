"""Gist layout (thinkc/gist/layout.py), config presets and special tokens."""
import json

import pytest
import torch

from thinkc.errors import ThinkcError
from thinkc.gist.config import CONFIG_DIR, PRESETS, GistConfig
from thinkc.gist.layout import add_gist_tokens, build_prompt, build_sample, build_samples
from thinkc.gist.rule import NEVER, Role
from thinkc.gist.sample import IGNORE_INDEX
from thinkc.gist.tokens import gist_token_ids
from thinkc.models.tiny import tiny_model

REC = {"question": "Tom has 12 apples. He buys 7 more! How many?",
       "thinking": "Let me compute. 12 + 7 = 19.\n\nHmm, let me double-check.\n\n\nSo it is 19.",
       "answer": "The answer is \\boxed{19}."}
THOUGHTS = ["Let me compute. 12 + 7 = 19.", "Hmm, let me double-check.", "So it is 19."]


def _setup(tokenizer, **kw):
    cfg = GistConfig.load("tiny").replace(**kw)
    add_gist_tokens(tokenizer, None, cfg)
    return cfg, build_sample(REC, tokenizer, cfg)


def test_presets_match_json_files():
    for name, d in PRESETS.items():
        assert json.loads((CONFIG_DIR / f"{name}.json").read_text()) == d
    assert GistConfig.load("qwen").n_cache == 9 and GistConfig.load("llama").n_cache == 7
    a = GistConfig.load("anllm")
    assert a.n_cache == 1 and not a.use_output_token and a.flags.see_current


@pytest.mark.parametrize("bad", [{"mode": "zip"}, {"n_cache": 0}, {"bogus": 1}, {"trigger": "\n\n"},
                                 {"bi_directional": True, "diagonal": True}, {"n_cache": "3"}])
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(ThinkcError):
        GistConfig.from_dict(bad)


def test_thought_level_layout(tokenizer):
    cfg, s = _setup(tokenizer)
    trig, cache, out = gist_token_ids(tokenizer, cfg)
    ids, role, seg = s.input_ids.tolist(), s.meta.role.tolist(), s.meta.seg.tolist()
    assert s.position_ids.tolist() == list(range(len(s)))
    assert ids.count(trig) == len(THOUGHTS) and ids.count(out) == len(THOUGHTS)
    for i, t in enumerate(THOUGHTS):  # each thought decodes back, then <w> C_i [o]
        pos = [p for p in range(len(s)) if seg[p] == i and role[p] == Role.THOUGHT]
        assert tokenizer.decode([ids[p] for p in pos]) == t
        end = pos[-1] + 1
        assert ids[end:end + 4] == [trig, *cache, out]
        assert all(int(s.meta.expire[p]) == end + 3 for p in pos + [end])  # expire at this [o]
    # without the gist tokens (trigger -> blank line), the text comes back
    plain = "".join("\n\n" if t == trig else tokenizer.decode([t]) for t in ids if t not in (*cache, out))
    assert "\n\n".join(THOUGHTS) + "\n\n</think>" in plain
    lab = s.labels
    for p in range(len(s)):
        r = role[p]
        trained = r in (Role.THOUGHT, Role.TRIGGER, Role.ANSWER)
        assert (lab[p] != IGNORE_INDEX) == trained and (not trained or lab[p] == ids[p])
    assert ids[-1] == tokenizer.eos_token_id and lab[-1] == tokenizer.eos_token_id
    assert build_prompt(REC, tokenizer, cfg) == ids[:role.index(Role.THOUGHT)]


def test_normal_mode_is_plain(tokenizer):
    cfg, s = _setup(tokenizer, mode="normal")
    assert (s.meta.seg == -1).all() and (s.meta.expire == NEVER).all()
    assert "\n\n".join(THOUGHTS) in tokenizer.decode(s.input_ids)


def test_token_level_and_aug_and_recover(tokenizer):
    cfg, s = _setup(tokenizer, level="token", step=6)
    _, cache, out = gist_token_ids(tokenizer, cfg)
    n_think = int((s.meta.role == Role.THOUGHT).sum())
    assert s.input_ids.tolist().count(out) == n_think // 6
    cfg, s = _setup(tokenizer, mode="recover", hybrid=True)
    prompt_segs = s.meta.seg[(s.meta.role == Role.PROMPT) & (s.meta.seg >= 0)].unique()
    assert len(prompt_segs) == 3  # three question sentences, each compressed
    rec = s.input_ids.tolist().index(tokenizer.convert_tokens_to_ids(cfg.recover_token))
    tail = tokenizer.decode(s.input_ids[rec + 1:-1])
    assert tail == REC["question"] + "\n\n" + "\n\n".join(THOUGHTS) and s.labels[rec] == IGNORE_INDEX


def test_tokens_and_embedding_init(tokenizer, arch):
    cfg = GistConfig.load("tiny")
    model = tiny_model(arch, vocab_size=len(tokenizer))
    ids = add_gist_tokens(tokenizer, model, cfg)
    assert "\n\n" not in ids and len(tokenizer) == len(tokenizer.get_vocab())
    emb = model.get_input_embeddings().weight
    src = tokenizer.encode(cfg.init_text, add_special_tokens=False)
    mean = emb[src].mean(0)
    for i in ids.values():
        torch.testing.assert_close(emb[i], mean)
    head = model.get_output_embeddings().weight
    torch.testing.assert_close(head[list(ids.values())[0]], head[src].mean(0))
    assert add_gist_tokens(tokenizer, model, cfg) == ids  # idempotent


def test_build_samples_drops_long(tokenizer):
    cfg, s = _setup(tokenizer)
    kept, stats = build_samples([REC, REC], tokenizer, cfg.replace(max_length=len(s) - 1))
    assert kept == [] and stats.dropped == 2


def test_anllm_has_no_output_token(tokenizer):
    cfg = GistConfig.load("anllm")
    add_gist_tokens(tokenizer, None, cfg)
    s = build_sample(REC, tokenizer, cfg)
    trig, cache, out = gist_token_ids(tokenizer, cfg)
    assert out is None and len(cache) == 1
    ids = s.input_ids.tolist()
    at = ids.index(cache[0])
    assert ids[at - 1] == trig and s.labels[at + 1] == ids[at + 1]  # next token predicted from the anchor
    assert int(s.meta.expire[at - 1]) == at + 1  # S_0 expires just past its anchor
