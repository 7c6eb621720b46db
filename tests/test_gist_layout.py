"""Gist layout (thinkc/gist/layout.py), config presets and special tokens."""
import json

import pytest
import torch

from thinkc.errors import ThinkcError
from thinkc.gist.config import CONFIG_DIR, PRESETS, GistConfig
from thinkc.gist.layout import (add_gist_tokens, build_prompt, build_prompt_sample, build_record_samples,
                                build_sample, build_samples)
from thinkc.gist.rule import NEVER, Role, reference_mask
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
    assert a.n_cache == 1 and not a.use_output_token and a.flags.see_current and a.anllm


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


def test_token_level(tokenizer):
    cfg, s = _setup(tokenizer, level="token", step=6)
    _, cache, out = gist_token_ids(tokenizer, cfg)
    n_think = int((s.meta.role == Role.THOUGHT).sum())
    assert s.input_ids.tolist().count(out) == n_think // 6


def _blocks(s, role=Role.PROMPT):
    """{seg: [roles of the tokens that follow the segment's body, up to the next other segment]}"""
    out = {}
    for t in range(len(s)):
        g = int(s.meta.seg[t])
        if g >= 0 and int(s.meta.role[t]) != role and int(s.meta.role[t]) != Role.RECOVER:
            out.setdefault(g, []).append(Role(int(s.meta.role[t])))
    return out


@pytest.mark.parametrize("prefill_compress", [True, False])
def test_aug_compresses_system_and_question_sentences_with_cache_tokens_only(tokenizer, prefill_compress):
    rec = dict(REC, system="Be brief. Think twice.")
    cfg = GistConfig.load("tiny").replace(mode="aug", exclude_continue=True, prefill_compress=prefill_compress)
    add_gist_tokens(tokenizer, None, cfg)
    s = build_sample(rec, tokenizer, cfg)
    m, ids = s.meta, s.input_ids
    prompt_segs = sorted(set(m.seg[(m.role == Role.PROMPT) & (m.seg >= 0)].tolist()))
    assert len(prompt_segs) == 2 + 3  # two system sentences, three question sentences
    cache_role = Role.CACHE if prefill_compress else Role.CACHE_PLAIN
    blocks = _blocks(s)
    for g in prompt_segs:  # n cache tokens, no instruction, no [o]
        assert blocks[g] == [cache_role] * cfg.n_cache
    texts = ["".join(tokenizer.decode(ids[(m.seg == g) & (m.role == Role.PROMPT)])) for g in prompt_segs]
    assert texts == ["Be brief. ", "Think twice.", "Tom has 12 apples. ", "He buys 7 more! ", "How many?"]
    first_thought = int((m.role == Role.THOUGHT).nonzero()[0])
    body = (m.role == Role.PROMPT) & (m.seg >= 0)
    if prefill_compress:  # sentence-level rule: each sentence expires just past its own cache tokens
        for g in prompt_segs:
            last_cache = int(((m.seg == g) & (m.role == cache_role)).nonzero().max())
            assert (m.expire[body & (m.seg == g)] == last_cache + 1).all()
    else:  # plain prefill: visible through the whole prompt, gone from the first thought on
        assert (m.expire[body] == first_thought).all()
    # the prompt tokens fed at inference carry the same metadata (the sentences expire at its end)
    p = build_prompt_sample(rec, tokenizer, cfg)
    assert torch.equal(p.input_ids, ids[:first_thought]) and torch.equal(p.meta.role, m.role[:first_thought])
    assert torch.equal(p.meta.expire, m.expire[:first_thought])
    outs = (ids == gist_token_ids(tokenizer, cfg)[2]).nonzero().flatten().tolist()
    assert len(outs) == len(THOUGHTS)  # [o] only after thoughts: exclude_continue chains those
    assert [int(m.expire[a]) for a in outs[:-1]] == outs[1:]


