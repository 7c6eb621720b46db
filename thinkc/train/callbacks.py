"""Trainer callbacks: a rich progress bar (instead of tqdm) and a JSONL log of every logged step.

Both act on the main process only. The log is appended line by line with a flush (a resumed run
continues the same file; a kill loses at most the line being written)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback


class RichProgressCallback(TrainerCallback):
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = None
        self.task = None
        self.last = ""

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, info=self.last)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        parts = []
        if "loss" in logs:
            parts.append(f"loss {logs['loss']:.4f}")
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.2e}")
        if parts:
            self.last = " ".join(parts)
            self.progress.update(self.task, info=self.last)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
            self.progress.stop()
            self.progress = None


class TimeLimitCallback(TrainerCallback):
    """Stops training after `minutes` of training time (the CPU recipes' "<= 10 minutes" budget);
    the trainer then saves as at a normal end."""

    def __init__(self, minutes: float):
        self.seconds = minutes * 60
        self.t0 = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self.t0 is not None and time.time() - self.t0 >= self.seconds:
            control.should_training_stop = True
            control.should_save = True


class JsonlLogCallback(TrainerCallback):
    """Appends {step, epoch, loss, learning_rate, grad_norm, time, ...} per log event to `path`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.t0 = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        for k, v in logs.items():
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            row[k] = v
        row["elapsed_s"] = round(time.time() - self.t0, 3)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()


def read_log(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
