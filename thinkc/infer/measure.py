"""The decode engine's run-level measurements, taken on the host after each decode step: rows in
flight (and over time, for `thinkc bench serve`'s plot), KV held at the fullest step, the cold start
(run start to the end of the first decode step: compile and graph capture included) and model
forwards. Per-sample measurements (peak KV, dependency, ...) stay with the rows (thinkc.infer.state)."""
from __future__ import annotations

import time

import torch


class EngineMeter:
    def __init__(self):
        self.max_rows = 0  # rows in flight at the fullest step
        self.row_steps = self.steps = 0  # rows in flight summed over decode steps, and the steps
        self.trace: list[tuple] = []  # per decode step: (seconds since start, rows in flight, rows waiting)
        self.kv_in_use = 0  # KV tokens held at the fullest step (the pool: pages x page size)
        self.cold_start_s: float | None = None

    def step(self, engine, t0: float) -> None:
        """After a decode step: the pool's freed tail pages go back, then the step is counted."""
        live = sum(o is not None for o in engine.owner)
        sched = engine.sched
        if sched is not None:  # the pool counts its own peak (pages in use)
            sched.after_step()
        else:
            self.kv_in_use = max(self.kv_in_use, sum(n for n, o in zip(engine._lengths, engine.owner) if o is not None))
        self.max_rows = max(self.max_rows, live)
        self.row_steps += live
        self.steps += 1
        waiting = len(engine._queue) + (len(sched.swapped) if sched is not None else 0)
        self.trace.append((round(time.perf_counter() - t0, 4), live, waiting))
        if self.cold_start_s is None:
            if engine.device.type == "cuda":
                torch.cuda.synchronize(engine.device)
            self.cold_start_s = time.perf_counter() - t0

    def summary(self, engine) -> dict:
        """Without a pool, kv_budget is what the slots reserve (rows x capacity) and kv_peak the keys
        rows held at the fullest step. busy_rows_in_flight: the mean over steps while rows wait."""
        busy = [n for _, n, w in self.trace if w]
        out = {"max_rows_in_flight": self.max_rows,
               "mean_rows_in_flight": round(self.row_steps / self.steps, 2) if self.steps else 0.0,
               "busy_rows_in_flight": round(sum(busy) / len(busy), 2) if busy else None,
               "row_steps": self.row_steps, "kv_peak": self.kv_in_use, "forwards": engine.forwards,
               "cold_start_s": None if self.cold_start_s is None else round(self.cold_start_s, 3),
               "kv_budget": engine.max_slots * engine.cache.capacity, "preemptions": 0, "page_size": None}
        if engine.sched is not None:
            out |= engine.sched.summary()
        return out
