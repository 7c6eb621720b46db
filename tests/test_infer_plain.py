"""The engine's fast paths equal the general path exactly (the same tokens, the same logits bit for
bit, every measurement): the plain path (thinkc.infer.plain: vanilla decoding without the general
step's gist, eviction and compaction terms), whose key-padding mask equals the rule's step mask at
every step and which a run with eviction, gists or prompt metadata never takes; and the host-driven
gist path (thinkc.infer.gistpath: LightThinker), whose mask, the [o] steps included, equals the rule's."""
import random

import pytest
import torch

import thinkc.infer.plain as plain
from thinkc.infer.engine import DecodeEngine
from thinkc.infer.policies import H2OPolicy, LightThinkerPolicy, VanillaPolicy
from thinkc.infer.sampling import SamplingConfig
from thinkc.models.tiny import tiny_model
from tests.test_infer_equivalence import spec_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(model, prompts, *, fast, slots=3, max_new=24, eos=(), sampling=SamplingConfig(), compile=False,
         policy=None, force=None):
    eng = DecodeEngine(model, policy or VanillaPolicy(), slots=slots, max_prompt=max(map(len, prompts)),
                       max_new_tokens=max_new, eos_ids=eos, sampling=sampling, record=True, plain=fast, compile=compile)
    with torch.no_grad():
        res = eng.run(prompts, force=force)
    assert eng.plain == (fast and policy is None) and eng.may_sync == fast
    assert eng.gistfast == (fast and policy is not None and policy.spec.level == "thought")
    return res


def _same(a, b, exact=True):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.tokens == y.tokens and x.stopped_by_eos == y.stopped_by_eos
        assert (x.peak_kv, x.dependency, x.compressions, x.kv_trace) == (y.peak_kv, y.dependency, y.compressions,
                                                                         y.kv_trace)
        assert x.aug_ids == y.aug_ids and x.aug_roles == y.aug_roles and x.aug_segs == y.aug_segs
        assert [i for i, _ in x.logits] == [j for j, _ in y.logits]
        for (_, la), (_, lb) in zip(x.logits, y.logits):
            if exact:
                assert torch.equal(la, lb)
            else:
                torch.testing.assert_close(la, lb, atol=1e-4, rtol=1e-5)  # key buckets: other SDPA tiling


