"""`thinkc serve` end to end: the real server (uvicorn, in a subprocess, on a free port) and the real
`openai` client. Greedy replies equal thinkc.infer's decode (the function `thinkc infer` runs),
streamed or not, alone or 32 at once; the thinking and the answer are split at "</think>"; a
dropped stream frees its pages at once (seen in /metrics); bad requests get OpenAI's error JSON
and the server answers the next request; SIGTERM ends a stream in flight cleanly."""
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.slow  # one server for the module: ~10 s to start, ~25 s in all on 2 cores

MODEL = "tiny-lightthinker"
POOL = 1600  # KV tokens: 32 rows of ~100 tokens do not all fit, so requests queue for pages


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    cmd = [sys.executable, "-c", "import torch; torch.set_num_threads(1); from thinkc.cli.main import main; main()",
           "serve", "--model", MODEL, "--port", str(port), "--max-model-len", "2048", "--kv-budget", str(POOL),
           "--max-rows", "32", "--shutdown-timeout", "0.2"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("the server did not come up:\n" + log.read_text())
    yield {"url": url, "proc": proc, "log": log}
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key="none", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def ref():
    """thinkc infer's decode in this process: prompts, and each prompt decoded alone (greedy)."""
    from thinkc.data.synth import synth_splits
    from thinkc.infer.loop import decode
    from thinkc.infer.run import eos_ids, prepare

    torch.set_num_threads(1)
    model, tok, policy, build, _ = prepare("lightthinker", MODEL)
    _, test = synth_splits(1, 32, seed=5)
    questions = [r.question for r in test]

    @functools.lru_cache(maxsize=None)
    def alone(i: int, max_new: int) -> list[int]:
        return decode(model, [build({"question": questions[i]})], policy, max_new_tokens=max_new,
                      eos_ids=eos_ids(tok))[0].tokens
    return {"questions": questions, "alone": alone, "tok": tok, "build": build}


def metrics(server) -> dict:
    text = httpx.get(server["url"] + "/metrics").text
    out = {}
    for line in text.splitlines():
        m = re.match(r'^(thinkc_\w+)(\{[^}]*\})? ([0-9.e+-]+)$', line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def chat(client, question: str, **kw):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}], **kw)


def stream_chat(client, question: str, **kw):
    reasoning, content, finish, use = "", "", None, None
    for ch in chat(client, question, stream=True, stream_options={"include_usage": True}, **kw):
        if ch.usage is not None:
            use = ch.usage
        for c in ch.choices:
            reasoning += getattr(c.delta, "reasoning", None) or ""
            content += c.delta.content or ""
            finish = c.finish_reason or finish
    return reasoning, content, finish, use


def test_health_and_models(server, client):
    assert httpx.get(server["url"] + "/health").json() == {"status": "ok"}
    assert [m.id for m in client.models.list().data] == [MODEL]
    m = metrics(server)
    assert m["thinkc_kv_pages_total"] * m["thinkc_kv_page_size_tokens"] == POOL
    assert m["thinkc_kv_pages_free"] == m["thinkc_kv_pages_total"]


def test_chat_equals_infer_and_splits_at_the_tag(client, ref):
    """A whole reply (thinking, </think>, answer): non-streamed and streamed equal the decode."""
    tok = ref["tok"]
    want = tok.decode(ref["alone"](0, 900), skip_special_tokens=True)
    assert "</think>" in want and "\\boxed" in want.split("</think>")[1]
    r = chat(client, ref["questions"][0], max_tokens=900, temperature=0)
    msg = r.choices[0].message
    reasoning, content = want.split("</think>", 1)
    assert msg.reasoning == reasoning and msg.reasoning_content == reasoning
    assert msg.content == content.lstrip() and "\\boxed" in msg.content and "</think>" not in msg.content
    assert r.choices[0].finish_reason == "stop"
    u = r.usage
    n = len(ref["alone"](0, 900))
    assert u.completion_tokens == n and u.prompt_tokens == len(ref["build"]({"question": ref["questions"][0]}))
    ids, close = ref["alone"](0, 900), tok.encode("</think>", add_special_tokens=False)
    end = next(i + len(close) for i in range(n) if ids[i:i + len(close)] == close)
    assert u.completion_tokens_details.reasoning_tokens == end  # the thinking, its tag included
    assert u.thinkc["compressions"] > 0 and 0 < u.thinkc["peak_kv"] < u.prompt_tokens + n
    s_reasoning, s_content, finish, use = stream_chat(client, ref["questions"][0], max_tokens=900, temperature=0)
    assert (s_reasoning, s_content, finish) == (msg.reasoning, msg.content, "stop")
    assert use.completion_tokens == n


