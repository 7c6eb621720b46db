"""How the paths written inside a recipe file resolve, the same from any current folder and from a
wheel install (where the shipped recipes live in thinkc/configs/train, thinkc.train.shipped).

The rule, for a relative path in a recipe file (YAML/JSON, shipped or the user's own):
  1. next to the recipe file, if it exists there: what ships with the recipe (a gist config,
     a DeepSpeed JSON, a data file or a model folder kept beside it);
  2. otherwise the current folder: the outputs of earlier commands (`runs/tiny-base-6/final`
     written by `thinkc train tiny_base_6`, `data/train.jsonl` written by `thinkc data synth`).
`train.output` (what the run writes) is always relative to the current folder, and so are paths
given on the command line (--data, --model, --set ...). Absolute paths and `~` are kept as written;
keywords (`synth`, `auto`, `never`, `smollm2`, shipped checkpoint names) are never paths.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable

# (section, key, keywords that are not paths) of every recipe value that names an input
TRAIN_INPUTS = (
    ("model", "name", ("smollm2",)),
    ("model", "recipe", ()),
    ("data", "train", ("synth",)),
    ("data", "eval", ("synth",)),
    ("gist", "config", ()),
    ("train", "deepspeed", ()),
    ("train", "resume", ("auto", "never")),
)


def next_to(value: Any, folder: Path, keywords: Iterable[str] = ()) -> Any:
    """`value` as an absolute path when it is a relative path that exists in `folder`; else as is."""
    if not isinstance(value, str) or not value.strip() or value in keywords:
        return value
    path = Path(os.path.expanduser(value))
    if path.is_absolute():
        return value
    candidate = folder / path
    return str(candidate.resolve()) if candidate.exists() else value


def model_keywords() -> tuple[str, ...]:
    from thinkc.models.loading import SHIPPED, list_shipped

    return ("smollm2", "tiny", *SHIPPED, *list_shipped())


def resolve_train_recipe(data: dict, recipe: Path) -> dict:
    """A `thinkc train` recipe's values with their input paths resolved by the rule above."""
    if not isinstance(data, dict):
        return data
    out = copy.deepcopy(data)
    folder = recipe.resolve().parent
    for section, key, keywords in TRAIN_INPUTS:
        sec = out.get(section)
        if not isinstance(sec, dict) or key not in sec:
            continue
        if (section, key) == ("model", "name"):
            keywords = model_keywords()
        value = sec[key]
        if isinstance(value, list):
            sec[key] = [next_to(v, folder, keywords) for v in value]
        else:
            sec[key] = next_to(value, folder, keywords)
    return out


def is_shipped_recipe(recipe: Path | None) -> bool:
    """True for a recipe file inside the shipped configs (configs/train or thinkc/configs/train)."""
    from thinkc.train.shipped import configs_root

    root = configs_root()
    if recipe is None or root is None:
        return False
    try:
        Path(recipe).resolve().relative_to((root / "train").resolve())
    except ValueError:
        return False
    return True
