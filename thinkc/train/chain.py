"""Recipe chains: a recipe that starts from another recipe's final model names that recipe beside
the model's path (`model: {name: runs/tiny-base-6/final, recipe: tiny_base_6}` in a `thinkc train`
recipe, `init_recipe:` in a CTS reference recipe). When the model is not there yet:

- the error is one line naming the `thinkc train` command to run first (the oldest missing recipe
  of the chain) and the ones after it, in order;
- `--with-base` trains the missing recipes, oldest first, each as its file says (command-line flags
  and --set apply to the recipe asked for, not to its bases), then the recipe asked for.

The chain stops at a recipe whose model exists (or that starts from scratch, `model.init: tiny`).
Models and run folders are relative to the current folder: run the whole chain from one folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from thinkc.errors import ThinkcError


def model_exists(name: Optional[str]) -> bool:
    from thinkc.models.loading import resolve_model

    if not name:
        return False
    try:
        resolve_model(name)
    except ThinkcError:
        return False
    return True


def _writes(cfg) -> str:
    return os.path.normpath(Path(cfg.train.output) / "final")


def missing_bases(name: Optional[str], recipe: Optional[str]) -> list[str]:
    """The recipes to train, oldest first, before model `name` exists ([] when it exists, or when
    no recipe that writes it is named)."""
    from thinkc.train.config import load_config

    chain: list[str] = []
    while recipe and not model_exists(name):
        if recipe in chain:
            raise ThinkcError(f"model.recipe: {recipe} is its own base ({' <- '.join([*chain, recipe])})")
        cfg = load_config(recipe, check_files=False)
        if name is None or _writes(cfg) != os.path.normpath(name):
            break  # that recipe writes another folder: it is not this model's base
        chain.append(recipe)
        if cfg.model.init != "pretrained":
            break
        name, recipe = cfg.model.name, cfg.model.recipe
    return chain[::-1]


def missing_message(name: str, chain: list[str]) -> str:
    """The one line for a model that `chain` (oldest first) would write."""
    then = f", then {', '.join(chain[1:])}" if len(chain) > 1 else ""
    them = f"these {len(chain)} recipes" if len(chain) > 1 else "it"
    return (f"model {name}: not trained yet (recipe {chain[-1]} writes it): run `thinkc train {chain[0]}` "
            f"first{then}, from this folder; or add --with-base to train {them} before this run")


def check_base(name: Optional[str], recipe: Optional[str]) -> None:
    """Nothing when model `name` resolves; else ThinkcError: which recipe to train first, or (no
    recipe writes it) thinkc.models.loading's message for the name."""
    from thinkc.models.loading import resolve_model

    if model_exists(name):
        return
    chain = missing_bases(name, recipe)
    if chain:
        raise ThinkcError(missing_message(str(name), chain))
    resolve_model(name)  # raises its one line (no such folder, smollm2 not prepared, ...)


def plan(chain: list[str], sets: tuple[str, ...] = ()) -> list:
    """Every base recipe's config, validated (data, gist config, ... and the oldest one's model)
    before anything is trained: a typo in the last part fails now, not an hour later. `sets`:
    `--set` items for every base (tests shrink the chain with them; the CLI passes none)."""
    from thinkc.train.config import load_config

    return [load_config(r, sets=sets, check_model=i == 0) for i, r in enumerate(chain)]


def train_bases(chain: list[str], console) -> list[Path]:
    """--with-base: train the missing base recipes, oldest first; their final/ folders."""
    from thinkc.train import run_training

    finals = []
    for i, (recipe, cfg) in enumerate(zip(chain, plan(chain))):
        console.print(f"[bold]--with-base[/]: {i + 1} of {len(chain)}: thinkc train {recipe} "
                      f"-> {cfg.train.output}/final", highlight=False)
        finals.append(run_training(cfg, console=console).final_dir)
    return finals