def test_32_concurrent_requests_equal_one_at_a_time(server, client, ref):
    before = metrics(server)["thinkc_engine_steps_total"]
    n_tok = 24

    def one(i):
        if i % 2:
            return stream_chat(client, ref["questions"][i], max_tokens=n_tok, temperature=0)[0]
        return chat(client, ref["questions"][i], max_tokens=n_tok, temperature=0).choices[0].message.reasoning

    with ThreadPoolExecutor(32) as pool:
        got = list(pool.map(one, range(32)))
    tok = ref["tok"]
    for i, text in enumerate(got):
        assert text == tok.decode(ref["alone"](i, n_tok), skip_special_tokens=True), i
    steps = metrics(server)["thinkc_engine_steps_total"] - before
    assert steps < 32 * n_tok / 3  # batched: one step serves many rows (one at a time would take 32 x 24)
    m = metrics(server)
    assert m["thinkc_kv_pages_free"] == m["thinkc_kv_pages_total"] and m["thinkc_rows_running"] == 0


def test_dropped_stream_frees_its_pages(server, ref):
    body = {"model": MODEL, "messages": [{"role": "user", "content": ref["questions"][1]}], "max_tokens": 1500,
            "stream": True}
    aborted = metrics(server).get('thinkc_requests_total{finish_reason="abort"}', 0)
    with httpx.Client(timeout=30) as h:
        with h.stream("POST", server["url"] + "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            lines = resp.iter_lines()
            chunks = [next(lines) for _ in range(12)]
            assert all(c.startswith("data: ") or c == "" for c in chunks)
            m = metrics(server)
            assert m["thinkc_rows_running"] == 1 and m["thinkc_kv_pages_free"] < m["thinkc_kv_pages_total"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = metrics(server)
        if m["thinkc_kv_pages_free"] == m["thinkc_kv_pages_total"]:
            break
        time.sleep(0.1)
    assert m["thinkc_kv_pages_free"] == m["thinkc_kv_pages_total"] and m["thinkc_rows_running"] == 0
    assert m['thinkc_requests_total{finish_reason="abort"}'] == aborted + 1


def test_dropped_plain_request_frees_its_pages(server, ref):
    body = {"model": MODEL, "messages": [{"role": "user", "content": ref["questions"][1]}], "max_tokens": 1500}
    aborted = metrics(server).get('thinkc_requests_total{finish_reason="abort"}', 0)
    with pytest.raises(httpx.TimeoutException):  # the client gives up and closes the connection
        httpx.post(server["url"] + "/v1/chat/completions", json=body, timeout=0.4)  # the reply takes ~600 tokens
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = metrics(server)
        if m['thinkc_requests_total{finish_reason="abort"}'] == aborted + 1:
            break
        time.sleep(0.1)
    assert m['thinkc_requests_total{finish_reason="abort"}'] == aborted + 1
    assert m["thinkc_kv_pages_free"] == m["thinkc_kv_pages_total"] and m["thinkc_rows_running"] == 0


BAD = [  # (body, status, param)
    ({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
    ({"model": MODEL, "messages": "hi"}, 400, "messages"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}, 400, "max_tokens"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 400, "temperature"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "max_tokens"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2040}, 400, "max_tokens"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1900}, 400, "max_tokens"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "one two three " * 700}]}, 400, "messages"),
    ({"model": MODEL, "messages": [{"role": "assistant", "content": "hi"}]}, 400, "messages"),
    ({"model": MODEL, "messages": []}, 400, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
]


