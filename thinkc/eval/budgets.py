"""Training-free KV policies at a budget, side by side with the other methods.

Labels: a run row made with a KV budget (its `settings.budget`, as `thinkc infer --budget` records
it) is reported as `<method>-b<budget>` ("rkv-b128", "h2o-b0.5"; `-w<window>` when a window was
given), so runs of one policy at several budgets stay apart and read as what they are. The
series of a label ("rkv" for "tiny-sft/rkv-b128@x") joins one policy's budgets into one line of the
accuracy-vs-peak-KV plot (`plot_accuracy_vs_kv`)."""
from __future__ import annotations

import re
from pathlib import Path

from thinkc.errors import ThinkcError
from thinkc.eval.metrics import MethodSummary, group_label, load_gold, gold_from_runs, score_runs, summarize

TRAINING_FREE = ("rkv", "snapkv", "h2o", "streamingllm", "sepllm")  # the KV policies that take --budget
MARKERS = {"rkv": "o", "snapkv": "s", "h2o": "^", "streamingllm": "v", "sepllm": "P"}  # told apart where they overlap
_TAG = re.compile(r"-b(?:\d+|0?\.\d+)(?:-w\d+)?$")


def budget_tag(settings: dict | None) -> str:
    """"-b128" / "-b0.5" (+ "-w16") from a row's recorded settings; "" when it has no budget."""
    settings = settings or {}
    budget = settings.get("budget")
    if budget is None:
        return ""
    window = settings.get("window")
    tag = f"-b{budget:g}" if isinstance(budget, float) else f"-b{budget}"
    return tag + ("" if window is None else f"-w{window}")


def label_budgets(rows: list[dict]) -> list[dict]:
    """Give each scored row (score_runs' output) the label of its method at its budget, in place:
    group = (model/)method + budget tag, `@file` appended only when two files still share a label."""
    multi_model = len({r.get("model") for r in rows}) > 1
    labels = [group_label(r, multi_model) + budget_tag(r.get("settings")) for r in rows]
    files: dict[str, set[str]] = {}
    for r, label in zip(rows, labels):
        files.setdefault(label, set()).add(r["_file"])
    for r, label in zip(rows, labels):
        r["group"] = f"{label}@{Path(r['_file']).stem}" if len(files[label]) > 1 else label
    return rows


def evaluate_labelled(run_paths: list[str | Path], reference: str | Path | None = None,
                      progress=None) -> tuple[list[dict], list[MethodSummary]]:
    """thinkc.eval.metrics.evaluate_runs with budget labels: (scored rows, one summary per label)."""
    gold = load_gold(reference) if reference is not None else gold_from_runs(run_paths)
    rows = label_budgets(score_runs(run_paths, gold, progress))
    return rows, summarize(rows)


def series(label: str) -> str:
    """The policy a label belongs to, without model, budget tag and file: "tiny-sft/rkv-b128@x" -> "rkv"."""
    name = label.split("@")[0].rsplit("/", 1)[-1]
    return _TAG.sub("", name)


def budget_of(label: str) -> str | None:
    """"128" from "rkv-b128", None without a budget tag."""
    m = _TAG.search(label.split("@")[0])
    return m.group(0)[2:] if m else None


def plot_accuracy_vs_kv(summaries: list[MethodSummary], path: str | Path, reference: str = "lightthinker",
                        title: str = "accuracy vs mean peak KV") -> Path:
    """Accuracy (y) against mean peak KV (x): one line per training-free policy through its budgets,
    every other method as a point (`reference`, e.g. "lightthinker" or "tiny-lightthinker/lightthinker",
    as a star, with a dotted vertical line at its mean peak KV)."""
    from thinkc.eval.plots import _pyplot, _save, method_color

    points = [s for s in summaries if s.mean_peak_kv is not None]
    if len(points) < 2:
        raise ThinkcError("accuracy vs KV needs at least two runs with peak_kv")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines: dict[str, list[MethodSummary]] = {}
    for s in points:
        if series(s.method) in TRAINING_FREE:
            lines.setdefault(series(s.method), []).append(s)
    for name, members in lines.items():
        members = sorted(members, key=lambda m: m.mean_peak_kv)
        ax.plot([m.mean_peak_kv for m in members], [100 * m.accuracy for m in members], marker=MARKERS[name],
                markersize=6, markerfacecolor="none", markeredgewidth=1.4, linewidth=1.4, color=method_color(name),
                label=f"{name} ({len(members)} budget"
                f"{'s' if len(members) > 1 else ''})", zorder=2)
    for s in points:
        if series(s.method) not in TRAINING_FREE:
            star = series(s.method) == reference
            ax.scatter(s.mean_peak_kv, 100 * s.accuracy, s=140 if star else 60, marker="*" if star else "D",
                       color=method_color(s.method), label=s.method, edgecolors="white", linewidths=0.5, zorder=3)
    ref = next((s for s in points if series(s.method) == reference), None)
    if ref is not None:
        ax.axvline(ref.mean_peak_kv, color=method_color(reference), linestyle=":", linewidth=1, zorder=1)
    ax.set_xlabel("mean peak KV (keys per row)")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlim(0, 1.08 * max(s.mean_peak_kv for s in points) + 1)
    ax.set_ylim(-5, 105)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)
