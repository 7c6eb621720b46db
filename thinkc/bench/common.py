"""Shared bench plumbing: the environment record, a timer (warm-up excluded, median of repeats,
CUDA-synchronised), and writing results as JSON + a rich table."""
from __future__ import annotations

import datetime as _dt
import platform
import statistics
import time
from typing import Callable

import torch


def environment(device: str) -> dict:
    import transformers

    env = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
    }
    from thinkc.ops import report

    env["op_backends"] = report()
    return env


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], object], device: str = "cpu", repeats: int = 5, warmup: int = 1,
            setup: Callable[[], object] | None = None) -> float:
    """Median wall seconds of `fn()` over `repeats` runs after `warmup` runs (not counted).
    `setup()` runs before each call, untimed (e.g. restoring the input an in-place op consumed)."""
    for _ in range(warmup):
        if setup:
            setup()
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        if setup:
            setup()
            sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_results(path, name: str, env: dict, rows: list[dict]) -> None:
    from thinkc.io import write_json

    write_json(path, {"bench": name, "environment": env, "results": rows})


def print_table(title: str, rows: list[dict]) -> None:
    """One row per result; too wide for the console, the columns go into several tables that each
    repeat the first (thinkc.console.FitTable): no figure is cut."""
    from thinkc.console import FitTable, wide_console

    if not rows:
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    left = [c for c in cols if not isinstance(rows[0].get(c), (int, float))]
    wide_console().print(FitTable(title, cols, [[_fmt(r.get(c)) for c in cols] for r in rows], left=left))


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
