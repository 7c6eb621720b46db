"""Score `thinkc infer` outputs against reference answers and aggregate per method.

A run file is JSONL, one generation per line:
    {"id", "method", "model", "prompt_tokens", "text", "pred"?, "metrics": {"wall_s",
     "generated_tokens", "peak_kv", "dependency", "compressions", "kv_trace"}}
Answers are re-extracted from `text` (infer's `pred` is not trusted). Missing metric keys are
tolerated (averaged over the rows that have them; a blank when none do); ids are not: every id
must exist in the reference, and a gold `thinkc infer` copied into a row must agree with it.

Time: `wall_s` is one sample's own latency; samples decoded together overlap, so latencies are
averaged, never summed into a run time. The run's total wall time and tokens/s come from the
summary `thinkc infer` writes beside its output (`<run>.summary.json`: {"wall_s", "tokens_per_s"?,
"generated_tokens"?}); without one they are blank.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from thinkc.errors import ThinkcError
from thinkc.eval.answers import extract_answer, is_correct
from thinkc.eval.tasks import load_benchmark
from thinkc.io import iter_jsonl


def vanilla_dependency(lp: int, lo: int) -> int:
    """Keys attended summed over LO generated tokens with nothing evicted: LP·LO + LO(LO+1)/2."""
    return lp * lo + lo * (lo + 1) // 2


def vanilla_peak(lp: int, lo: int) -> int:
    """Largest KV length with nothing evicted: the prompt plus every generated token (design.md §4).
    A decoder that stops without feeding its last sampled token holds one fewer: lp + lo - 1."""
    return lp + lo


def load_gold(path: str | Path) -> dict[str, str]:
    """id -> gold answer from a thinkc records file or any benchmark layout `load_benchmark` reads."""
    return {r["id"]: r["answer"] for r in load_benchmark(path)}


def load_run(path: str | Path) -> list[dict]:
    path = Path(path)
    rows = []
    for lineno, row in iter_jsonl(path):
        if "id" not in row:
            raise ThinkcError(f"{path}:{lineno}: no 'id' field (is this a `thinkc infer` output?)")
        row["id"] = str(row["id"])
        row.setdefault("method", path.stem)
        row.setdefault("metrics", {})
        row["_file"] = str(path)
        rows.append(row)
    if not rows:
        raise ThinkcError(f"{path}: empty run file")
    return rows


def _few(ids) -> str:
    ids = sorted(ids)
    return ", ".join(repr(i) for i in ids[:5]) + (f" (+{len(ids) - 5} more)" if len(ids) > 5 else "")


def group_label(row: dict, multi_model: bool) -> str:
    return f"{row.get('model', '?')}/{row['method']}" if multi_model else row["method"]


def score_runs(run_paths: list[str | Path], gold: dict[str, str], progress=None) -> list[dict]:
    """Every run row with `pred`, `gold`, `correct` and a `group` label (method, or model/method
    when runs hold several models; `@file` is appended when two files hold the same label).
    `progress` optionally wraps the scoring loop (e.g. rich.progress.track)."""
    runs = [load_run(p) for p in run_paths]
    rows = [r for run in runs for r in run]
    multi_model = len({r.get("model") for r in rows}) > 1
    label_files: dict[str, set[str]] = {}
    for r in rows:
        label_files.setdefault(group_label(r, multi_model), set()).add(r["_file"])
    for r in rows:
        label = group_label(r, multi_model)
        r["group"] = f"{label}@{Path(r['_file']).stem}" if len(label_files[label]) > 1 else label

    unknown = {r["id"] for r in rows} - gold.keys()
    if unknown:
        raise ThinkcError(f"{len(unknown)} id(s) in the runs are not in the reference: {_few(unknown)}")
    _check_copied_gold(rows, gold)
    seen: set[tuple[str, str]] = set()
    for r in rows:
        key = (r["group"], r["id"])
        if key in seen:
            raise ThinkcError(f"{r['_file']}: id {r['id']!r} appears twice for {r['group']!r}")
        seen.add(key)
    for r in (progress(rows) if progress else rows):
        if r.get("pred") is not None:
            r["infer_pred"] = r["pred"]  # kept for comparison; ours is recomputed from the text
        r["pred"] = extract_answer(r.get("text"))
        r["gold"] = gold[r["id"]]
        r["correct"] = is_correct(r["pred"], r["gold"])
    return rows


def _check_copied_gold(rows: list[dict], gold: dict[str, str]) -> None:
    """A run made from another file than the reference (a slice graded against a file whose ids
    mean other questions) shows as a gold that infer copied and the reference contradicts: refuse
    it instead of grading every answer against the wrong question."""
    bad = {r["id"] for r in rows if r.get("gold") not in (None, "") and str(r["gold"]) != str(gold[r["id"]])
           and not is_correct(str(r["gold"]), gold[r["id"]])}
    if bad:
        raise ThinkcError(f"{len(bad)} id(s) have a different gold answer in the runs than in the reference "
                          f"({_few(bad)}): the runs were made from another file, or the ids mean other questions "
                          "there; pass the file the runs were made from as --reference")


def run_summary_path(run_path: str | Path) -> Path:
    """runs/x.jsonl -> runs/x.summary.json: where a run's totals live."""
    p = Path(run_path)
    return p.with_name(p.name.removesuffix(".jsonl") + ".summary.json")