@pytest.mark.parametrize("exclude_continue", [False, True])
def test_recover_rebuilds_each_thought_from_prompt_and_gist_blocks(tokenizer, exclude_continue):
    cfg, s = _setup(tokenizer, mode="recover", exclude_continue=exclude_continue, prefill_compress=False)
    m, ids = s.meta, s.input_ids.tolist()
    trig, _, out = gist_token_ids(tokenizer, cfg)
    rec_at = ids.index(tokenizer.convert_tokens_to_ids(cfg.recover_token))
    eos_at = rec_at - 1
    assert ids[eos_at] == tokenizer.eos_token_id and m.role[rec_at] == Role.RECOVER
    # text: each thought's own tokens with its separator (the trigger), then EOS
    tail = ids[rec_at + 1:]
    assert tail[-1] == tokenizer.eos_token_id and tail.count(trig) == len(THOUGHTS)
    assert tokenizer.decode([t for t in tail[:-1] if t != trig]) == "".join(THOUGHTS)
    assert s.labels[rec_at] == IGNORE_INDEX and (s.labels[rec_at + 1:] == s.input_ids[rec_at + 1:]).all()
    # positions restart just past the last [o]
    last_out = max(i for i, t in enumerate(ids[:rec_at]) if t == out)
    assert s.position_ids[rec_at:].tolist() == list(range(last_out + 1, last_out + 1 + len(s) - rec_at))
    # the recovery sees the prompt and the gist blocks, never the answer or EOS
    seen = reference_mask(m)[0, -1].nonzero().flatten().tolist()
    before = [k for k in seen if k < rec_at]
    roles = {Role(int(m.role[k])) for k in before}
    assert roles <= {Role.PROMPT, Role.CACHE, Role.CACHE_PLAIN, Role.OUTPUT}
    assert not any(m.role[k] == Role.PROMPT and m.seg[k] >= 0 for k in before)  # no sentence text
    assert max(before) == last_out and eos_at not in seen
    assert sum(m.role[k] == Role.OUTPUT for k in before) == (1 if exclude_continue else len(THOUGHTS))


def test_recover_fits_max_length_and_hybrid_adds_prompt_recovery(tokenizer):
    cfg, full = _setup(tokenizer, mode="recover")
    rec_at = full.meta.role.tolist().index(Role.RECOVER)
    first = [i for i in range(rec_at, len(full)) if full.meta.seg[i] == full.meta.seg[rec_at + 1]]
    # room for the first thought only: the recovery stops at the first thought that does not fit
    short = build_sample(REC, tokenizer, cfg.replace(max_length=rec_at + 2 + len(first)))
    assert len(short) == rec_at + 2 + len(first) and short.meta.seg[rec_at + 1:-1].unique().numel() == 1
    none = build_sample(REC, tokenizer, cfg.replace(max_length=rec_at + 2))  # no room: the aug sample only
    assert torch.equal(none.input_ids, full.input_ids[:rec_at]) and (none.meta.role != Role.RECOVER).all()
    (cut,), stats = build_samples([REC], tokenizer, cfg.replace(max_length=rec_at - 5))  # trimmed, not dropped
    assert torch.equal(cut.input_ids, full.input_ids[:rec_at - 5]) and stats.trimmed == 1
    both = build_record_samples(REC, tokenizer, cfg.replace(hybrid=True))
    assert len(both) == 2 and torch.equal(both[0].input_ids, full.input_ids)
    p = both[1]
    r = p.input_ids.tolist().index(tokenizer.convert_tokens_to_ids(cfg.recover_token))
    sentences = p.input_ids[:r][(p.meta.role[:r] == Role.PROMPT) & (p.meta.seg[:r] >= 0)]
    assert p.input_ids[r + 1:-1].tolist() == sentences.tolist() and p.input_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(sentences) == REC["question"] and p.labels[r] == IGNORE_INDEX
    assert p.position_ids.tolist() == list(range(len(p)))
    with pytest.raises(ThinkcError, match="hybrid"):
        GistConfig(hybrid=True)  # aug-wo-pc has no compressed prompt to rebuild


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


