"""Resume safety: which checkpoint to resume from, and whether the run folder belongs to this run.

A checkpoint is complete when its trainer_state.json (written last by the Trainer, after weights,
optimizer and RNG state) parses and a weights file is there. A save cut short by kill -9 or a full
disk leaves an incomplete folder: resume skips it (and the main process removes it), so the rerun
continues from the newest complete checkpoint instead of failing. Resuming is refused, in one line,
when the folder's train_config.yaml was written with other settings (another method, model, data or
hyper-parameters); the keys in MAY_CHANGE (run length, logging, tracking) may differ."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Optional

import yaml

from thinkc.errors import ThinkcError
from thinkc.train.config import TrainConfig

TRAIN_CONFIG_FILE = "train_config.yaml"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
           "pytorch_model.bin", "pytorch_model.bin.index.json")
MAY_CHANGE = {
    "train.output", "train.epochs", "train.max_steps", "train.max_minutes", "train.logging_steps",
    "train.save_steps", "train.save_total_limit", "train.resume", "train.report_to", "train.eval_steps",
    "train.num_workers", "train.extra_args", "train.device", "data.eval", "lora.merge",
    "data.reorder",  # storage order only: the same loss and gradients (thinkc.gist.reorder)
}


def is_complete(ckpt: Path) -> bool:
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(state, dict) or "global_step" not in state:
        return False
    return any((ckpt / w).is_file() for w in WEIGHTS) or any(ckpt.glob("global_step*"))


def checkpoints(out: Path) -> list[tuple[int, Path]]:
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := CHECKPOINT.match(p.name))]
    return sorted(found)


def last_complete(out: Path) -> Optional[Path]:
    done = [p for _, p in checkpoints(out) if is_complete(p)]
    return done[-1] if done else None


def remove_incomplete(out: Path) -> list[Path]:
    """Delete the checkpoint folders a cut-short save left behind (main process only)."""
    gone = [p for _, p in checkpoints(out) if not is_complete(p)]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def resume_checkpoint(cfg: TrainConfig) -> Optional[str]:
    r = cfg.train.resume
    if r == "never":
        return None
    if r == "auto":
        ckpt = last_complete(Path(cfg.train.output))
        return str(ckpt) if ckpt else None
    if not is_complete(Path(r)):
        raise ThinkcError(f"train.resume: {r}: not a complete checkpoint (no valid trainer_state.json or weights)")
    return r


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in MAY_CHANGE and key != "data.synth":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def setting_changes(saved: dict, cfg: TrainConfig) -> list[str]:
    """`key: old -> new` for every setting that differs and may not change on resume."""
    old, new = _flatten(saved), _flatten(cfg.to_dict())
    changed = []
    for key in sorted(set(old) | set(new)):
        if key in MAY_CHANGE or key not in new or key not in old:  # a key one of the two versions lacks
            continue
        if old.get(key) != new.get(key) and not _same_number(old.get(key), new.get(key)):
            changed.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return changed


def _same_number(a, b) -> bool:
    try:
        return not isinstance(a, bool) and not isinstance(b, bool) and float(a) == float(b)
    except (TypeError, ValueError):
        return False


def check_resume(cfg: TrainConfig, ckpt: Optional[str]) -> None:
    """Refuse to continue a run whose saved train_config.yaml differs from `cfg` (one line)."""
    if not ckpt:
        return
    run = Path(ckpt).parent
    saved_file = run / TRAIN_CONFIG_FILE
    try:
        saved = yaml.safe_load(saved_file.read_text(encoding="utf-8")) if saved_file.is_file() else None
    except (OSError, yaml.YAMLError):
        saved = None
    if not isinstance(saved, dict):
        return  # nothing to compare with (a run from an older thinkc)
    changes = setting_changes(saved, cfg)
    if changes:
        more = f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""
        raise ThinkcError(f"{run}: holds a run with other settings ({'; '.join(changes[:3])}{more}); "
                          f"rerun with the same settings to resume it, or --resume never to start over")
