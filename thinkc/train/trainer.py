"""`thinkc train`: the transformers Trainer with the gist layout and attention mask, LoRA, DeepSpeed.

    cfg = load_config("configs/train/tiny_lightthinker.yaml", sets=["train.max_steps=50"])
    result = run_training(cfg)          # -> TrainResult(final_dir=<output>/final, ...)

Order matters for fast failures: config and data are validated (and the data read) before any model
is loaded. The gist metadata rides in the batch and becomes the attention mask on the model's device
inside `compute_loss` (thinkc.models.patch when present: BlockMask on GPU; otherwise the dense
reference mask as an additive 4D mask, which sdpa/eager Qwen2 and Llama accept)."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import yaml
from rich.console import Console

from thinkc.train.quiet import align_special_tokens, name_cpu_accelerator, quiet_run

name_cpu_accelerator()  # before transformers pulls deepspeed in
from transformers import PrinterCallback, Trainer  # noqa: E402

from thinkc.errors import ThinkcError
from thinkc.io import follow_umask
from thinkc.gist.reorder import resolve_reorder
from thinkc.gist.rule import GistFlags, GistMeta
from thinkc.models.patch import enable_gist_attention, gist_attention_mask
from thinkc.train.adapters import apply_lora, tied_head
from thinkc.train.arguments import training_arguments
from thinkc.train.callbacks import (JsonlLogCallback, LogLastStepCallback, RichProgressCallback, StepTimerCallback,
                                    TimeLimitCallback, read_log)
from thinkc.train.checkpoints import TRAIN_CONFIG_FILE, check_resume, checkpoints, remove_incomplete, resume_checkpoint
from thinkc.train.collator import META_KEYS, GistCollator
from thinkc.train.config import TrainConfig
from thinkc.train.dataset import (SampleDataset, build_samples, load_records, run_gist_config, sample_builder,
                                 sft_gist_config)
from thinkc.train.evaluation import metric_kwargs, split_records, trigger_id

GIST_CONFIG_FILE = "gist_config.json"
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
        if META_KEYS[0] not in inputs:  # already turned into a mask (prediction_step -> compute_loss)
            return inputs
        inputs = dict(inputs)
        role, seg, doc, expire = (inputs.pop(k) for k in META_KEYS)
        # physically reordered rows (data.reorder) carry logical indices; their loss uses shift_labels
        meta = GistMeta(role, seg, doc, expire, self.gist_flags, inputs.pop("gist_pos", None))
        dtype = next(p for p in model.parameters()).dtype
        if not dtype.is_floating_point:
            dtype = torch.float32
        inputs["attention_mask"] = batch_attention_mask(meta, dtype, inputs["input_ids"].device, self.causal_only, model)
        return inputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return super().compute_loss(model, self._with_mask(model, inputs), return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """A tied LM head is the embedding, not stored in checkpoints: not a missing key on resume."""
        if tied_head(self.model) and getattr(load_result, "missing_keys", None):
            kept = [k for k in load_result.missing_keys if not k.endswith("lm_head.weight")]
            load_result = load_result._replace(missing_keys=kept)
        super()._issue_warnings_after_load(load_result)

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
    from thinkc.models.loading import load_model, load_tokenizer, resolve_model

    tokenizer = load_tokenizer(m.name)
    model = load_model(m.name, dtype=dtype, device="cpu", attn_implementation=m.attn_implementation)
    # an absolute base path in adapter_config.json: the adapter reloads from any working directory
    model.config.name_or_path = str(resolve_model(m.name).resolve())
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.train(), tokenizer


@dataclass
class GistSetup:
    config: Any  # GistConfig
    flags: GistFlags
    new_token_ids: list[int]
    make: Any  # record -> list[GistSample] (two with hybrid)


def setup_gist(cfg: TrainConfig, tokenizer, model) -> GistSetup:
    """Load the GistConfig, add its special tokens (resizing the model), return the layout builder."""
    from thinkc.gist.tokens import add_gist_tokens

    gcfg = run_gist_config(cfg)
    before = len(tokenizer)
    add_gist_tokens(tokenizer, model, gcfg)
    new_ids = list(range(before, len(tokenizer)))
    return GistSetup(gcfg, gcfg.flags, new_ids, sample_builder(tokenizer, gcfg))


# ---------------------------------------------------------------- run

@dataclass
class TrainResult:
    final_dir: Path
    global_step: int
    resumed_from: Optional[str]
    first_loss: Optional[float]  # the first logged loss of this invocation
    last_loss: Optional[float]  # the last logged loss (the last step is always logged)
    losses_logged: int
    samples: int
    tokens: int
    truncated: int
    seconds: float
    startup_s: Optional[float]  # inside Trainer.train before step 1 (DeepSpeed init, checkpoint load)
    first_step_s: Optional[float]  # the first optimiser step alone (warm-up, first batches)
    steady_s_per_step: Optional[float]  # the mean of the steps after it
    eval: dict = field(default_factory=dict)  # eval_loss (+ eval_trigger_recall for lightthinker)


def prepare_output(cfg: TrainConfig, ckpt: Optional[str], console: Console, summary: str) -> None:
    """Main process: say what runs, clear cut-short (or, with resume=never, all old) checkpoints,
    write the run's train_config.yaml."""
    out = Path(cfg.train.output)
    gone = remove_incomplete(out)
    if cfg.train.resume == "never":
        gone += [p for _, p in checkpoints(out)]
        for p in gone:
            shutil.rmtree(p, ignore_errors=True)
    console.print(summary + (f"; resuming from {ckpt}" if ckpt else ""), highlight=False)
    if gone:
        console.print(f"removed {len(gone)} " + ("old" if cfg.train.resume == "never" else "incomplete")
                      + f" checkpoint(s): {', '.join(p.name for p in gone)}", highlight=False)
    from thinkc.io import atomic_write

    with atomic_write(out / TRAIN_CONFIG_FILE) as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)


