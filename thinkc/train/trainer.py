"""`thinkc train`: the transformers Trainer with the gist layout and attention mask, LoRA, DeepSpeed.

    cfg = load_config("configs/train/tiny_lightthinker.yaml", sets=["train.max_steps=50"])
    result = run_training(cfg)          # -> TrainResult(final_dir=<output>/final, ...)

Order matters for fast failures: config and data are validated (and the data read) before any model
is loaded. The gist metadata rides in the batch and becomes the attention mask on the model's device
inside `compute_loss` (thinkc.models.patch when present: BlockMask on GPU; otherwise the dense
reference mask as an additive 4D mask, which sdpa/eager Qwen2 and Llama accept)."""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import yaml
from rich.console import Console
from transformers import PrinterCallback, Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from thinkc.errors import ThinkcError
from thinkc.gist.rule import GistFlags, GistMeta
from thinkc.models.patch import enable_gist_attention, gist_attention_mask
from thinkc.train.callbacks import JsonlLogCallback, RichProgressCallback, TimeLimitCallback, read_log
from thinkc.train.collator import META_KEYS, GistCollator
from thinkc.train.config import TrainConfig
from thinkc.train.dataset import SampleDataset, build_samples, load_records, sample_builder, sft_gist_config

GIST_CONFIG_FILE = "gist_config.json"
TRAIN_CONFIG_FILE = "train_config.yaml"
LOG_FILE = "train_log.jsonl"


# ---------------------------------------------------------------- the Trainer

def batch_attention_mask(meta: GistMeta, dtype: torch.dtype, device, causal_only: bool, model=None):
    """The attention mask for a batch. Plain unpacked sft: a 2D padding mask (any attention kernel).
    Otherwise the gist rule: a BlockMask when the model runs flex/gist attention on CUDA, else the
    dense reference as an additive [B, 1, L, L] mask (CPU: flex has no backward there)."""
    if causal_only:
        return (meta.doc >= 0).long()
    return gist_attention_mask(meta, dtype, device, model=model)


