"""TrainConfig -> transformers TrainingArguments: thinkc's own keys, the tracking integrations
(`train.report_to`), the eval schedule, and `train.extra_args`, a pass-through for every other
TrainingArguments option (checked by name against the installed transformers)."""
from __future__ import annotations

import difflib
import importlib.util
import inspect
import os

import torch
from transformers import TrainingArguments

from thinkc.errors import ThinkcError
from thinkc.train.config import TrainConfig

# TrainingArguments that thinkc sets from its own keys: extra_args may not set them behind its back.
OWNED = {
    "output_dir": "train.output", "num_train_epochs": "train.epochs", "max_steps": "train.max_steps",
    "learning_rate": "train.lr", "per_device_train_batch_size": "train.batch_size",
    "gradient_accumulation_steps": "train.grad_accum", "lr_scheduler_type": "train.lr_scheduler",
    "weight_decay": "train.weight_decay", "max_grad_norm": "train.max_grad_norm",
    "logging_steps": "train.logging_steps", "save_steps": "train.save_steps",
    "save_total_limit": "train.save_total_limit", "seed": "train.seed", "bf16": "train.bf16",
    "deepspeed": "train.deepspeed", "report_to": "train.report_to", "eval_steps": "train.eval_steps",
    "eval_strategy": "train.eval_steps", "warmup_ratio": "train.warmup_ratio", "warmup_steps": "train.warmup_ratio",
    "gradient_checkpointing": "train.gradient_checkpointing",
    "activation_checkpointing": "train.gradient_checkpointing",
    "dataloader_num_workers": "train.num_workers", "use_cpu": "train.device",
    "remove_unused_columns": None, "label_names": None, "resume_from_checkpoint": "train.resume",
}
# what each integration needs installed (module name, install hint)
TRACKERS = {"tensorboard": (("tensorboard", "tensorboardX"), "pip install tensorboard (or thinkc[all])"),
            "wandb": (("wandb",), "pip install wandb; set WANDB_MODE=offline without an account")}


def use_cuda(cfg: TrainConfig) -> bool:
    if cfg.train.device == "cpu":
        return False
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ThinkcError("train.device=cuda but no CUDA device is available")
    return torch.cuda.is_available()


def report_to(cfg: TrainConfig) -> list[str]:
    """The integrations to log to; each one's package must be importable (one line naming it if not)."""
    value = cfg.train.report_to
    items = [] if value == "none" else ([value] if isinstance(value, str) else list(value))
    for name in items:
        modules, hint = TRACKERS[name]
        if not any(importlib.util.find_spec(m) is not None for m in modules):
            raise ThinkcError(f"train.report_to: {name} is not installed ({hint})")
    return items


def extra_arguments(extra: dict, params) -> dict:
    """Check `train.extra_args` names: known TrainingArguments, and not one thinkc sets itself."""
    for name in extra:
        if name in OWNED:
            key = OWNED[name]
            raise ThinkcError(f"train.extra_args.{name}: set by thinkc" + (f" (use {key})" if key else ""))
        if name not in params:
            close = difflib.get_close_matches(name, list(params), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            import transformers

            raise ThinkcError(f"train.extra_args.{name}: not a TrainingArguments option "
                              f"(transformers {transformers.__version__}){hint}")
    return dict(extra)


def check_arguments(cfg: TrainConfig) -> None:
    """What training_arguments would refuse by name, without building TrainingArguments (which can
    start a distributed backend): the extra_args names and the trackers' packages."""
    report_to(cfg)
    extra_arguments(cfg.train.extra_args, inspect.signature(TrainingArguments).parameters)


def skip_deepspeed_shm_op() -> None:
    """DeepSpeed on CPU: do not JIT-compile its shared-memory communication op (~3.5 min on a 2-core
    machine the first time). DeepSpeed's comm backend builds it when it starts, but only
    `inference_all_reduce` (DeepSpeed inference, tensor parallel) uses it: ZeRO training reduces and
    gathers through torch.distributed (gloo). Marking the op incompatible makes DeepSpeed skip it, as
    it does where the op cannot build. THINKC_DEEPSPEED_SHM_OP=1 keeps DeepSpeed's default."""
    if os.environ.get("THINKC_DEEPSPEED_SHM_OP") == "1":
        return
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # probed once, then this dict is read


def training_arguments(cfg: TrainConfig, has_eval: bool = False) -> TrainingArguments:
    t = cfg.train
    cuda = use_cuda(cfg)
    bf16 = (cuda and torch.cuda.is_bf16_supported()) if t.bf16 == "auto" else bool(t.bf16)
    if bf16 and not cuda:
        bf16 = False  # CPU autocast in bf16 is slow and lossy for the tiny recipes
    params = inspect.signature(TrainingArguments).parameters
    kw = dict(
        output_dir=t.output, num_train_epochs=t.epochs, max_steps=t.max_steps, learning_rate=t.lr,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, lr_scheduler_type=t.lr_scheduler, weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm, logging_steps=t.logging_steps, logging_first_step=True,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit, seed=t.seed,
        bf16=bf16, deepspeed=t.deepspeed, remove_unused_columns=False, report_to=report_to(cfg),
        disable_tqdm=True, dataloader_num_workers=t.num_workers, use_cpu=not cuda,
        eval_strategy="steps" if has_eval and t.eval_steps else "no", label_names=["labels"],
    )
    if has_eval and t.eval_steps:
        kw["eval_steps"] = t.eval_steps
    # renamed activation_checkpointing in transformers 5.2x; the GPU image (5.17) has the old name
    ckpt_name = "activation_checkpointing" if "activation_checkpointing" in params else "gradient_checkpointing"
    kw[ckpt_name] = t.gradient_checkpointing
    if t.gradient_checkpointing:
        kw[f"{ckpt_name}_kwargs"] = {"use_reentrant": False}
    if "warmup_ratio" in params:
        kw["warmup_ratio"] = t.warmup_ratio
    else:  # transformers >= 5.2x: a float < 1 in warmup_steps is a ratio
        kw["warmup_steps"] = t.warmup_ratio
    if not cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        kw["ddp_backend"] = "gloo"
    if t.deepspeed and not cuda:
        skip_deepspeed_shm_op()
    kw.update(extra_arguments(t.extra_args, params))
    try:
        return TrainingArguments(**kw)
    except (ValueError, TypeError) as e:  # an extra_args value TrainingArguments refuses
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ThinkcError(f"train: TrainingArguments refused the settings: {msg}") from None
