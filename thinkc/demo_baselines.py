"""The demo's training-free baselines at LightThinker's memory (issue 24).

The demo first runs LightThinker, then sets every training-free KV policy (R-KV, SnapKV, H2O,
StreamingLLM, on the vanilla-trained tiny-sft) to LightThinker's measured mean peak KV: the target
is that mean, rounded, in keys per row. "At" means the policy's peak keys per row equal the target:
  * H2O and StreamingLLM never hold more than `budget` keys (the next query included): budget = target;
  * SnapKV and R-KV compress on a schedule, every `interval` (128) positions, back down to `budget`,
    so a row peaks at budget + interval keys: budget = target - interval, and at least window + 1
    (their constraint, thinkc.infer.policies.windowed.check_window). R-KV compresses only once a row
    holds budget + interval keys at a boundary, so its first compression can come one interval late
    and its measured peak can pass the target (the table shows the measured peak beside the budget).
The optional sweep (`thinkc demo --sweep`) runs each policy at 0.5x, 1.5x and 2x the target as well:
with the 1x row, four points per policy on the accuracy-vs-mean-peak-KV plot."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SWEEP_FACTORS = (0.5, 1.5, 2.0)  # with the 1x row: four budgets per policy


@dataclass(frozen=True)
class Run:
    """One decode of the demo: its label (the run file's stem), cache policy, model and KV budget."""
    label: str
    method: str
    model: str
    budget: int | None = None


def least_budget(method: str) -> int:
    """The smallest budget each policy accepts, from the policies' own defaults and checks."""
    from thinkc.infer.policies import RKVPolicy, SnapKVPolicy, StreamingLLMPolicy

    if method == "snapkv":
        return SnapKVPolicy().window + 1
    if method == "rkv":
        return RKVPolicy().window + 1
    if method == "streamingllm":
        return StreamingLLMPolicy().sinks + 2
    return 2  # h2o: one recent key and the query


def interval(method: str) -> int:
    """Positions between two compressions of the scheduled policies (0 for the others)."""
    from thinkc.infer.policies import RKVPolicy, SnapKVPolicy

    if method == "snapkv":
        return SnapKVPolicy().every
    if method == "rkv":
        return RKVPolicy().buffer
    return 0


def budget_for_peak(method: str, target: float) -> int:
    """The budget at which `method` peaks at `target` keys per row (module docstring), valid for it."""
    return max(least_budget(method), int(round(target)) - interval(method))


def baseline_runs(methods, model: str, target: float, factors=(1.0,)) -> list[Run]:
    """One run per policy and factor (budget_for_peak of factor x target), labelled `<policy>-b<budget>`
    (as `thinkc eval` labels such runs); a budget already planned for the policy is not repeated."""
    runs, seen = [], set()
    for method in methods:
        for f in factors:
            b = budget_for_peak(method, f * target)
            if (method, b) not in seen:
                seen.add((method, b))
                runs.append(Run(f"{method}-b{b}", method, model, b))
    return runs


def mean_peak_kv(path: Path) -> float:
    """Mean of metrics.peak_kv over a run file's rows."""
    from thinkc.errors import ThinkcError
    from thinkc.io import iter_jsonl

    peaks = [row["metrics"]["peak_kv"] for _, row in iter_jsonl(path) if "peak_kv" in (row.get("metrics") or {})]
    if not peaks:
        raise ThinkcError(f"{path}: no row has metrics.peak_kv; cannot set the baselines' budget")
    return sum(peaks) / len(peaks)


def budget_note(target: float, runs: list[Run]) -> str:
    per = ", ".join(f"{r.method} {r.budget}" for r in runs)
    return (f"target: {target:.1f} keys per row; budgets {per} (snapkv and rkv compress every 128 positions "
            "and peak at budget + 128)")
