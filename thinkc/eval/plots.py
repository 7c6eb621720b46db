"""PNG plots of an eval: KV length over decoding steps (LightThinker's sawtooth vs vanilla's line)
and accuracy vs mean generated tokens across methods.

Every method keeps one colour in every plot and every run (method_color); axes of tokens and KV
start at 0; method names go into a legend, never as free text that could overlap."""
from __future__ import annotations

import re
from pathlib import Path

from thinkc.errors import ThinkcError
from thinkc.eval.metrics import MethodSummary


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from thinkc.io import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    return path


# Fixed colours of the methods thinkc runs (a label's colour depends on the label only)
METHOD_COLORS = {"vanilla": "#4d4d4d", "cts": "#1f77b4", "lightthinker": "#d62728", "h2o": "#2ca02c",
                 "cts+lightthinker": "#e6550d",
                 "anllm": "#9467bd", "sepllm": "#8c564b", "streamingllm": "#e377c2",
                 "snapkv": "#0b7285", "rkv": "#b8860b"}
_EXTRA = ["#ff7f0e", "#17becf", "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5"]


def method_color(label: str) -> str:
    """The colour of a method label: its own for known methods (also as the label's first word,
    "cts-r0.5" -> cts), else a fixed pick from a spare palette by a stable hash of the label."""
    import zlib

    key = label.lower()
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    head = re.split(r"[-_./@ ]", ratio_series(key))[0]
    if head in METHOD_COLORS:
        return METHOD_COLORS[head]
    return _EXTRA[zlib.crc32(key.encode()) % len(_EXTRA)]


def pick_trace_sample(rows: list[dict]) -> str:
    """The first id (in file order) that every group has a kv_trace for, else any id with a trace."""
    groups = {r["group"] for r in rows}
    has: dict[str, set[str]] = {}
    order: list[str] = []
    for r in rows:
        if (r.get("metrics") or {}).get("kv_trace"):
            if r["id"] not in has:
                order.append(r["id"])
            has.setdefault(r["id"], set()).add(r["group"])
    if not order:
        raise ThinkcError("no run row has metrics.kv_trace; cannot plot KV over decoding steps")
    return next((i for i in order if has[i] == groups), order[0])


def plot_kv_trace(rows: list[dict], path: str | Path, sample_id: str | None = None) -> Path:
    """KV cache length after each decoding step for one sample, one line per method."""
    sample_id = sample_id if sample_id is not None else pick_trace_sample(rows)
    traces = [(r["group"], r["metrics"]["kv_trace"]) for r in rows
              if r["id"] == sample_id and (r.get("metrics") or {}).get("kv_trace")]
    if not traces:
        raise ThinkcError(f"no kv_trace for sample {sample_id!r}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for group, trace in traces:
        ax.plot(range(1, len(trace) + 1), trace, label=group, linewidth=1.2, color=method_color(group))
    ax.set_xlabel("decoding step")
    ax.set_ylabel("KV cache length (tokens)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_title(f"KV length over decoding, sample {sample_id}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


# A compression-ratio tag in a label ("cts-r0.5", "ratio=0.7", "x.r0.9"): points that differ only
# by it are one method at several ratios and get joined by a line.
_RATIO_TAG = re.compile(r"[-_.@/]?(?<![A-Za-z0-9])(?:r|ratio)[=_-]?(?:0?\.\d+|1(?:\.0+)?)(?![\d.])")


def ratio_series(label: str) -> str:
    return _RATIO_TAG.sub("", label)


def plot_accuracy_vs_tokens(summaries: list[MethodSummary], path: str | Path) -> Path:
    """One point per method: mean generated tokens (x) vs accuracy (y); ratios of one method joined."""
    points = [s for s in summaries if s.mean_tokens is not None]
    if not points:
        raise ThinkcError("no method has generated_tokens; cannot plot accuracy vs tokens")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    series: dict[str, list[MethodSummary]] = {}
    for s in points:
        series.setdefault(ratio_series(s.method), []).append(s)
    for members in series.values():
        if len(members) > 1:
            members = sorted(members, key=lambda m: m.mean_tokens)
            ax.plot([m.mean_tokens for m in members], [100 * m.accuracy for m in members],
                    color="0.6", linewidth=1, zorder=1)
    for s in points:  # names in the legend: labels written next to points overlap when points do
        ax.scatter(s.mean_tokens, 100 * s.accuracy, s=50, color=method_color(s.method), label=s.method,
                   edgecolors="white", linewidths=0.5, zorder=2)
    ax.set_xlabel("mean generated tokens")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlim(0, 1.08 * max(s.mean_tokens for s in points) + 1)
    ax.set_ylim(-5, 105)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("accuracy vs tokens")
    ax.grid(alpha=0.3)
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def write_plots(rows: list[dict], summaries: list[MethodSummary], out_dir: str | Path,
                sample_id: str | None = None) -> list[Path]:
    """The plots into `out_dir` (kv_trace.png, accuracy_vs_tokens.png, and with two runs or more
    accuracy_vs_kv.png: thinkc.eval.budgets); a plot whose data is absent is skipped rather than
    failing the eval."""
    from thinkc.eval.budgets import plot_accuracy_vs_kv

    out_dir = Path(out_dir)
    written = []
    for make in (lambda: plot_kv_trace(rows, out_dir / "kv_trace.png", sample_id),
                 lambda: plot_accuracy_vs_tokens(summaries, out_dir / "accuracy_vs_tokens.png"),
                 lambda: plot_accuracy_vs_kv(summaries, out_dir / "accuracy_vs_kv.png")):
        try:
            written.append(make())
        except ThinkcError:
            if sample_id is not None:
                raise
    return written