def _lively(model):
    """Scaled-up random weights: varied tokens (a fresh tiny model repeats one token), so EOS ends
    rows at different steps."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8)
    return model


def _prompts(seed, lens, vocab=250):
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(n)] for n in lens]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_plain_path_equals_general_path(arch):
    model = _lively(tiny_model(arch, vocab_size=256))
    prompts = _prompts(1, [5, 17, 3, 9, 12, 4, 8])
    free = _run(model, prompts[:1], fast=False, slots=1)[0].tokens
    eos = [free[5], free[11]]  # rows end at different steps: slots are refilled mid-run
    fast = _run(model, prompts, fast=True, eos=eos)
    assert len({len(r.tokens) for r in fast}) > 1
    _same(fast, _run(model, prompts, fast=False, eos=eos))
    sampled = SamplingConfig(temperature=0.9, top_p=0.9, seed=3)
    _same(_run(model, prompts, fast=True, eos=eos, sampling=sampled),
          _run(model, prompts, fast=False, eos=eos, sampling=sampled))


def test_plain_mask_is_the_rule():
    """At every step the plain path's mask equals the general path's (the rule, thinkc.gist.rule.visible
    over the slot metadata, as an additive mask), rows that do not feed included."""
    model = _lively(tiny_model("qwen2", vocab_size=256))
    prompts = _prompts(2, [6, 2, 11])
    free = _run(model, prompts[:1], fast=True, slots=1)[0].tokens
    masks = {}
    for fast in (True, False):
        engine = DecodeEngine(model, VanillaPolicy(), slots=2, max_prompt=11, max_new_tokens=20, eos_ids=[free[4]],
                              plain=fast)
        seen, forward = masks.setdefault(fast, []), engine._model_forward

        def spy(tokens, pos, mask, last, seen=seen, forward=forward):
            if tokens.shape == (2, 1):  # a decode step (prompts are longer than one token)
                seen.append(mask.clone())
            return forward(tokens, pos, mask, last)

        engine._model_forward = spy
        with torch.no_grad():
            engine.run(prompts)
    assert len(masks[True]) == len(masks[False]) > 10
    for a, b in zip(masks[True], masks[False]):
        assert torch.equal(a, b)
    low = torch.finfo(torch.float32).min  # steps where a row does not feed (it sees nothing) happened
    assert any(bool((m[:, 0, 0] == low).all(-1).any()) for m in masks[True])


def test_compiled_plain_step_equals_eager():
    model = _lively(tiny_model("qwen2", vocab_size=256, num_hidden_layers=1))
    prompts = _prompts(3, [5, 9, 7])
    _same(_run(model, prompts, fast=True, max_new=12, compile="aot_eager"), _run(model, prompts, fast=True, max_new=12),
          exact=False)


def test_only_vanilla_runs_take_the_plain_path():
    model = tiny_model("qwen2", vocab_size=256)
    kw = dict(slots=2, max_prompt=8, max_new_tokens=4)
    assert plain.is_plain(DecodeEngine(model, VanillaPolicy(), **kw), [None])
    assert not plain.is_plain(DecodeEngine(model, VanillaPolicy(), **kw), [object()])  # prompt metadata
    assert not plain.is_plain(DecodeEngine(model, H2OPolicy(budget=6), **kw), [None])
    assert not plain.is_plain(DecodeEngine(model, LightThinkerPolicy(spec_for(256)), **kw), [None])


def _gist_case(variant):
    """A lively model, prompts, a LightThinker spec whose trigger is a token the model generates
    (thoughts end by the trigger and by forced ends), forced ends and EOS ending rows mid-run."""
    from dataclasses import replace

    model = _lively(tiny_model("qwen2", vocab_size=256))
    prompts = _prompts(4, [5, 13, 3, 9, 7])
    free = _run(model, prompts[:1], fast=False, slots=1, max_new=30)[0].tokens
    spec = replace(spec_for(256), trigger_id=free[4])
    if variant == "no [o]":
        spec = replace(spec, output_id=None)
    elif variant == "instruction":
        spec = replace(spec, instr_ids=(7, 8))
    force = {i: {3, 4, 7 + i, 15} for i in range(len(prompts))}  # 4: a block ends and the next one starts at once
    return model, prompts, LightThinkerPolicy(spec), force, [free[11], free[17]]


@pytest.mark.parametrize("variant", ["[o]", "no [o]", "instruction"])
def test_gist_path_equals_general_path(variant):
    """LightThinker through the host-driven gist path (thinkc.infer.gistpath) gives the general
    path's tokens, logits bit for bit and measurements; greedy and sampled."""
    model, prompts, policy, force, eos = _gist_case(variant)
    kw = dict(policy=policy, force=force, eos=eos, max_new=24)
    fast = _run(model, prompts, fast=True, **kw)
    assert sum(r.compressions for r in fast) >= 2 * len(prompts) and len({len(r.tokens) for r in fast}) > 1
    _same(fast, _run(model, prompts, fast=False, **kw))
    sampled = SamplingConfig(temperature=0.9, top_p=0.9, seed=5)
    _same(_run(model, prompts, fast=True, sampling=sampled, **kw), _run(model, prompts, fast=False, sampling=sampled, **kw))


def test_gist_path_mask_is_the_rule():
    """At every step the gist path's mask equals the general path's (the rule over the slot metadata):
    the [o] steps that hide the thought included."""
    model, prompts, policy, force, eos = _gist_case("[o]")
    masks = {}
    for fast in (True, False):
        engine = DecodeEngine(model, policy, slots=2, max_prompt=13, max_new_tokens=24, eos_ids=eos, plain=fast)
        seen, forward = masks.setdefault(fast, []), engine._model_forward

        def spy(tokens, pos, mask, last, seen=seen, forward=forward):
            if tokens.shape == (2, 1):
                seen.append(mask.clone())
            return forward(tokens, pos, mask, last)

        engine._model_forward = spy
        with torch.no_grad():
            engine.run(prompts, force=force)
        assert engine.gistfast == fast
    assert len(masks[True]) == len(masks[False]) > 20
    for a, b in zip(masks[True], masks[False]):
        assert torch.equal(a, b)


def test_gist_shortcut_equals_general_path():
    """Token-level gists stay on the general path; on CPU its gist decisions skip the block writes when
    no row compresses (one host read): the same tokens, logits bit for bit and measurements."""
    from dataclasses import replace

    model, prompts, policy, force, eos = _gist_case("[o]")
    policy = LightThinkerPolicy(replace(policy.spec, level="token", step=5))
    kw = dict(policy=policy, eos=eos, max_new=24)
    fast = _run(model, prompts, fast=True, **kw)
    assert sum(r.compressions for r in fast) >= 2 * len(prompts)
    _same(fast, _run(model, prompts, fast=False, **kw))
