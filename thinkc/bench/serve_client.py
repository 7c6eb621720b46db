"""A load client for an OpenAI-compatible server (thinkc serve, vLLM, ...): N concurrent clients send
chat requests for a list of questions; tasks/s, tokens/s and the p50 / p95 latency come back, and the
replies as rows `thinkc eval` reads (thinkc infer's JSONL layout), so a served model is graded like
a local run.

    results, summary = run_clients("http://127.0.0.1:8000", questions, clients=32, max_tokens=1024)
    rows = eval_rows(records, results, method="lightthinker", model="tiny-lightthinker")

Each client thread sends its next question when its reply is in (closed loop), so at most
`clients` requests are in flight. Greedy by default (temperature 0), as thinkc infer."""
from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from thinkc.errors import ThinkcError


def _model_of(client, url: str) -> str:
    try:
        data = client.get(f"{url}/v1/models").json()["data"]
    except Exception as e:  # noqa: BLE001 - any failure here means the URL is not a server we can use
        raise ThinkcError(f"{url}/v1/models: no OpenAI-compatible server answered ({e})") from None
    return data[0]["id"]


def query(client, url: str, model: str, question: str, max_tokens: int, temperature: float = 0.0,
          extra: dict | None = None) -> dict:
    """One chat request: its text (thinking, "</think>", answer), reasoning, content, usage, latency."""
    body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
            "temperature": temperature, **(extra or {})}
    t0 = time.perf_counter()
    r = client.post(f"{url}/v1/chat/completions", json=body)
    latency = time.perf_counter() - t0
    if r.status_code != 200:
        raise ThinkcError(f"{url}: HTTP {r.status_code}: {r.text[:300]}")
    out = r.json()
    msg = out["choices"][0]["message"]
    reasoning = msg.get("reasoning") or msg.get("reasoning_content") or ""
    content = msg.get("content")
    text = reasoning if content is None else f"{reasoning}</think>\n\n{content}"
    return {"text": text, "reasoning": reasoning, "content": content, "usage": out.get("usage") or {},
            "finish_reason": out["choices"][0]["finish_reason"], "latency_s": latency}


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = int(k)
    return xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (k - lo)


def run_clients(url: str, questions: list[str], clients: int = 8, max_tokens: int = 1024, model: str | None = None,
                temperature: float = 0.0, timeout_s: float = 600.0) -> tuple[list[dict], dict]:
    """(one result per question, in order; the summary) for `clients` concurrent closed-loop clients."""
    import httpx

    url = url.rstrip("/").removesuffix("/v1")
    if not questions:
        raise ThinkcError("serve client: no questions")
    local = threading.local()

    def client():
        if not hasattr(local, "c"):
            local.c = httpx.Client(timeout=timeout_s)
        return local.c

    with httpx.Client(timeout=timeout_s) as c:
        model = model or _model_of(c, url)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, clients)) as pool:
        results = list(pool.map(lambda q: query(client(), url, model, q, max_tokens, temperature), questions))
    wall = time.perf_counter() - t0
    lat = [r["latency_s"] for r in results]
    tokens = sum(r["usage"].get("completion_tokens", 0) for r in results)
    summary = {"url": url, "model": model, "clients": clients, "tasks": len(results), "wall_s": round(wall, 3),
               "tasks_per_s": round(len(results) / wall, 3), "tokens_per_s": round(tokens / wall, 1),
               "latency_p50_s": round(_percentile(lat, 0.5), 3), "latency_p95_s": round(_percentile(lat, 0.95), 3),
               "completion_tokens": tokens}
    return results, summary


def eval_rows(records: list[dict], results: list[dict], method: str, model: str) -> list[dict]:
    """thinkc infer's rows (thinkc.infer.outputs.output_row's fields) for `thinkc eval`."""
    from thinkc.eval.answers import extract_answer

    rows = []
    for rec, res in zip(records, results):
        u = res["usage"]
        extra = u.get("thinkc") or {}
        row = {"id": str(rec["id"]), "method": method, "model": model, "prompt_tokens": u.get("prompt_tokens", 0),
               "text": res["text"], "pred": extract_answer(res["text"]),
               "metrics": {"wall_s": round(res["latency_s"], 4), "generated_tokens": u.get("completion_tokens", 0),
                           "peak_kv": extra.get("peak_kv", 0), "compressions": extra.get("compressions", 0),
                           "dependency": extra.get("dependency", 0), "kv_trace": []}}
        if rec.get("answer") is not None:
            row["gold"] = rec["answer"]
        rows.append(row)
    return rows


def median_summary(summaries: list[dict]) -> dict:
    """Medians of repeated runs' numeric fields (the machine may be shared)."""
    out = dict(summaries[0])
    for k, v in summaries[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = statistics.median(s[k] for s in summaries)
    return out
