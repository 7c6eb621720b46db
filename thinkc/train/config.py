"""The training configuration: a YAML/JSON file, then `--set a.b=value` overrides, then explicit CLI
flags; validated completely (keys, types, ranges, files) before anything heavy is loaded, so a typo
fails in the first second with one line.

    method: lightthinker          # sft | lightthinker | anllm
    model:  {name: smollm2} | {init: tiny, arch: qwen2, hidden_size: 128, ...}
            | {name: runs/tiny-base-6/final, recipe: tiny_base_6}   # another recipe's final model
    data:   {train: data.jsonl | synth, max_length: 1024, packing: false, synth: {n: 2000}}
    gist:   {config: qwen}       # GistConfig name or file (lightthinker / anllm)
    lora:   {enabled: false, r: 16, ...}
    train:  {output: runs/x, epochs: 1, lr: 1e-4, batch_size: 4, ...}

Relative paths inside a recipe file resolve next to the recipe first, then in the current folder
(thinkc.train.paths); train.output and command-line values are relative to the current folder.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from thinkc.errors import ThinkcError
from thinkc.train.shipped import names, shipped

METHODS = ("sft", "lightthinker", "anllm")
# The gist config each method uses when the config names none (thinkc/gist configs under configs/gist).
DEFAULT_GIST = {"lightthinker": "qwen", "anllm": "anllm"}
TINY_ARCHS = ("qwen2", "llama")


@dataclass
class ModelConfig:
    name: Optional[str] = None  # local folder, `smollm2`, or a shipped tiny checkpoint name
    # the recipe (shipped name or file) whose <train.output>/final is `name`: a missing model then
    # says which `thinkc train` to run first, and `thinkc train --with-base` runs it (thinkc.train.chain)
    recipe: Optional[str] = None
    init: str = "pretrained"  # pretrained | tiny (random init from the fields below + the tiny tokenizer)
    arch: str = "qwen2"
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vocab_size: int = 400  # tiny tokenizer's BPE vocabulary (gist tokens come on top)
    dtype: str = "float32"  # weights as loaded; bf16 mixed precision is `train.bf16`
    attn_implementation: str = "sdpa"


@dataclass
class DataConfig:
    train: Union[str, list, None] = None  # records JSONL (or a list of them, read in order), or `synth`
    max_length: int = 1024
    packing: bool = False
    overlong: str = "truncate"  # samples over max_length: truncate (a prefix is a valid layout) | drop
    skip_invalid: bool = False
    train_on_input: bool = False
    synth: dict = field(default_factory=dict)  # keyword arguments of thinkc.data.synth.synth_records
    limit: int = 0  # use only the first N records (0 = all)
    eval: Optional[str] = None  # eval records JSONL, or `synth` (a synthetic split disjoint from training)
    eval_ratio: float = 0.0  # or hold out this share of the training records for evaluation
    reorder: Union[bool, str] = "auto"  # store rows as [prompt|cache tokens|thoughts]; auto = on CUDA (BlockMask)


@dataclass
class GistSection:
    config: Optional[str] = None  # GistConfig name or path; default per method (DEFAULT_GIST)


@dataclass
class LoraSection:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                          "gate_proj", "up_proj", "down_proj"])
    merge: bool = True  # also save merged full weights in <output>/final (the adapter goes to final/adapter)


@dataclass
class TrainSection:
    output: Optional[str] = None
    epochs: float = 1.0
    max_steps: int = -1
    max_minutes: float = 0.0  # stop (and save) after this much training time; 0 = no limit
    lr: float = 1e-4
    batch_size: int = 4
    grad_accum: int = 1
    warmup_ratio: float = 0.0
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    bf16: Union[bool, str] = "auto"  # auto = on a GPU that supports it
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    resume: str = "auto"  # auto (last checkpoint in output, if any) | never | path to a checkpoint
    deepspeed: Optional[str] = None  # zero2 | zero3 | path to a DeepSpeed JSON
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda
    report_to: Union[str, list] = "none"  # none | tensorboard | wandb (or a list); logs under <output>/runs
    eval_steps: int = 0  # with an eval split: evaluate every N steps (0 = once, at the end)
    extra_args: dict = field(default_factory=dict)  # any other transformers TrainingArguments, by name


@dataclass
class TrainConfig:
    method: str = "sft"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    gist: GistSection = field(default_factory=GistSection)
    lora: LoraSection = field(default_factory=LoraSection)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def uses_gist(self) -> bool:
        return self.method in ("lightthinker", "anllm")

    @property
    def gist_config_name(self) -> Optional[str]:
        return self.gist.config or DEFAULT_GIST.get(self.method)


# ---------------------------------------------------------------- building from dicts

def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one leaf value against its annotation; raise a one-line ThinkcError."""
    origin = get_origin(tp)
    if origin is Union:
        opts = get_args(tp)
        if value is None and type(None) in opts:
            return None
        errors = []
        for opt in (o for o in opts if o is not type(None)):
            try:
                return _coerce(value, opt, where)
            except ThinkcError as e:
                errors.append(str(e))
        raise ThinkcError(errors[0] if errors else f"{where}: bad value {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ThinkcError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ThinkcError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ThinkcError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ThinkcError(f"{where}: expected a string, got {value!r}")
    if tp is list or origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            return value
        raise ThinkcError(f"{where}: expected a list, got {value!r}")
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise ThinkcError(f"{where}: expected a mapping, got {value!r}")
    return value


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ThinkcError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ThinkcError(f"unknown config key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value or {}, key)
        else:
            kwargs[name] = _coerce(value, tp, key)
    return cls(**kwargs)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_set(item: str) -> dict:
    """`train.lr=2e-5` -> {"train": {"lr": 2e-5}} (the value is read as YAML: numbers, booleans, lists)."""
    if "=" not in item:
        raise ThinkcError(f"--set {item!r}: expected key=value, e.g. train.lr=2e-5")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ThinkcError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    out: dict = value
    for p in reversed(parts):
        out = {p: out}
    return out


def find_recipe(path: str | Path) -> Path:
    """The recipe file: `path` itself, or for a bare name the shipped configs/train/<name>.yaml."""
    path = Path(path)
    if path.is_file():
        return path
    recipe = shipped("train", str(path), ".yaml") if path.suffix == "" else None
    if recipe is None:
        raise ThinkcError(f"{path}: no such config file (shipped recipes: {', '.join(names('train', '.yaml'))})")
    return recipe


def load_file(path: str | Path) -> dict:
    """A recipe's values, its relative input paths resolved next to it or in the current folder
    (thinkc.train.paths)."""
    from thinkc.train.paths import resolve_train_recipe

    path = find_recipe(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        at = f":{line + 1}" if line is not None else (f":{e.lineno}" if hasattr(e, "lineno") else "")
        raise ThinkcError(f"{path}{at}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}") from None
    return resolve_train_recipe(data or {}, path)


def load_config(path: Optional[str | Path] = None, sets: tuple[str, ...] | list[str] = (),
                overrides: Optional[dict] = None, *, check_files: bool = True,
                check_model: Optional[bool] = None) -> TrainConfig:
    """File -> `--set` items -> explicit overrides (nested dict), then `validate`. `check_model`
    (default: `check_files`) also requires the base model to exist (`thinkc train --with-base`
    leaves it out and trains the missing base recipes first)."""
    data = load_file(path) if path else {}
    for item in sets:
        data = _merge(data, parse_set(item))
    if overrides:
        data = _merge(data, overrides)
    cfg = _build(TrainConfig, data, "")
    validate(cfg, check_files=check_files, check_model=check_model, origin=find_recipe(path) if path else None)
    return cfg


def _deepspeed_path(value: str) -> Path:
    p = Path(value)
    if p.is_file():
        return p
    preset = shipped("deepspeed", value, ".json")
    if preset is not None:
        return preset
    raise ThinkcError(f"train.deepspeed: {value}: no such file (or use {' / '.join(names('deepspeed', '.json'))})")


REPORT_TO = ("none", "tensorboard", "wandb")


def _report_to(value) -> Union[str, list]:
    """`none`, one integration, or a list of them (a comma-separated string too) -> canonical form."""
    items = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
    bad = [v for v in items if v not in REPORT_TO]
    if bad or not items:
        raise ThinkcError(f"train.report_to: {(bad or [value])[0]!r} is not one of {', '.join(REPORT_TO)}")
    items = [v for v in items if v != "none"]
    return items[0] if len(items) == 1 else (items or "none")


def train_files(d: DataConfig) -> list[str]:
    """data.train as a list of record files ([] for `synth`); a list is read in order, one after another
    (e.g. the same problems compressed at two CTS ratios: ids may repeat across files)."""
    if d.train == "synth" or not d.train:
        return []
    return [str(f) for f in d.train] if isinstance(d.train, list) else [str(d.train)]


def _validate_data(cfg: TrainConfig, check_files: bool, need, origin: Optional[Path] = None) -> None:
    """data.* and the run length / eval schedule that depend on it."""
    from thinkc.train.paths import is_shipped_recipe

    d, t = cfg.data, cfg.train
    # a shipped recipe's comments say how its data is made (earlier commands, or the user's own file)
    hint = f" (the comments at the top of {origin} say how to make it; --data names another file)" \
        if is_shipped_recipe(origin) else ""
    need(bool(d.train), "data.train: required (a records JSONL file or `synth`)")
    need(d.max_length >= 16, "data.max_length: must be >= 16")
    need(d.overlong in ("truncate", "drop"), f"data.overlong: {d.overlong!r} is not truncate or drop")
    need(d.limit >= 0, "data.limit: must be >= 0")
    need(d.reorder in (True, False, "auto"), f"data.reorder: {d.reorder!r} is not true, false or auto")
    files = train_files(d)
    need("synth" not in files, "data.train: `synth` or record files, not both")
    for f in files if check_files else ():
        need(Path(f).is_file(), f"data.train: {f}: no such file{hint}")
    need(t.max_steps == -1 or t.max_steps >= 1,
         f"train.max_steps: must be >= 1 (or -1 to train for train.epochs), got {t.max_steps}")
    need(t.epochs > 0 or t.max_steps > 0, "train.epochs: must be > 0 (or set train.max_steps)")
    t.report_to = _report_to(t.report_to)
    need(t.eval_steps >= 0, "train.eval_steps: must be >= 0")
    need(0 <= d.eval_ratio < 1, "data.eval_ratio: must be in [0, 1)")
    need(not (d.eval and d.eval_ratio), "data.eval and data.eval_ratio: set one, not both")
    if check_files and d.eval and d.eval != "synth":
        need(Path(d.eval).is_file(), f"data.eval: {d.eval}: no such file{hint}")
    need(not t.eval_steps or bool(d.eval or d.eval_ratio), "train.eval_steps: needs data.eval or data.eval_ratio")


def validate(cfg: TrainConfig, *, check_files: bool = True, check_model: Optional[bool] = None,
             origin: Optional[Path] = None) -> None:
    """Every check that needs no model loaded: ranges, choices, files (the base model's folder too,
    with `check_model`, default `check_files`). One ThinkcError per problem. `origin`: the recipe file."""
    def need(ok: bool, msg: str):
        if not ok:
            raise ThinkcError(msg)

    need(cfg.method in METHODS, f"method: {cfg.method!r} is not one of {', '.join(METHODS)}")
    m, d, t, lo = cfg.model, cfg.data, cfg.train, cfg.lora
    need(m.init in ("pretrained", "tiny"), f"model.init: {m.init!r} is not pretrained or tiny")
    if m.init == "tiny":
        need(m.arch in TINY_ARCHS, f"model.arch: {m.arch!r} is not one of {', '.join(TINY_ARCHS)}")
        for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "vocab_size"):
            need(getattr(m, k) > 0, f"model.{k}: must be > 0")
        need(m.hidden_size % m.num_attention_heads == 0, "model.hidden_size: must be divisible by num_attention_heads")
        need(m.num_attention_heads % m.num_key_value_heads == 0,
             "model.num_key_value_heads: must divide num_attention_heads")
    else:
        need(bool(m.name), "model.name: required (a local folder, smollm2 or a shipped checkpoint), "
                           "or set model.init=tiny to train from scratch")
    need(m.dtype in ("float32", "bfloat16", "float16"), f"model.dtype: {m.dtype!r} is not float32, bfloat16 or float16")
    need(m.attn_implementation in ("sdpa", "eager", "flex_attention", "flash_attention_2"),
         f"model.attn_implementation: {m.attn_implementation!r} is not sdpa, eager, flex_attention or flash_attention_2")
    _validate_data(cfg, check_files, need, origin)
    need(t.lr > 0, "train.lr: must be > 0")
    need(t.max_minutes >= 0, "train.max_minutes: must be >= 0")
    for k in ("batch_size", "grad_accum", "logging_steps", "save_steps"):
        need(getattr(t, k) >= 1, f"train.{k}: must be >= 1")
    need(0 <= t.warmup_ratio < 1, "train.warmup_ratio: must be in [0, 1)")
    need(t.lr_scheduler in ("linear", "cosine", "constant", "constant_with_warmup"),
         f"train.lr_scheduler: {t.lr_scheduler!r} is not linear, cosine, constant or constant_with_warmup")
    need(t.bf16 in (True, False, "auto"), f"train.bf16: {t.bf16!r} is not true, false or auto")
    need(t.device in ("auto", "cpu", "cuda"), f"train.device: {t.device!r} is not auto, cpu or cuda")
    if t.resume not in ("auto", "never") and check_files:
        need(Path(t.resume).is_dir(), f"train.resume: {t.resume}: no such checkpoint folder (or use auto / never)")
    if t.deepspeed:
        t.deepspeed = str(_deepspeed_path(t.deepspeed))
    if lo.enabled:
        need(lo.r >= 1, "lora.r: must be >= 1")
        need(lo.alpha >= 1, "lora.alpha: must be >= 1")
        need(0 <= lo.dropout < 1, "lora.dropout: must be in [0, 1)")
        need(bool(lo.target_modules), "lora.target_modules: must name at least one module")
    if cfg.gist.config and not cfg.uses_gist:
        raise ThinkcError(f"gist.config: only used by lightthinker / anllm, not {cfg.method}")
    if cfg.uses_gist:
        from thinkc.gist.config import GistConfig

        try:
            GistConfig.load(cfg.gist_config_name)
        except ThinkcError as e:
            raise ThinkcError(f"gist.config: {e}") from None
    need(bool(t.output), "train.output: required (the run folder; use --output)")
    if (check_files if check_model is None else check_model) and m.init == "pretrained":
        from thinkc.train.chain import check_base

        check_base(m.name, m.recipe)  # a missing base: which recipe to train first
