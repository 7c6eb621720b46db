"""thinkc serve's pieces without a server: the live engine (requests joining a running batch, per-row
limits, cancellation, the thinking budget) against DecodeEngine.run, and the text stream (incremental
detokenisation, stop strings, the thinking / answer split) against one-shot decoding."""
import random

import pytest
import torch

from thinkc.infer.live import LiveEngine, RowRequest
from thinkc.serve.reasoning import ReasoningSplitter, TextStream, split_reasoning

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=["lightthinker", "vanilla"])
def setup(request):
    from thinkc.data.synth import synth_splits
    from thinkc.gist.layout import THINK_CLOSE
    from thinkc.infer.loop import decode
    from thinkc.infer.run import eos_ids, prepare

    torch.set_num_threads(1)
    model, tok, policy, build, _ = prepare(request.param)
    _, test = synth_splits(1, 5, seed=3)
    prompts = [build(r.to_dict()) for r in test]
    ref = decode(model, prompts, policy, max_new_tokens=40, eos_ids=eos_ids(tok))
    close, force = tok.encode("</think>", add_special_tokens=False), tok.encode(THINK_CLOSE, add_special_tokens=False)

    def engine(kv_budget=4000, slots=4):
        return LiveEngine(model, policy, slots=slots, max_len=512, kv_budget=kv_budget, eos_ids=eos_ids(tok),
                          think_close=close, force_close=force)
    return engine, prompts, [r.tokens for r in ref], tok, force


def drive(e, arrivals, steps_between=3):
    """Add (prompt, RowRequest) pairs every few steps while the engine runs; tokens per item as
    streamed by step() plus the rest at retirement, and the finished records."""
    got, done, k, items = {}, {}, 0, []
    pending = list(arrivals)
    with e.session():
        while pending or e.busy():
            if pending and k % steps_between == 0:
                items.append(e.add(*pending.pop(0)))
            if e.busy():
                for it, toks in e.step():
                    got.setdefault(it, []).extend(toks)
                for it, res, reason, row in e.finished():
                    got.setdefault(it, []).extend(res.tokens[row.sent:])
                    assert got[it] == res.tokens  # what was streamed is the result
                    done[it] = (res, reason, row)
            k += 1
    return [got.get(i, []) for i in items], [done[i] for i in items]


def test_rows_join_a_running_batch_and_equal_decode(setup):
    """Arrivals while others decode, a pool small enough to queue and preempt, per-row limits: every
    greedy row equals decoding it alone (DecodeEngine.run), cut at its own max_tokens."""
    engine, prompts, ref, _, _ = setup
    e = engine(kv_budget=240, slots=4)
    limits = [40, 7, 40, 25, 40]
    texts, done = drive(e, [(p, RowRequest(max_tokens=n)) for p, n in zip(prompts, limits)], steps_between=2)
    for got, want, n, (res, reason, _) in zip(texts, ref, limits, done):
        assert got == want[:n]
        assert reason == ("stop" if res.stopped_by_eos else "length")
    assert e.meter.max_rows >= 2 and e.sched.preemptions >= 1  # rows ran together; one was swapped out and back
    assert len(e.cache.pages.free) == e.cache.pages.n_pages  # every page came back


def test_cancel_frees_pages_at_once(setup):
    engine, prompts, ref, _, _ = setup
    e = engine()
    with e.session():
        a, b = e.add(prompts[0], RowRequest(max_tokens=40)), e.add(prompts[1], RowRequest(max_tokens=40))
        for _ in range(6):
            e.step()
        held = e.cache.pages.n_pages - len(e.cache.pages.free)
        e.cancel(a)
        (item, res, reason, _), = e.finished()
        assert (item, reason) == (a, "abort") and 0 < len(res.tokens) < 40
        assert e.cache.pages.n_pages - len(e.cache.pages.free) < held  # a's pages are back before any step
        rest = list(res.tokens)
        while e.busy():
            e.step()
        (item, res, reason, _), = e.finished()
        assert item == b and res.tokens == ref[1]
    assert len(e.cache.pages.free) == e.cache.pages.n_pages
    assert rest == ref[0][:len(rest)]


def test_cancel_queued_item(setup):
    engine, prompts, _, _, _ = setup
    e = engine()
    with e.session():
        a = e.add(prompts[0], RowRequest(max_tokens=5))
        e.cancel(a)
        (item, res, reason, _), = e.finished()
        assert (item, res.tokens, reason) == (a, [], "abort") and not e.busy()


def test_thinking_budget_forces_the_end_of_thinking(setup):
    engine, prompts, ref, tok, force = setup
    e = engine()
    texts, done = drive(e, [(prompts[0], RowRequest(max_tokens=30, thinking_budget=8)),
                            (prompts[1], RowRequest(max_tokens=30))])
    assert texts[0][:8] == ref[0][:8] and texts[0][8:8 + len(force)] == force
    assert done[0][2].think_tokens == 8 + len(tok.encode("</think>", add_special_tokens=False))
    assert texts[1] == ref[1][:30] and done[1][2].think_tokens is None
    reasoning, content = split_reasoning(tok.decode(texts[0], skip_special_tokens=True))
    assert reasoning == tok.decode(ref[0][:8], skip_special_tokens=True) and content is not None


def test_sampled_rows_follow_their_own_seed(setup):
    engine, prompts, _, _, _ = setup
    req = RowRequest(max_tokens=20, temperature=1.0, seed=11)
    alone, _ = drive(engine(), [(prompts[0], req)])
    crowd, _ = drive(engine(), [(prompts[2], RowRequest(max_tokens=20, temperature=1.0, seed=5)), (prompts[0], req),
                                (prompts[1], RowRequest(max_tokens=20))])
    assert crowd[1] == alone[0]  # the batch around a row does not change its draws


