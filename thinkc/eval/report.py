"""Render method summaries as a rich table, JSON and Markdown; write per-sample verdicts."""
from __future__ import annotations

from pathlib import Path

from thinkc.eval.metrics import MethodSummary, verdict_row
from thinkc.io import write_json, write_jsonl

# (field, header, format) in display order; None values print as "—".
COLUMNS = [
    ("method", "method", "{}"),
    ("n", "n", "{}"),
    ("accuracy", "acc %", "{:.1%}"),
    ("mean_tokens", "tokens", "{:.1f}"),
    ("mean_peak_kv", "peak KV", "{:.1f}"),
    ("max_peak_kv", "max KV", "{}"),
    ("dependency_m", "dep (M)", "millions"),
    ("latency_mean_s", "latency s", "{:.3f}"),
    ("run_wall_s", "run s", "{:.2f}"),
    ("tokens_per_s", "tok/s", "{:.1f}"),
    ("compressions", "compr/sample", "{:.2f}"),
]


def _cell(value, fmt: str) -> str:
    if value is None:
        return "—"
    if fmt == "millions":  # tiny demo runs are thousands of key reads, 7B runs hundreds of millions
        return f"{value:.3f}" if value >= 0.01 else f"{value:.2e}"
    return fmt.format(value).replace("%", "") if fmt == "{:.1%}" else fmt.format(value)


def rows_as_text(summaries: list[MethodSummary]) -> list[list[str]]:
    return [[_cell(getattr(s, f), fmt) for f, _, fmt in COLUMNS] for s in summaries]


# at narrow widths (80 columns): shorter headers, then these columns go first (JSON / Markdown keep them)
SHORT = {"compr/sample": "compr", "latency s": "lat s"}
OPTIONAL = ["max KV", "run s", "tok/s", "latency s"]


def rich_table(summaries: list[MethodSummary], title: str = "thinkc eval"):
    """The per-method table, laid out for the console it is printed on (method names never cut)."""
    from thinkc.console import FitTable

    return FitTable(title, [h for _, h, _ in COLUMNS], rows_as_text(summaries), short=SHORT, optional=OPTIONAL,
                    first_style="bold")


def markdown(summaries: list[MethodSummary]) -> str:
    headers = [h for _, h, _ in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows_as_text(summaries)]
    return "\n".join(lines) + "\n"


def write_markdown(path: str | Path, summaries: list[MethodSummary]) -> None:
    from thinkc.io import atomic_write

    with atomic_write(path) as f:
        f.write(markdown(summaries))


def write_summary_json(path: str | Path, summaries: list[MethodSummary], **extra) -> None:
    write_json(path, {"methods": [s.to_dict() for s in summaries], **extra})


def default_verdicts_path(run_path: str | Path) -> Path:
    """runs/x.jsonl -> runs/x.verdicts.jsonl (next to the input)."""
    p = Path(run_path)
    return p.with_name(p.name.removesuffix(".jsonl") + ".verdicts.jsonl")


def write_verdicts(rows: list[dict], path: str | Path | None = None) -> list[Path]:
    """Per-sample verdicts: to `path` (all runs together) or next to each run file."""
    if path is not None:
        write_jsonl(path, (verdict_row(r) for r in rows))
        return [Path(path)]
    by_file: dict[str, list[dict]] = {}
    for r in rows:
        by_file.setdefault(r["_file"], []).append(r)
    written = []
    for run_file, rs in by_file.items():
        out = default_verdicts_path(run_file)
        write_jsonl(out, (verdict_row(r) for r in rs))
        written.append(out)
    return written
