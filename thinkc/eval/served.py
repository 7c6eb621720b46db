"""`thinkc eval --url`: grade a model served over OpenAI's API (thinkc serve, or any compatible
server) like a local run. The problems are read as `thinkc infer --input` reads them, sent by
concurrent closed-loop clients (thinkc.bench.serve_client, greedy by default), and the replies are
written, atomically, as a `thinkc infer` run file, which `thinkc eval` then grades beside any other runs.
A served thinkc model gives the same greedy texts, so the same grades, as `thinkc infer` (tested)."""
from __future__ import annotations

from pathlib import Path

from thinkc.errors import ThinkcError


def fetch_served_run(url: str, problems: Path, out: Path, clients: int = 8, max_tokens: int = 1024,
                     method: str | None = None) -> Path:
    """Query `url` with every problem of `problems`; write the replies to `out` (infer's row layout)."""
    import json

    from thinkc.bench.serve_client import eval_rows, run_clients
    from thinkc.infer.run import load_inputs
    from thinkc.io import atomic_write

    if Path(out).resolve() == Path(problems).resolve():
        raise ThinkcError(f"--save {out}: that is the problems file; choose another path")
    records = load_inputs(problems)
    if not records:
        raise ThinkcError(f"{problems}: no problems")
    results, summary = run_clients(url, [r["question"] for r in records], clients=clients, max_tokens=max_tokens)
    label = method or _method_of(summary["model"])
    rows = eval_rows(records, results, method=label, model=summary["model"])
    with atomic_write(out) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return Path(out)


def _method_of(model: str) -> str:
    """A label for the served run: the served model's name (e.g. tiny-lightthinker)."""
    return f"served:{model}"