@pytest.mark.parametrize("body,status,param", BAD)
def test_bad_requests_get_openai_errors(server, client, body, status, param):
    r = httpx.post(server["url"] + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param and err["message"]
    r = chat(client, "What is 2 + 3?", max_tokens=2, temperature=0)  # the server still answers
    assert r.usage.completion_tokens == 2


def test_error_kinds(server, client):
    r = httpx.post(server["url"] + "/v1/chat/completions", content=b"{not json", timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(server["url"] + "/v1/chat/completions", timeout=30,
                   json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1900})
    assert r.json()["error"]["code"] == "kv_budget_exceeded"  # fits the context (2048) but not the pool (1600)
    assert httpx.get(server["url"] + "/v2/nothing").json()["error"]["code"] == "404"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        chat(client, "hi", max_tokens=5000)


def test_completions_and_stop_strings(client, ref):
    tok = ref["tok"]
    prompt_ids = ref["build"]({"question": ref["questions"][2]})
    want = tok.decode(ref["alone"](2, 40), skip_special_tokens=True)
    r = client.completions.create(model=MODEL, prompt=prompt_ids, max_tokens=40, temperature=0)
    assert r.choices[0].text == want and r.choices[0].finish_reason == "length"
    text = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt=prompt_ids, max_tokens=40, temperature=0, stream=True) if c.choices)
    assert text == want
    stop = want[10:14]
    r = client.completions.create(model=MODEL, prompt=prompt_ids, max_tokens=40, temperature=0, stop=[stop])
    assert r.choices[0].text == want[:want.index(stop)] and r.choices[0].finish_reason == "stop"
    r = chat(client, ref["questions"][2], max_tokens=40, temperature=0, stop=stop)
    assert r.choices[0].message.reasoning == want[:want.index(stop)] and r.choices[0].finish_reason == "stop"
    reasoning, content, finish, _ = stream_chat(client, ref["questions"][2], max_tokens=40, temperature=0, stop=[stop])
    assert (reasoning, content, finish) == (want[:want.index(stop)], "", "stop")  # held back, never sent past it


def test_thinking_token_budget(client, ref):
    tok = ref["tok"]
    r = chat(client, ref["questions"][3], max_completion_tokens=120, temperature=0,
             extra_body={"thinking_token_budget": 12})
    msg = r.choices[0].message
    assert msg.reasoning == tok.decode(ref["alone"](3, 12), skip_special_tokens=True)
    assert msg.content is not None and "</think>" not in msg.content
    assert r.usage.completion_tokens_details.reasoning_tokens == 12 + len(tok.encode("</think>",
                                                                                     add_special_tokens=False))


def test_sampling_is_seeded_per_request(client, ref):
    q = ref["questions"][4]
    a = chat(client, q, max_tokens=30, temperature=1.0, seed=3).choices[0].message.reasoning
    with ThreadPoolExecutor(3) as pool:  # the batch around a request does not change its draws
        b, *_ = pool.map(lambda s: chat(client, q, max_tokens=30, temperature=1.0, seed=s).choices[0].message.reasoning,
                         [3, 4, 5])
    assert a == b
    greedy = ref["tok"].decode(ref["alone"](4, 30), skip_special_tokens=True)
    seeds = [chat(client, q, max_tokens=30, temperature=1.5, seed=s).choices[0].message.reasoning for s in range(3)]
    assert any(s != greedy for s in seeds)


def test_load_client_and_thinkc_eval(server, ref, tmp_path):
    """thinkc.bench.serve_client: tasks/s and latency percentiles for concurrent clients, and rows that
    thinkc eval grades (the served model evaluated like a local run)."""
    from thinkc.bench.serve_client import eval_rows, run_clients
    from thinkc.data.synth import synth_splits
    from thinkc.eval.answers import gold_from_reference
    from thinkc.eval.metrics import evaluate_runs

    _, test = synth_splits(1, 32, seed=5)
    records = [{"id": r.id, "question": r.question, "answer": gold_from_reference(r.answer)} for r in test[:6]]
    results, summary = run_clients(server["url"] + "/v1", [r["question"] for r in records], clients=3, max_tokens=24)
    assert summary["tasks"] == 6 and summary["model"] == MODEL and summary["tasks_per_s"] > 0
    assert 0 < summary["latency_p50_s"] <= summary["latency_p95_s"]
    tok = ref["tok"]
    assert results[0]["reasoning"] == tok.decode(ref["alone"](0, 24), skip_special_tokens=True)
    path = tmp_path / "served.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in eval_rows(records, results, "lightthinker", MODEL)))
    rows, (summary_row,) = evaluate_runs([path])
    assert len(rows) == 6 and summary_row.n == 6 and all(r["metrics"]["peak_kv"] > 0 for r in rows)


