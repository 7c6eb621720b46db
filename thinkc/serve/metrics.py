"""GET /metrics: the engine's state in Prometheus' text format (prometheus-client), read from the
driver's snapshot at scrape time (a custom collector: nothing is updated per token).

    thinkc_rows_running / thinkc_rows_waiting / thinkc_rows_swapped      rows in flight, queued, preempted
    thinkc_kv_pages_total / _used / _free, thinkc_kv_page_size_tokens     the KV pool
    thinkc_preemptions_total, thinkc_engine_steps_total                   scheduler counters
    thinkc_prompt_tokens_total, thinkc_generation_tokens_total            tokens (rate() gives tokens/s)
    thinkc_reasoning_tokens_total, thinkc_compressions_total              thinking tokens, gist compressions
    thinkc_generation_tokens_per_second                                   over the last ~10 s
    thinkc_requests_total{finish_reason}, thinkc_engine_errors_total"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _EngineCollector:
    def __init__(self, driver):
        self.driver = driver

    def collect(self):
        s, c = self.driver.snapshot, self.driver.counters
        gauges = [("rows_running", "Rows decoding in the batch", s["running"]),
                  ("rows_waiting", "Requests queued for admission", s["waiting"]),
                  ("rows_swapped", "Rows preempted to host memory, waiting to resume", s["swapped"]),
                  ("kv_pages_total", "Pages in the KV pool", s["pages_total"]),
                  ("kv_pages_used", "KV pool pages held by rows", s["pages_total"] - s["pages_free"]),
                  ("kv_pages_free", "Free KV pool pages", s["pages_free"]),
                  ("kv_page_size_tokens", "Tokens per KV page", s["page_size"]),
                  ("generation_tokens_per_second", "Generated tokens per second (last ~10 s)", s["tokens_per_s"])]
        for name, doc, value in gauges:
            yield GaugeMetricFamily(f"thinkc_{name}", doc, value=value)
        counters = [("preemptions", "Rows swapped out because the pool ran dry", s["preemptions"]),
                    ("engine_steps", "Engine iterations (admissions and decode steps)", c.steps),
                    ("prompt_tokens", "Prompt tokens admitted", c.prompt_tokens),
                    ("generation_tokens", "Tokens generated", c.generation_tokens),
                    ("reasoning_tokens", "Generated tokens of thinking (finished requests)", c.reasoning_tokens),
                    ("compressions", "Gist compressions (finished requests)", c.compressions),
                    ("engine_errors", "Engine steps that failed (the engine was restarted)", c.errors)]
        for name, doc, value in counters:
            yield CounterMetricFamily(f"thinkc_{name}", doc, value=value)
        req = CounterMetricFamily("thinkc_requests", "Finished requests by finish reason", labels=["finish_reason"])
        for reason in sorted({"stop", "length", "abort", *c.requests}):
            req.add_metric([reason], c.requests.get(reason, 0))
        yield req


def make_registry(driver) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_EngineCollector(driver))
    return reg


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
