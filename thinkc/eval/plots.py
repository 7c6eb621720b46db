"""PNG plots of an eval: KV length over decoding steps (LightThinker's sawtooth vs vanilla's line)
and accuracy vs mean generated tokens across methods."""
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
        ax.plot(range(1, len(trace) + 1), trace, label=group, linewidth=1.2)
    ax.set_xlabel("decoding step")
    ax.set_ylabel("KV cache length (tokens)")
    ax.set_title(f"KV length over decoding, sample {sample_id}")
    ax.grid(alpha=0.3)
    ax.legend()
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
    for s in points:
        ax.scatter(s.mean_tokens, 100 * s.accuracy, s=40)
        ax.annotate(s.method, (s.mean_tokens, 100 * s.accuracy), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    ax.set_xlabel("mean generated tokens")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-5, 105)
    ax.set_title("accuracy vs tokens")
    ax.grid(alpha=0.3)
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def write_plots(rows: list[dict], summaries: list[MethodSummary], out_dir: str | Path,
                sample_id: str | None = None) -> list[Path]:
    """Both plots into `out_dir` (kv_trace.png, accuracy_vs_tokens.png); a plot whose data is
    absent is skipped rather than failing the eval."""
    out_dir = Path(out_dir)
    written = []
    for make in (lambda: plot_kv_trace(rows, out_dir / "kv_trace.png", sample_id),
                 lambda: plot_accuracy_vs_tokens(summaries, out_dir / "accuracy_vs_tokens.png")):
        try:
            written.append(make())
        except ThinkcError:
            if sample_id is not None:
                raise
    return written