def test_bench_serve_url(server, tmp_path, monkeypatch, capsys):
    """`thinkc bench serve --url`: the server measured by concurrent clients, one row per URL in the JSON."""
    from tests._cli import run_cli

    out = tmp_path / "serve-url.json"
    code, stdout, _ = run_cli(monkeypatch, capsys, "bench", "serve", "--url", server["url"], "--n", "4",
                              "--clients", "2", "--max-new-tokens", "16", "--json", out)
    assert code == 0, stdout
    (row,) = json.loads(out.read_text())["results"]
    assert row["model"] == MODEL and row["tasks"] == 4 and row["clients"] == 2
    assert 0 < row["latency_p50_s"] <= row["latency_p95_s"] and row["completion_tokens"] <= 4 * 16
    code, _, err = run_cli(monkeypatch, capsys, "bench", "serve", "--url", "http://127.0.0.1:9", "--n", "1")
    assert code != 0 and "no OpenAI-compatible server answered" in err and "Traceback" not in err


def test_thinkc_eval_url_grades_like_thinkc_infer(server, tmp_path, monkeypatch, capsys):
    """`thinkc eval --url`: the served model's greedy replies, graded, equal `thinkc infer` on the same
    problems, verdict for verdict (and answer for answer)."""
    from tests._cli import run_cli
    from thinkc.data.synth import synth_splits

    _, test = synth_splits(1, 4, seed=3)
    problems = tmp_path / "test.jsonl"
    problems.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in test))
    local, served = tmp_path / "local.jsonl", tmp_path / "served.jsonl"
    code, _, err = run_cli(monkeypatch, capsys, "infer", "-i", problems, "-o", local, "-m", "lightthinker",
                           "--model", MODEL, "--max-new-tokens", "700")
    assert code == 0, err
    code, _, err = run_cli(monkeypatch, capsys, "eval", local, "--url", server["url"], "--problems", problems,
                           "--save", served, "--max-tokens", "700", "--verdicts", tmp_path / "v.jsonl")
    assert code == 0, err
    verdicts = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    by = {}
    for v in verdicts:
        by.setdefault(v["id"], {})["served" if v["method"].startswith("served:") else "local"] = v
    assert len(by) == 4 and all(len(pair) == 2 for pair in by.values())
    for pair in by.values():
        assert pair["served"]["pred"] == pair["local"]["pred"] and pair["served"]["correct"] == pair["local"]["correct"]
    assert sum(p["local"]["pred"] is not None for p in by.values()) >= 3  # the replies reached their answers
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--url", server["url"])
    assert code != 0 and "--url needs --problems" in err


def test_sigterm_finishes_a_stream_cleanly(server, ref):
    """Last: stops the module's server. A stream in flight ends complete (finish_reason, [DONE]) and
    the engine drains before the process exits."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": ref["questions"][5]}], "max_tokens": 1500,
            "stream": True}
    lines, started = [], threading.Event()

    def read():
        with httpx.stream("POST", server["url"] + "/v1/chat/completions", json=body, timeout=60) as resp:
            for line in resp.iter_lines():
                lines.append(line)
                if len(lines) > 5:
                    started.set()

    t = threading.Thread(target=read)
    t.start()
    assert started.wait(60)
    server["proc"].send_signal(signal.SIGTERM)
    t.join(60)
    assert server["proc"].wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its shutdown
    assert "stopped cleanly" in server["log"].read_text() and "Traceback" not in server["log"].read_text()
    lines = [x for x in lines if x]
    data = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
    assert lines[-1] == "data: [DONE]" and lines.count("data: [DONE]") == 1
    assert data[-1]["choices"][0]["finish_reason"] == "abort"  # --shutdown-timeout 0.2: cut, but complete