def test_text_stream_matches_one_shot_decoding(setup):
    _, _, ref, tok, _ = setup
    rnd = random.Random(0)
    for ids in ref:
        ts, split, out, parts = TextStream(tok), ReasoningSplitter(), "", ([], [])
        i = 0
        while i < len(ids):
            n = rnd.randint(1, 4)
            piece = ts.add(ids[i:i + n])
            i += n
            r, c = split.feed(piece)
            out += piece
            parts[0].append(r), parts[1].append(c)
        tail = ts.finish()
        r, c = split.feed(tail, final=True)
        parts[0].append(r), parts[1].append(c)
        whole = tok.decode(ids, skip_special_tokens=True)
        assert out + tail == whole
        want = split_reasoning(whole)
        assert ("".join(parts[0]), "".join(parts[1]) if want[1] is not None else None) == want


def test_stop_strings_and_the_split():
    class Chars:  # one character per token
        def decode(self, ids, skip_special_tokens=True):
            return "".join(map(chr, ids))

    text = "think a bit</think>\n\nThe answer is 42.\nMore"
    ts = TextStream(Chars(), stop=["is 4", "zzz"])
    out = "".join(ts.add([ord(ch)]) for ch in text) + ts.finish()
    assert out == "think a bit</think>\n\nThe answer " and ts.stopped
    split = ReasoningSplitter()
    pieces = [split.feed(ch) for ch in text] + [split.feed("", final=True)]
    assert "".join(r for r, _ in pieces) == "think a bit"
    assert "".join(c for _, c in pieces) == "The answer is 42.\nMore"
    assert split_reasoning(text) == ("think a bit", "The answer is 42.\nMore")
    assert split_reasoning("never closed </thi") == ("never closed </thi", None)
    s = ReasoningSplitter()
    assert s.feed("abc </th") == ("abc ", "") and s.feed("", final=True) == ("</th", "")


def test_cli_errors_are_one_line(monkeypatch, capsys):
    import socket

    from _cli import run_cli

    code, _, err = run_cli(monkeypatch, capsys, "serve", "--method", "bogus")
    assert code == 2 and "--method 'bogus'" in err and "Traceback" not in err
    with socket.socket() as s:  # a port that is taken: one line before any model loads
        s.bind(("127.0.0.1", 0))
        s.listen()
        code, _, err = run_cli(monkeypatch, capsys, "serve", "--port", str(s.getsockname()[1]))
    assert code == 2 and "cannot listen on 127.0.0.1" in err and len(err.strip().splitlines()) <= 2
    code, _, err = run_cli(monkeypatch, capsys, "serve", "--kv-budget", "4", "--device", "cpu")
    assert code == 2 and "--kv-budget 4" in err
    code, out, _ = run_cli(monkeypatch, capsys, "serve", "--help")
    assert code in (0, None) and "thinkc serve [OPTIONS]" in out and "thinking_token_budget" in out


def test_driver_survives_an_engine_failure(setup, monkeypatch):
    """A step that raises fails the rows in flight with a 500 and a fresh engine serves the next
    request; the inbox feeds rows into one batch."""
    import asyncio

    from thinkc.serve.driver import EngineDriver, Job
    from thinkc.serve.protocol import OpenAIError

    engine, prompts, ref, _, _ = setup
    built = []

    def make():
        built.append(engine())
        return built[-1]

    driver = EngineDriver(make)
    boom = {"armed": True}
    real_step = LiveEngine.step

    def step(self):
        if boom["armed"] and self.busy() and any(o is not None for o in self.owner):
            boom["armed"] = False
            raise RuntimeError("injected")
        return real_step(self)

    monkeypatch.setattr(LiveEngine, "step", step)

    async def run(prompt, n):
        job = Job(prompt, RowRequest(max_tokens=n), asyncio.get_running_loop())
        driver.submit(job)
        toks = []
        while True:
            kind, value = await job.queue.get()
            if kind == "error":
                return value
            toks += value if kind == "tokens" else value["tokens"]
            if kind == "done":
                return toks

    async def main():
        driver.start()
        first = await run(prompts[0], 10)
        assert isinstance(first, OpenAIError) and first.status == 500 and "injected" in first.message
        return await asyncio.gather(*(run(p, 12) for p in prompts[:3]))

    try:
        got = asyncio.run(main())
    finally:
        driver.shutdown(5)
    assert len(built) == 2 and driver.counters.errors == 1 and not driver.thread.is_alive()
    assert got == [r[:12] for r in ref[:3]]
    assert built[1].meter.max_rows >= 2  # the three requests ran in one batch


def test_cancel_a_swapped_out_row(setup):
    """A row preempted to host memory can be cancelled too; the others still equal decode."""
    engine, prompts, ref, _, _ = setup
    e = engine(kv_budget=240, slots=4)
    finished = {}
    with e.session():
        items = [e.add(p, RowRequest(max_tokens=40)) for p in prompts[:4]]
        while not e.sched.swapped:
            assert e.busy()
            e.step()
            finished.update({it: (res, reason) for it, res, reason, _ in e.finished()})
        victim = e.sched.swapped[0].item
        e.cancel(victim)
        while e.busy():
            e.step()
            finished.update({it: (res, reason) for it, res, reason, _ in e.finished()})
        finished.update({it: (res, reason) for it, res, reason, _ in e.finished()})
    assert not e.sched.swapped and len(e.cache.pages.free) == e.cache.pages.n_pages
    for k, it in enumerate(items):
        res, reason = finished[it]
        if it == victim:
            assert reason == "abort" and res.tokens == ref[k][:len(res.tokens)] and len(res.tokens) < 40
        else:
            assert res.tokens == ref[k]
