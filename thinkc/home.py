"""Where thinkc keeps prepared models and caches: $THINKC_HOME, default ~/.cache/thinkc."""
import os
from pathlib import Path


def thinkc_home() -> Path:
    root = os.environ.get("THINKC_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "thinkc")
    return Path(root)


def models_dir() -> Path:
    return thinkc_home() / "models"
