"""Where the shipped configs live: `configs/` of the repository (source tree, editable install) or
`thinkc/configs/` inside an installed wheel (pyproject.toml ships configs/ as package data under
that name). Recipes (train/*.yaml), DeepSpeed presets (deepspeed/*.json), accelerate configs
(accelerate/*.yaml) and gist presets (gist/*.json) resolve the same way from both."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

_PACKAGE = Path(__file__).resolve().parents[1]  # .../thinkc
CANDIDATES = (_PACKAGE / "configs", _PACKAGE.parent / "configs")  # wheel, then source tree


def configs_root() -> Optional[Path]:
    """The first folder that holds the shipped configs, or None (a broken install)."""
    for c in CANDIDATES:
        if (c / "train").is_dir():
            return c
    return None


def shipped(kind: str, name: str, suffix: str) -> Optional[Path]:
    """configs/<kind>/<name><suffix> if shipped, else None. `name` is a bare name (no folder)."""
    root = configs_root()
    if root is None or "/" in name or "\\" in name or name.startswith("."):
        return None
    p = root / kind / f"{name}{suffix}"
    return p if p.is_file() else None


def names(kind: str, suffix: str) -> list[str]:
    root = configs_root()
    if root is None or not (root / kind).is_dir():
        return []
    return sorted(p.name[: -len(suffix)] for p in (root / kind).glob(f"*{suffix}"))
