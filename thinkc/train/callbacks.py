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


class StepTimerCallback(TrainerCallback):
    """Honest step timing: the start-up inside Trainer.train before the first step (DeepSpeed
    initialisation and its op builds, checkpoint loading), the first optimiser step (warm-up, first
    data loads) and the steady s/step of the rest, each apart; evaluations and checkpoint saves
    between steps are not step time (`pause_s`). Added to the Trainer's closing log line
    (`startup_s`, `first_step_s`, `steady_s_per_step`, `pause_s`): the JSONL log and the summary
    carry them. Call `start()` right before trainer.train()."""

    def __init__(self):
        self.t_call = self.t0 = self.t_first = self.t_last = self.mark = None
        self.steps = 0
        self.pauses: list[tuple[float, float]] = []  # (when it ended, seconds) of each eval / save

    def start(self):
        self.t_call = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0, self.steps = time.perf_counter(), 0

    @property
    def startup_s(self):
        return None if self.t_call is None or self.t0 is None else self.t0 - self.t_call

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.steps += 1
        if self.t_first is None:
            self.t_first = now
        self.t_last = self.mark = now

    def _pause(self):
        now = time.perf_counter()
        if self.mark is not None:
            self.pauses.append((now, now - self.mark))
        self.mark = now

    def on_evaluate(self, args, state, control, **kwargs):
        self._pause()

    def on_save(self, args, state, control, **kwargs):
        self._pause()

    @property
    def pause_s(self) -> float:
        """Eval and save time between the first and the last step end (what steady excludes)."""
        if self.t_first is None:
            return 0.0
        return sum(d for t, d in self.pauses if self.t_first < t <= self.t_last)

    @property
    def first_step_s(self):
        return None if self.t_first is None else self.t_first - self.t0

    @property
    def steady_s_per_step(self):
        if self.steps < 2:
            return None
        return (self.t_last - self.t_first - self.pause_s) / (self.steps - 1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.mark is not None:
            self.mark = time.perf_counter()  # an eval or save that follows starts now
        if logs is not None and "train_runtime" in logs:
            logs["pause_s"] = round(self.pause_s, 4)
            logs["startup_s"] = None if self.startup_s is None else round(self.startup_s, 4)
            logs["first_step_s"] = None if self.first_step_s is None else round(self.first_step_s, 4)
            logs["steady_s_per_step"] = None if self.steady_s_per_step is None else round(self.steady_s_per_step, 4)


class LogLastStepCallback(TrainerCallback):
    """Logs the loss of the last step too (not only every logging_steps), so a run shorter than
    logging_steps reports where its loss ended, not the first step's loss twice. Goes last."""

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_training_stop or state.global_step >= state.max_steps:
            control.should_log = True