def write_run_totals(run_path: str | Path, wall_s: float, generated_tokens: int, samples: int) -> Path:
    """Write the run's totals beside it (what `run_totals` reads), e.g. from thinkc.infer.run.RunStats."""
    from thinkc.io import write_json

    side = run_summary_path(run_path)
    write_json(side, {"wall_s": wall_s, "generated_tokens": generated_tokens, "samples": samples,
                      "tokens_per_s": generated_tokens / wall_s if wall_s > 0 else None})
    return side


def run_totals(run_path: str | Path) -> dict:
    """{"wall_s", "tokens_per_s"} of a whole run from `<run>.summary.json` beside it ({} if none)."""
    side = run_summary_path(run_path)
    if not side.is_file():
        return {}
    import json

    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ThinkcError(f"{side}: unreadable run summary ({e})") from None
    wall = data.get("wall_s") if isinstance(data, dict) else None
    if not isinstance(wall, (int, float)) or wall <= 0:
        return {}
    tps = data.get("tokens_per_s")
    if tps is None and isinstance(data.get("generated_tokens"), (int, float)):
        tps = data["generated_tokens"] / wall
    return {"wall_s": float(wall), "tokens_per_s": None if tps is None else float(tps)}


@dataclass
class MethodSummary:
    method: str
    n: int
    accuracy: float
    mean_tokens: float | None
    mean_peak_kv: float | None
    max_peak_kv: int | None
    dependency_m: float | None  # mean dependency per sample, in millions of key reads
    latency_mean_s: float | None  # mean of the samples' own latencies (they overlap: never summed)
    run_wall_s: float | None  # the whole run's wall time, from the run summary when there is one
    tokens_per_s: float | None  # generated tokens per second of run wall time
    compressions: float | None  # mean per sample

    def to_dict(self) -> dict:
        return asdict(self)


def _metric(row: dict, key: str):
    """A metric value or None when absent. No re-derivation from kv_trace: its off-by-one
    conventions belong to the decoder, and a guessed number is worse than a blank cell."""
    return (row.get("metrics") or {}).get(key)


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _group_totals(rs: list[dict], groups_per_file: dict[str, set[str]]) -> dict:
    """The run summary of the group's file, when the group is that whole file (a file holding
    several methods has one wall time for all of them: not theirs to report)."""
    files = {r.get("_file") for r in rs}
    if len(files) != 1 or None in files:
        return {}
    (path,) = files
    return run_totals(path) if len(groups_per_file.get(path, ())) == 1 else {}


def summarize(rows: list[dict]) -> list[MethodSummary]:
    """One summary per group, in first-seen order."""
    groups: dict[str, list[dict]] = {}
    groups_per_file: dict[str, set[str]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
        groups_per_file.setdefault(r.get("_file", ""), set()).add(r["group"])
    out = []
    for name, rs in groups.items():
        peaks = [_metric(r, "peak_kv") for r in rs]
        deps = [_metric(r, "dependency") for r in rs]
        mean_dep = _mean(deps)
        totals = _group_totals(rs, groups_per_file)
        out.append(MethodSummary(
            method=name,
            n=len(rs),
            accuracy=sum(r["correct"] for r in rs) / len(rs),
            mean_tokens=_mean([_metric(r, "generated_tokens") for r in rs]),
            mean_peak_kv=_mean(peaks),
            max_peak_kv=max((p for p in peaks if p is not None), default=None),
            dependency_m=None if mean_dep is None else mean_dep / 1e6,
            latency_mean_s=_mean([_metric(r, "wall_s") for r in rs]),
            run_wall_s=totals.get("wall_s"),
            tokens_per_s=totals.get("tokens_per_s"),
            compressions=_mean([_metric(r, "compressions") for r in rs]),
        ))
    return out


def verdict_row(row: dict) -> dict:
    """The run row as written back: original fields plus pred/gold/correct (internal keys dropped)."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def gold_from_runs(run_paths: list[str | Path]) -> dict[str, str]:
    """id -> gold from the `gold` field `thinkc infer` copies from its input (when it had answers)."""
    gold: dict[str, str] = {}
    for path in run_paths:
        for row in load_run(path):
            if row.get("gold") in (None, ""):
                raise ThinkcError(f"{path}: id {row['id']!r} has no gold answer; pass --reference")
            if gold.setdefault(row["id"], str(row["gold"])) != str(row["gold"]):
                raise ThinkcError(f"id {row['id']!r} has different gold answers in the runs; pass --reference")
    return gold


def evaluate_runs(run_paths: list[str | Path], reference: str | Path | None = None,
                  progress=None) -> tuple[list[dict], list[MethodSummary]]:
    """Score run files against a reference file (or, without one, the gold answers infer copied
    into the runs): (scored rows, one summary per method)."""
    gold = load_gold(reference) if reference is not None else gold_from_runs(run_paths)
    rows = score_runs(run_paths, gold, progress)
    return rows, summarize(rows)
