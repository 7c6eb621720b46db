"""Load a model by name, never touching a hub. A name is one of:
  - a local HF folder (Qwen2/2.5, Llama 3, ... anything AutoModelForCausalLM reads),
  - "smollm2": the converted SmolLM2-135M-Instruct in $THINKC_HOME (thinkc models prepare smollm2),
  - a shipped tiny checkpoint ("tiny-sft", "tiny-lightthinker") in thinkc/assets/checkpoints/,
  - for tokenizers only, "tiny": the in-process offline tokenizer of the tiny models.
Loading is always local_files_only with trust_remote_code off."""
from __future__ import annotations

import os
from pathlib import Path

from thinkc.errors import ThinkcError

# belt and braces: local_files_only below is what guarantees it, these stop stray hub calls
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

SHIPPED = ("tiny-sft", "tiny-lightthinker")
# config.json model_type values whose layout the gist attention patch, the decode loop and CTS
# scoring are written for (decoder-only, `model.model.layers`, rotary positions)
SUPPORTED_MODEL_TYPES = ("qwen2", "llama")
DEVICE_TYPES = ("cpu", "cuda")
CHECKPOINTS = Path(__file__).resolve().parent.parent / "assets" / "checkpoints"
TINY_TOKENIZER = "tiny"


def list_shipped() -> list[str]:
    """Names of the tiny checkpoints that ship with this install (those present on disk)."""
    if not CHECKPOINTS.is_dir():
        return []
    return sorted(p.name for p in CHECKPOINTS.iterdir() if (p / "config.json").is_file())


def resolve_model(name: str | os.PathLike) -> Path:
    """The local folder for `name`; ThinkcError saying how to get it when there is none."""
    path = Path(os.path.expanduser(os.fspath(name)))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ThinkcError(f"{path}: not a Hugging Face model folder (no config.json)")
        return path
    name = os.fspath(name)
    if name == "smollm2":
        from thinkc.models.smollm2 import smollm2_available, smollm2_dir

        if not smollm2_available():
            raise ThinkcError(f"smollm2 is not prepared yet ({smollm2_dir()} is missing): "
                              "run `thinkc models prepare smollm2` once")
        return smollm2_dir()
    if name in SHIPPED or (CHECKPOINTS / name / "config.json").is_file():
        ckpt = CHECKPOINTS / name
        if not (ckpt / "config.json").is_file():
            have = ", ".join(list_shipped()) or "none"
            raise ThinkcError(f"shipped checkpoint {name!r} is not in this install ({ckpt}); shipped: {have}")
        return ckpt
    raise ThinkcError(f"model {name!r}: no such local folder, and not a known name "
                      f"(smollm2, {', '.join(SHIPPED)}); thinkc never downloads models")


def load_tokenizer(name_or_path: str | os.PathLike):
    """The tokenizer of a named/local model ("tiny": the offline tiny tokenizer). A missing pad
    token is set to the EOS token so batching works."""
    if os.fspath(name_or_path) == TINY_TOKENIZER:
        from thinkc.models.tokenizer import tiny_tokenizer

        return tiny_tokenizer()
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = resolve_model(name_or_path)
    # transformers 5 trap: for a generic tokenizer.json (tokenizer_class TokenizersBackend /
    # PreTrainedTokenizerFast) AutoTokenizer picks the class of config.json's model_type (e.g.
    # Qwen2Tokenizer), which rebuilds the pre-tokenizer and silently changes the ids. Load such
    # folders with the generic class, which uses tokenizer.json as it is.
    cls = PreTrainedTokenizerFast if _generic_tokenizer(path) else AutoTokenizer
    try:
        tok = cls.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ThinkcError(f"{path}: cannot load a tokenizer ({_first_line(e)})") from None
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name_or_path: str | os.PathLike, dtype=None, device: str = "cpu",
               attn_implementation: str = "sdpa"):
    """AutoModelForCausalLM from the local folder for `name_or_path`, in eval mode on `device`.
    `dtype`: a torch dtype or its name ("float32", "bfloat16", "float16"); default float32.
    Refuses (ThinkcError) an unknown device, a model outside the Qwen2/Llama family and damaged
    weight files."""
    import pickle

    from transformers import AutoModelForCausalLM

    dtype = _dtype(dtype)
    check_device(device)
    path = resolve_model(name_or_path)
    check_architecture(path)
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - transformers requires safetensors
        SafetensorError = OSError
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, trust_remote_code=False,
                                                     dtype=dtype, attn_implementation=attn_implementation)
    except (OSError, ValueError, SafetensorError, pickle.UnpicklingError) as e:
        raise ThinkcError(f"{path}: cannot load the model ({_first_line(e)})") from None
    return model.to(device).eval()


def check_device(device: str) -> None:
    """ThinkcError unless `device` is cpu, or cuda[:N] with such a CUDA device present."""
    import torch

    hint = "use cpu, cuda or cuda:N"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ThinkcError(f"unknown device {device!r} ({hint})") from None
    if dev.type not in DEVICE_TYPES:
        raise ThinkcError(f"device {device!r} is not supported ({hint})")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ThinkcError(f"device {device!r} asked for, but torch sees no CUDA device (use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ThinkcError(f"device {device!r}: torch sees only {torch.cuda.device_count()} CUDA device(s)")


def check_architecture(path: Path) -> None:
    """ThinkcError unless the folder's config.json is a Qwen2 or Llama-family causal LM (GPT-2,
    BERT, ... would fail later with an IndexError or a missing attribute)."""
    import json

    cfg_path = path / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ThinkcError(f"{cfg_path}: not a readable model config ({_first_line(e)})") from None
    model_type = cfg.get("model_type") if isinstance(cfg, dict) else None
    if model_type not in SUPPORTED_MODEL_TYPES:
        archs = ", ".join(cfg.get("architectures") or []) if isinstance(cfg, dict) else ""
        found = f"{model_type or 'no model_type'}" + (f" ({archs})" if archs else "")
        raise ThinkcError(f"{path}: a {found} model; thinkc works with Qwen2/Qwen2.5 and Llama-family "
                          f"causal LMs (config model_type {' or '.join(SUPPORTED_MODEL_TYPES)})")


def _generic_tokenizer(path: Path) -> bool:
    import json

    cfg = path / "tokenizer_config.json"
    if not (path / "tokenizer.json").is_file() or not cfg.is_file():
        return False
    try:
        cls = json.loads(cfg.read_text(encoding="utf-8")).get("tokenizer_class")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return cls in ("TokenizersBackend", "PreTrainedTokenizerFast")


def _dtype(dtype):
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise ThinkcError(f"unknown dtype {dtype!r} (use float32, bfloat16 or float16)")
    return value


def _first_line(e: Exception) -> str:
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # torch bolds parts of its messages
    return (text.strip().splitlines() or [type(e).__name__])[0]