def build_trainer(cfg: TrainConfig, model, args, tokenizer, gist, datasets, console, timer) -> GistTrainer:
    train_ds, eval_ds = datasets
    causal_only = not cfg.uses_gist and not cfg.data.packing
    metrics = metric_kwargs(trigger_id(tokenizer, gist.config if gist else None)) if eval_ds is not None else {}
    trainer = GistTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        data_collator=GistCollator(pad_id=tokenizer.pad_token_id or 0),
        callbacks=[RichProgressCallback(console), timer, JsonlLogCallback(Path(cfg.train.output) / LOG_FILE)]
        + ([TimeLimitCallback(cfg.train.max_minutes)] if cfg.train.max_minutes else []) + [LogLastStepCallback()],
        gist_flags=gist.flags if gist else GistFlags(), causal_only=causal_only, **metrics,
    )
    trainer.remove_callback(PrinterCallback)  # the rich bar + JSONL log replace its prints
    return trainer


def run_training(cfg: TrainConfig, console: Optional[Console] = None) -> TrainResult:
    try:
        with quiet_run():
            return _run(cfg, console or Console(stderr=True))
    finally:
        _close_process_group()


def _close_process_group() -> None:
    """A run under torchrun / accelerate / deepspeed ends the process group it started: gloo's worker
    threads left to interpreter exit can abort a rank (SIGABRT, "terminate called without an active
    exception") after a finished run, and torch warns about an undestroyed group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _run(cfg: TrainConfig, console: Console) -> TrainResult:
    t0 = time.time()
    out = Path(cfg.train.output)
    records, eval_records = split_records(cfg, load_records(cfg))  # data errors before any model load
    ckpt = resume_checkpoint(cfg)
    check_resume(cfg, ckpt)
    args = training_arguments(cfg, has_eval=bool(eval_records))  # initialises torch.distributed under torchrun

    model, tokenizer = load_model_and_tokenizer(cfg)
    gist = setup_gist(cfg, tokenizer, model) if cfg.uses_gist else None
    make = gist.make if gist else sample_builder(tokenizer, sft_gist_config(cfg))
    # label smoothing shifts `labels` itself (it would ignore shift_labels): rows stay in order then
    reorder = resolve_reorder(cfg.data.reorder, args.device, cfg.uses_gist or cfg.data.packing) \
        and not args.label_smoothing_factor
    samples, stats = build_samples(records, tokenizer, cfg, make, reorder=reorder)  # eval rows stay in order
    eval_ds = SampleDataset(build_samples(eval_records, tokenizer, cfg, make)[0]) if eval_records else None
    if stats.label_tokens == 0:
        raise ThinkcError("no trainable tokens: every label is masked (check data.max_length)")
    if args.process_index == 0:
        prepare_output(cfg, ckpt, console, f"[bold]{cfg.method}[/]: {stats.records} records -> {stats.samples} rows, "
                       f"{stats.tokens:,} tokens ({stats.label_tokens:,} trained), {stats.truncated} truncated"
                       + (f", {len(eval_ds)} eval rows" if eval_ds is not None else ""))
    if cfg.uses_gist or cfg.data.packing:
        enable_gist_attention(model)  # BlockMask -> flex on GPU; dense masks -> SDPA
    if cfg.lora.enabled:
        model = apply_lora(cfg, model, gist.new_token_ids if gist else [])
    if cfg.train.gradient_checkpointing:
        model.config.use_cache = False

    align_special_tokens(model, tokenizer)
    timer = StepTimerCallback()
    trainer = build_trainer(cfg, model, args, tokenizer, gist, (SampleDataset(samples), eval_ds), console, timer)
    n_log = len(read_log(out / LOG_FILE))
    timer.start()
    trainer.train(resume_from_checkpoint=ckpt)
    evaluated = final_eval(trainer) if eval_ds is not None else {}
    final = save_final(cfg, trainer, tokenizer, gist)

    log = [r for r in read_log(out / LOG_FILE)[n_log:] if "loss" in r]
    return TrainResult(final_dir=final, global_step=trainer.state.global_step, resumed_from=ckpt,
                       first_loss=log[0]["loss"] if log else None, last_loss=log[-1]["loss"] if log else None,
                       losses_logged=len(log), samples=stats.samples, tokens=stats.tokens, truncated=stats.truncated,
                       seconds=time.time() - t0, startup_s=timer.startup_s, first_step_s=timer.first_step_s,
                       steady_s_per_step=timer.steady_s_per_step, eval=evaluated)


def final_eval(trainer: Trainer) -> dict:
    """Evaluate at the end unless the last step was just evaluated; the eval_* metrics."""
    last = next((r for r in reversed(trainer.state.log_history) if "eval_loss" in r), None)
    if last is None or last.get("step") != trainer.state.global_step:
        last = trainer.evaluate()
    return {k: v for k, v in last.items() if k.startswith("eval_") and "runtime" not in k and "per_second" not in k}


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
        follow_umask(tmp)
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
