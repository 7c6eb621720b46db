"""Decode-time SnapKV and R-KV: bounded keys per row, kept indices equal a hand reference, greedy
determinism, continuous batching and the KV pool change no token, and the CLI runs them."""
import random

import pytest
import torch

from thinkc.gist.rule import Role
from thinkc.infer.loop import decode
from thinkc.infer.policies import RKVPolicy, SnapKVPolicy, make_policy
from thinkc.infer.policies.base import SlotView
from thinkc.infer.scores import key_redundancy
from thinkc.models.tiny import tiny_model
from thinkc.errors import ThinkcError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _view(score, prompt_len):
    K = len(score)
    z = lambda v: torch.tensor([v])
    return SlotView(token=z([0] * K), pos=z(list(range(K))), role=z([int(Role.PROMPT)] * prompt_len + [0] * (K - prompt_len)),
                    seg=z([0] * K), doc=z([0] * K), expire=z([10 ** 9] * K), score=torch.tensor([score], dtype=torch.float32))


def _pooled(share, kernel):
    n = len(share)
    return [max(share[max(0, i - kernel // 2):min(n, i + kernel // 2 + 1)]) for i in range(n)]


def _ref_keep(values, n_recent, n_top):
    K = len(values)
    cand = list(range(K - n_recent))
    top = sorted(cand, key=lambda i: (-values[i], i))[:n_top]
    return sorted(top + list(range(K - n_recent, K)))


def test_snapkv_keeps_hand_reference():
    rng = random.Random(0)
    K, window, budget = 16, 4, 10  # clock 16 = a multiple of compress_every 8; prompt ends before the window
    score = [rng.random() for _ in range(K)]
    v = _view(list(score), prompt_len=5)
    keep = SnapKVPolicy(budget, window, compress_every=8, kernel=3).keep(v)[0].nonzero().flatten().tolist()
    total = sum(score)
    share = [score[i] / total if i < K - window else 0.0 for i in range(K)]
    assert keep == _ref_keep(_pooled(share, 3), window, budget - window)
    assert v.score.sum() > 0  # clock 16 is no window start (8 - 4 = 4): the score stays
    v2 = _view(list(score), prompt_len=14)  # a prompt query in the window: no compression yet
    assert SnapKVPolicy(budget, window, compress_every=8, kernel=3).keep(v2).all()


def _ref_redundancy(keys):  # keys [K][D], one head
    K = len(keys)
    norm = [sum(x * x for x in k) ** 0.5 + 1e-8 for k in keys]
    sim = [[0.0 if i == j else sum(a * b for a, b in zip(keys[i], keys[j])) / norm[i] / norm[j] for j in range(K)]
           for i in range(K)]
    for i in range(K):
        newest = max([j for j in range(K) if sim[i][j] > 0.5], default=0)
        sim[i][newest] = 0.0
    mean = [sum(sim[i][j] for i in range(K)) / K for j in range(K)]
    e = [torch.tensor(m).exp().item() for m in mean]
    return [x / sum(e) for x in e]


def test_rkv_keeps_hand_reference():
    g = torch.Generator().manual_seed(1)
    K, window, budget, buffer = 16, 2, 6, 8
    keys = torch.randn(K, 3, generator=g)
    keys[5] = keys[2] * 1.1  # a near-duplicate pair
    red = key_redundancy(keys[None, None], torch.ones(1, K, dtype=torch.bool))[0, 0]
    ref = _ref_redundancy(keys.tolist())
    assert red.tolist() == pytest.approx(ref, abs=1e-6)
    score = [float(x) for x in torch.rand(K, generator=g)]
    v = _view(list(score), prompt_len=4)
    pol = RKVPolicy(budget, window, buffer=buffer, kernel=3)
    keep = pol.select(v, red[None].clone())[0].nonzero().flatten().tolist()
    total = sum(score)
    share = _pooled([score[i] / total if i < K - window else 0.0 for i in range(K)], 3)
    value = [0.07 * share[i] - 0.93 * ref[i] for i in range(K)]
    assert keep == _ref_keep(value, window, budget - window)
    # no redundancy recorded (a stale row, finished at its boundary): nothing is evicted, nothing raises
    stale = _view(list(score), prompt_len=4)
    assert pol.select(stale, None).tolist() == stale.valid.tolist()


def test_bad_input_is_one_line():
    for m, kw in (("snapkv", dict(budget=16, window=32)), ("rkv", dict(budget=0.5)), ("rkv", dict(budget=8, window=8))):
        with pytest.raises(ThinkcError) as e:
            make_policy(m, **kw)
        assert "\n" not in str(e.value)


def _prompts(rng, lens):
    return [[rng.randrange(3, 256) for _ in range(n)] for n in lens]


POLICIES = {"snapkv": lambda: SnapKVPolicy(budget=12, window=4, compress_every=8),
            "rkv": lambda: RKVPolicy(budget=12, window=3, buffer=8)}
BUDGET, EVERY = 12, 8


@pytest.mark.parametrize("method", sorted(POLICIES))
def test_bounded_deterministic_batched_pooled(method):
    rng = random.Random(3)
    model = tiny_model("qwen2", vocab_size=256)
    prompts = _prompts(rng, [5, 9, 3, 7, 6])
    policy = POLICIES[method]()
    free = decode(model, prompts[:1], policy, max_new_tokens=40)[0].tokens
    kw = dict(max_new_tokens=40, eos_ids=[free[9], free[23]])
    together = decode(model, prompts, policy, batch_size=2, **kw)
    assert [r.tokens for r in together] == [r.tokens for r in decode(model, prompts, policy, batch_size=2, **kw)]
    assert len({len(r.tokens) for r in together}) > 1
    compressed = False
    for i, res in enumerate(together):
        # the first compression waits for a boundary (< 2 intervals); after it, at most budget + interval
        assert res.peak_kv < BUDGET + 2 * EVERY
        first = next((j for j, n in enumerate(res.kv_trace) if n == BUDGET and j and res.kv_trace[j - 1] > n), None)
        if first is not None:
            compressed = True
            assert max(res.kv_trace[first:]) < BUDGET + EVERY
        alone = decode(model, [prompts[i]], policy, sample_indices=[i], **kw)[0]
        assert res.tokens == alone.tokens and res.kv_trace == alone.kv_trace
    pooled = decode(model, prompts, policy, batch_size=4, kv_budget=96, page_size=8, **kw)
    assert [r.tokens for r in pooled] == [r.tokens for r in together]
    assert compressed


@pytest.mark.parametrize("method", ["snapkv", "rkv"])
def test_thinkc_infer_runs_the_policy_on_tiny_sft(tmp_path, monkeypatch, capsys, method):
    """`thinkc infer -m snapkv|rkv --budget 128` on the shipped tiny-sft over synthetic problems."""
    import json

    from _cli import run_cli
    from thinkc.data.synth import synth_splits

    _, test = synth_splits(1, 3, seed=2)
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in test))
    out = tmp_path / f"{method}.jsonl"
    code, _, err = run_cli(monkeypatch, capsys, "infer", "-i", data, "-o", out, "-m", method, "--budget", "128",
                           "--max-new-tokens", "200")
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(r["method"] == method for r in rows)
    for r in rows:  # each row reached 256 keys and was compressed there (its kept keys drop)
        trace = r["metrics"]["kv_trace"]
        assert any(b < a for a, b in zip(trace, trace[1:])) and trace[-1] < r["prompt_tokens"] + len(trace)


@pytest.mark.parametrize("budget", [None, 96])
def test_scored_policies_run_under_the_compiled_step(budget):
    """H2O, SnapKV and R-KV under the compiled step (their score sink traced with the forward), with
    and without the pool: the tokens equal the eager step's, and R-KV compiles twice at most (its
    redundancy forwards), the others once."""
    from torch._dynamo.testing import CompileCounter

    from thinkc.infer.policies import H2OPolicy

    model = tiny_model("llama", vocab_size=256)
    rng = random.Random(2)
    prompts = [[rng.randrange(3, 240) for _ in range(n)] for n in (5, 11, 7)]
    for policy, frames in ((H2OPolicy(budget=16), 1), (SnapKVPolicy(budget=24, window=4, compress_every=8), 1),
                           (RKVPolicy(budget=24, window=4, buffer=8), 2)):
        kw = dict(max_new_tokens=40, kv_budget=budget, page_size=8)
        eager = decode(model, prompts, policy, **kw)
        torch._dynamo.reset()
        counter = CompileCounter()
        compiled = decode(model, prompts, policy, compile=counter, **kw)
        assert [r.tokens for r in compiled] == [r.tokens for r in eager], policy.name
        assert 1 <= counter.frame_count <= frames, policy.name
        assert all(r.kv_trace[-1] < r.prompt_len + 40 for r in eager), policy.name  # keys were evicted


def test_rkv_survives_rows_that_finish_at_a_boundary():
    """A row that ends (EOS) exactly at a compression step leaves a stale slot that looks due at every
    step until a newcomer takes it (it crashed R-KV: no redundancy recorded for it). tiny-sft on 20
    synthetic problems, all rows in flight at once, as the demo found it; tokens equal a batch of 5."""
    from thinkc.data.synth import synth_splits
    from thinkc.infer.run import eos_ids, prepare

    model, tok, _, build, _ = prepare("vanilla", model_name="tiny-sft", device="cpu")
    _, test = synth_splits(1, 20, seed=0)
    prompts = [build(r.to_dict()) for r in test]
    policy = RKVPolicy(budget=209)
    kw = dict(max_new_tokens=768, eos_ids=eos_ids(tok))
    wide = decode(model, prompts, policy, batch_size=20, **kw)
    narrow = decode(model, prompts, policy, batch_size=5, **kw)
    assert [r.tokens for r in wide] == [r.tokens for r in narrow]
    fed = [r.prompt_len + len(r.tokens) - 1 for r in wide if r.stopped_by_eos]  # the EOS itself is never fed
    assert any(n % 128 == 0 for n in fed)  # the case is really there