def test_build_samples_trims_long_or_drops_on_request(tokenizer):
    cfg, s = _setup(tokenizer)
    kept, stats = build_samples([REC, REC], tokenizer, cfg.replace(max_length=len(s) - 1))
    assert stats.trimmed == 2 and stats.dropped == 0
    assert [k.input_ids.tolist() for k in kept] == [s.input_ids[:-1].tolist()] * 2
    kept, stats = build_samples([REC, REC], tokenizer, cfg.replace(max_length=len(s) - 1), overlong="drop")
    assert kept == [] and stats.dropped == 2


def test_anllm_layout_as_the_original(tokenizer):
    """S_i "\\n" anchor: no trigger, no [o]; the anchor is trained (the model emits it to compress)."""
    cfg = GistConfig.load("anllm")
    add_gist_tokens(tokenizer, None, cfg)
    s = build_sample(REC, tokenizer, cfg)
    trig, cache, out = gist_token_ids(tokenizer, cfg)
    assert trig is None and out is None and len(cache) == 1 and cfg.trigger not in cfg.special_tokens()
    ids = s.input_ids.tolist()
    anchors = [i for i, t in enumerate(ids) if t == cache[0]]
    assert len(anchors) == len(THOUGHTS)
    for i, at in enumerate(anchors):
        body = [p for p in range(len(s)) if s.meta.seg[p] == i and s.meta.role[p] == Role.THOUGHT]
        assert tokenizer.decode([ids[p] for p in body]) == THOUGHTS[i] + "\n" and body[-1] == at - 1
        assert s.labels[at] == cache[0] and s.labels[at + 1] == ids[at + 1]  # anchor trained, next from it
        assert (s.meta.expire[body] == at + 1).all()  # S_i expires just past its anchor
    m = reference_mask(s.meta)[0]
    a0, a1 = anchors[0], anchors[1]
    assert m[a1].nonzero().flatten().tolist() == list(range(a0 + 1, a1 + 1))  # see_current: own thought only
    assert m[a1 + 1, a0] and not m[a1 + 1, a0 - 1]  # the next thought sees the anchor, not S_0


def test_anllm_with_fed_anchor_variant(tokenizer):
    """anllm=false, use_output_token=false: thinkc's older AnLLM variant (<w> emitted, anchor fed)."""
    cfg = GistConfig.load("anllm").replace(anllm=False)
    add_gist_tokens(tokenizer, None, cfg)
    s = build_sample(REC, tokenizer, cfg)
    trig, cache, out = gist_token_ids(tokenizer, cfg)
    assert out is None and len(cache) == 1
    ids = s.input_ids.tolist()
    at = ids.index(cache[0])
    assert ids[at - 1] == trig and s.labels[at] == IGNORE_INDEX and s.labels[at + 1] == ids[at + 1]
    assert int(s.meta.expire[at - 1]) == at + 1  # S_0 expires just past its anchor
    with pytest.raises(ThinkcError, match="use_output_token"):
        GistConfig(anllm=True)


def test_trainer_rows_recover_hybrid(tokenizer):
    """`thinkc train` rows: hybrid gives two samples per record, the recovery fits data.max_length."""
    from thinkc.train.config import load_config
    from thinkc.train.dataset import build_samples as train_samples, sample_builder

    cfg, full = _setup(tokenizer, mode="recover", hybrid=True)
    n = len(full) - 3  # the last thought's recovery no longer fits
    tcfg = load_config(overrides={"method": "lightthinker", "model": {"init": "tiny"}, "train": {"output": "unused"},
                                  "data": {"train": "synth", "max_length": n}})
    rows, stats = train_samples([REC, REC], tokenizer, tcfg, sample_builder(tokenizer, cfg.replace(max_length=n)))
    assert stats.samples == 4 and stats.truncated == 0
    main, prompt = rows[0], rows[1]
    assert len(main) <= n and main.meta.role[-1] == Role.RECOVER and main.input_ids[-1] == tokenizer.eos_token_id
    # segs 0-2 are the question's sentences: the first two of the three thoughts are recovered
    assert main.meta.seg[main.meta.role == Role.RECOVER].unique().tolist() == [-1, 3, 4]
    assert (prompt.meta.role != Role.RECOVER).all() and prompt.input_ids[-1] == tokenizer.eos_token_id