class GistTrainer(Trainer):
    """Trainer whose batches carry gist metadata (`gist_*`), turned into the attention mask here."""

    def __init__(self, *args, gist_flags: GistFlags = GistFlags(), causal_only: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.gist_flags = gist_flags
        self.causal_only = causal_only

    def _with_mask(self, model, inputs: dict[str, Any]) -> dict[str, Any]:
        inputs = dict(inputs)
        role, seg, doc, expire = (inputs.pop(k) for k in META_KEYS)
        meta = GistMeta(role, seg, doc, expire, self.gist_flags)
        dtype = next(p for p in model.parameters()).dtype
        if not dtype.is_floating_point:
            dtype = torch.float32
        inputs["attention_mask"] = batch_attention_mask(meta, dtype, inputs["input_ids"].device, self.causal_only, model)
        return inputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return super().compute_loss(model, self._with_mask(model, inputs), return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        return super().prediction_step(model, self._with_mask(model, inputs), prediction_loss_only, ignore_keys)


# ---------------------------------------------------------------- model, tokenizer, gist layout

def load_model_and_tokenizer(cfg: TrainConfig):
    m = cfg.model
    dtype = getattr(torch, m.dtype)
    if m.init == "tiny":
        from thinkc.models.tiny import tiny_model
        from thinkc.models.tokenizer import tiny_tokenizer

        tokenizer = tiny_tokenizer(m.vocab_size)
        model = tiny_model(m.arch, vocab_size=len(tokenizer), seed=cfg.train.seed, attn_implementation=m.attn_implementation,
                           dtype=dtype, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                           num_hidden_layers=m.num_hidden_layers, num_attention_heads=m.num_attention_heads,
                           num_key_value_heads=m.num_key_value_heads)
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.eos_token_id = tokenizer.eos_token_id
        return model.train(), tokenizer
    from thinkc.models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(m.name)
    model = load_model(m.name, dtype=dtype, device="cpu", attn_implementation=m.attn_implementation)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.train(), tokenizer


@dataclass
class GistSetup:
    config: Any  # GistConfig
    flags: GistFlags
    new_token_ids: list[int]
    make: Any  # record -> GistSample


def setup_gist(cfg: TrainConfig, tokenizer, model) -> GistSetup:
    """Load the GistConfig, add its special tokens (resizing the model), return the layout builder."""
    from thinkc.gist.config import GistConfig
    from thinkc.gist.tokens import add_gist_tokens

    gcfg = GistConfig.load(cfg.gist_config_name)
    gcfg = gcfg.replace(train_on_input=cfg.data.train_on_input or gcfg.train_on_input,
                        max_length=max(gcfg.max_length, cfg.data.max_length))
    before = len(tokenizer)
    add_gist_tokens(tokenizer, model, gcfg)
    new_ids = list(range(before, len(tokenizer)))
    return GistSetup(gcfg, gcfg.flags, new_ids, sample_builder(tokenizer, gcfg))


# ---------------------------------------------------------------- LoRA, arguments

def apply_lora(cfg: TrainConfig, model, new_token_ids: list[int]):
    from peft import LoraConfig, get_peft_model

    lo = cfg.lora
    kw = dict(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=list(lo.target_modules),
              task_type="CAUSAL_LM")
    if new_token_ids:  # the new gist tokens' embeddings must learn; the rest stays frozen
        kw["trainable_token_indices"] = {"embed_tokens": new_token_ids}
    try:
        return get_peft_model(model, LoraConfig(**kw))
    except ValueError as e:
        raise ThinkcError(f"lora: {e}") from None


def _use_cuda(cfg: TrainConfig) -> bool:
    if cfg.train.device == "cpu":
        return False
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ThinkcError("train.device=cuda but no CUDA device is available")
    return torch.cuda.is_available()


def training_arguments(cfg: TrainConfig) -> TrainingArguments:
    t = cfg.train
    cuda = _use_cuda(cfg)
    bf16 = (cuda and torch.cuda.is_bf16_supported()) if t.bf16 == "auto" else bool(t.bf16)
    if bf16 and not cuda:
        bf16 = False  # CPU autocast in bf16 is slow and lossy for the tiny recipes
    kw = dict(
        output_dir=t.output, num_train_epochs=t.epochs, max_steps=t.max_steps, learning_rate=t.lr,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum,
        lr_scheduler_type=t.lr_scheduler, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps, logging_first_step=True, save_strategy="steps", save_steps=t.save_steps,
        save_total_limit=t.save_total_limit, seed=t.seed, bf16=bf16,
        deepspeed=t.deepspeed, remove_unused_columns=False, report_to=[], disable_tqdm=True,
        dataloader_num_workers=t.num_workers, use_cpu=not cuda,
    )
    params = inspect.signature(TrainingArguments).parameters
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
    return TrainingArguments(**kw)


def resume_checkpoint(cfg: TrainConfig) -> Optional[str]:
    r = cfg.train.resume
    if r == "never":
        return None
    if r == "auto":
        out = Path(cfg.train.output)
        return get_last_checkpoint(str(out)) if out.is_dir() else None
    return r


# ---------------------------------------------------------------- run

@dataclass
class TrainResult:
    final_dir: Path
    global_step: int
    resumed_from: Optional[str]
    first_loss: Optional[float]
    last_loss: Optional[float]
    samples: int
    tokens: int
    truncated: int
    seconds: float
    step_seconds: Optional[float]


def run_training(cfg: TrainConfig, console: Optional[Console] = None) -> TrainResult:
    console = console or Console(stderr=True)
    t0 = time.time()
    out = Path(cfg.train.output)
    records = load_records(cfg)  # data errors surface before any model load
    ckpt = resume_checkpoint(cfg)
    args = training_arguments(cfg)  # initialises the distributed backend under torchrun
    main = args.process_index == 0

    model, tokenizer = load_model_and_tokenizer(cfg)
    gist = setup_gist(cfg, tokenizer, model) if cfg.uses_gist else None
    make = gist.make if gist else sample_builder(tokenizer, sft_gist_config(cfg))
    samples, stats = build_samples(records, tokenizer, cfg, make)
    if stats.label_tokens == 0:
        raise ThinkcError("no trainable tokens: every label is masked (check data.max_length)")
    if main:
        console.print(f"[bold]{cfg.method}[/]: {stats.records} records -> {stats.samples} rows, "
                      f"{stats.tokens:,} tokens ({stats.label_tokens:,} trained), {stats.truncated} truncated"
                      + (f"; resuming from {ckpt}" if ckpt else ""), highlight=False)
        from thinkc.io import atomic_write

        with atomic_write(out / TRAIN_CONFIG_FILE) as f:
            yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    causal_only = not cfg.uses_gist and not cfg.data.packing
    if not causal_only:
        enable_gist_attention(model)  # BlockMask -> flex on GPU; dense masks -> SDPA
    if cfg.lora.enabled:
        model = apply_lora(cfg, model, gist.new_token_ids if gist else [])
    if cfg.train.gradient_checkpointing:
        model.config.use_cache = False

    trainer = GistTrainer(
        model=model, args=args, train_dataset=SampleDataset(samples), processing_class=tokenizer,
        data_collator=GistCollator(pad_id=tokenizer.pad_token_id or 0),
        callbacks=[RichProgressCallback(console), JsonlLogCallback(out / LOG_FILE)]
        + ([TimeLimitCallback(cfg.train.max_minutes)] if cfg.train.max_minutes else []),
        gist_flags=gist.flags if gist else GistFlags(),
        causal_only=causal_only,
    )
    trainer.remove_callback(PrinterCallback)  # the rich bar + JSONL log replace its prints
    train_t0 = time.time()
    start_step = 0
    if ckpt:
        state_file = Path(ckpt) / "trainer_state.json"
        if state_file.is_file():
            start_step = json.loads(state_file.read_text()).get("global_step", 0)
    trainer.train(resume_from_checkpoint=ckpt)
    train_s = time.time() - train_t0
    final = save_final(cfg, trainer, tokenizer, gist)

    log = [r for r in read_log(out / LOG_FILE) if "loss" in r]
    steps_run = trainer.state.global_step - start_step
    return TrainResult(final_dir=final, global_step=trainer.state.global_step, resumed_from=ckpt,
                       first_loss=log[0]["loss"] if log else None, last_loss=log[-1]["loss"] if log else None,
                       samples=stats.samples, tokens=stats.tokens, truncated=stats.truncated,
                       seconds=time.time() - t0, step_seconds=train_s / steps_run if steps_run > 0 else None)


def save_final(cfg: TrainConfig, trainer: Trainer, tokenizer, gist: Optional[GistSetup]) -> Path:
    """Model (or adapter + merged model), tokenizer with gist tokens, gist config and the train
    config into <output>/final, built in a temp folder and renamed in place (atomic for readers)."""
    out = Path(cfg.train.output)
    final, tmp = out / "final", out / ".final.tmp"
    main = trainer.is_world_process_zero()
    if main and tmp.exists():
        shutil.rmtree(tmp)
    trainer.accelerator.wait_for_everyone()
    if cfg.lora.enabled:
        trainer.save_model(str(tmp / "adapter"))  # collective under DeepSpeed; writes on rank 0
        if main and cfg.lora.merge:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(str(tmp))
    else:
        trainer.save_model(str(tmp))
    if main:
        tokenizer.save_pretrained(str(tmp))
        if gist is not None:
            gist.config.save(tmp / GIST_CONFIG_FILE)
        with open(tmp / TRAIN_CONFIG_FILE, "w", encoding="utf-8") as f:
            yaml.safe_dump({**cfg.to_dict(), "method": cfg.method}, f, sort_keys=False)
        old = out / ".final.old"
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        if old.exists():
            shutil.rmtree(old)
    trainer.accelerator.wait_for_everyone()
    return final
