"""`thinkc train`: fine-tune with sft / lightthinker / anllm (config file + overrides)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer


TRAIN_HELP = """Fine-tune a model: sft (plain chat; also CTS-compressed data), lightthinker (gist tokens +
gist attention) or anllm. Multi-GPU: launch with torchrun / deepspeed / accelerate (docs/training.md).

Paths in a recipe file: a relative path is looked up next to the recipe first (what ships with
it: gist configs, DeepSpeed JSON, data kept beside it), then in the current folder (what earlier
commands wrote: runs/<name>/final, data/train.jsonl). train.output and paths given as flags are
relative to the current folder. A recipe that continues another one's model names it
(model.recipe); when that model is missing, the error says which `thinkc train` to run first.
Stage 1 of the tiny recipes (tiny_base, then tiny_base_2 .. tiny_base_6) comes before the rest;
--with-base trains what is missing of it.

Examples:

  thinkc train tiny_base

  thinkc train tiny_sft --with-base

  thinkc train tiny_lightthinker --check
"""


def register(app: typer.Typer) -> None:
    app.command("train", help=TRAIN_HELP)(train)


def train(
    config: Optional[Path] = typer.Argument(None, help="Training config (YAML/JSON) or a shipped recipe name "
                                                       "(tiny_sft, tiny_lightthinker, ...: configs/train/<name>.yaml). "
                                                       "Relative paths inside it resolve next to it first, then in the "
                                                       "current folder."),
    set_: List[str] = typer.Option([], "--set", help="Override any config key: --set train.lr=2e-5 (repeatable)."),
    method: Optional[str] = typer.Option(None, "--method", help="sft | lightthinker | anllm."),
    model: Optional[str] = typer.Option(None, "--model", help="Base model: local folder, smollm2, a shipped checkpoint, or `tiny` (random init)."),
    data: Optional[str] = typer.Option(None, "--data", help="Training records JSONL, or `synth` for the synthetic task."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Run folder (checkpoints, train_log.jsonl, final/)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Training epochs."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimiser steps (overrides epochs)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Rows per device per step."),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", help="Gradient accumulation steps."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Max tokens per row (longer samples are truncated)."),
    lora: Optional[bool] = typer.Option(None, "--lora/--no-lora", help="Train LoRA adapters instead of all weights."),
    lora_r: Optional[int] = typer.Option(None, "--lora-r", help="LoRA rank."),
    packing: Optional[bool] = typer.Option(None, "--packing/--no-packing", help="Pack several samples per row (document-masked)."),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing",
                                                          help="Recompute activations in backward (less memory)."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="bf16 mixed precision (default: on GPUs that support it)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="auto (last checkpoint in --output; the default), never, or a checkpoint folder."),
    deepspeed: Optional[str] = typer.Option(None, "--deepspeed", help="zero2 | zero3 | a DeepSpeed JSON config."),
    gist_config: Optional[str] = typer.Option(None, "--gist-config", help="Gist layout config name or file (lightthinker/anllm)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (model init, data order)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda."),
    eval_data: Optional[str] = typer.Option(None, "--eval-data", help="Eval records JSONL (or `synth`): eval loss, and for lightthinker the <w> recall."),
    report_to: Optional[str] = typer.Option(None, "--report-to", help="Log metrics to none | tensorboard | wandb (comma-separated for several)."),
    check: bool = typer.Option(False, "--check", help="Validate the config, data and base model, print the resolved "
                                                      "config, and exit."),
    with_base: bool = typer.Option(False, "--with-base", help="First train the recipes this one continues (model.recipe) "
                                                              "whose final model is missing, oldest first, each as its "
                                                              "file says (flags apply to this recipe only)."),
):
    from rich.console import Console

    from thinkc.train.config import load_config

    if max_steps is not None and max_steps < 1:
        from thinkc.errors import ThinkcError

        raise ThinkcError(f"--max-steps: must be >= 1, got {max_steps} (leave it out to train for --epochs)")
    over = overrides(method=method, model=model, lora=lora, lora_r=lora_r, flags=[
        ("data.train", data), ("train.output", output), ("train.epochs", epochs), ("train.max_steps", max_steps),
        ("train.lr", lr), ("train.batch_size", batch_size), ("train.grad_accum", grad_accum),
        ("data.max_length", max_length), ("data.packing", packing),
        ("train.gradient_checkpointing", gradient_checkpointing), ("train.bf16", bf16), ("train.resume", resume),
        ("train.deepspeed", deepspeed), ("gist.config", gist_config), ("train.seed", seed),
        ("train.device", device), ("data.eval", eval_data), ("train.report_to", report_to)])
    cfg = load_config(config, sets=set_, overrides=over, check_model=not with_base)
    console = Console()
    pending = bases(cfg, check, console) if with_base else []
    if check:
        return print_check(cfg, console, tiles=not pending)  # tile shares need the base's tokenizer

    from thinkc.train import run_training

    r = run_training(cfg, console=Console(stderr=True))
    if os.environ.get("RANK", "0") == "0" and r.final_dir.exists():  # one summary under torchrun
        console.print(f"[green]done[/]: {summary(r)}; model in {r.final_dir}", highlight=False)


def bases(cfg, check: bool, console) -> list[str]:
    """--with-base: train the missing base recipes, oldest first, and check the base model is there
    now; with --check, only validate them and return the ones still to train."""
    from rich.console import Console

    from thinkc.train.chain import check_base, missing_bases, plan, train_bases

    chain = missing_bases(cfg.model.name, cfg.model.recipe) if cfg.model.init == "pretrained" else []
    if check and chain:
        plan(chain)
        console.print(f"--with-base trains {', '.join(chain)} first (their configs check out)", highlight=False)
        return chain
    if chain:
        train_bases(chain, Console(stderr=True))
    if cfg.model.init == "pretrained":
        check_base(cfg.model.name, cfg.model.recipe)
    return []


def print_check(cfg, console, tiles: bool = True) -> None:
    """--check: the resolved config and the record counts (the data is read, no model loaded)."""
    import yaml

    from thinkc.train.dataset import load_records
    from thinkc.train.evaluation import split_records

    from thinkc.train.arguments import check_arguments

    check_arguments(cfg)  # train.extra_args names, report_to installed (no TrainingArguments built)
    records, held = split_records(cfg, load_records(cfg))
    console.print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), highlight=False)
    console.print(f"[green]ok[/]: {len(records)} records" + (f", {len(held)} eval records" if held else ""),
                  highlight=False)
    if tiles:
        print_tile_shares(cfg, records, console)


def print_tile_shares(cfg, records, console) -> None:
    """--check: attention tiles a block-sparse kernel computes, as laid out vs physically reordered."""
    from thinkc.train.dataset import tile_shares

    t = tile_shares(cfg, records)
    if t is not None:
        console.print(f"attention tiles computed ({t['block']}-token tiles, first {t['rows']} rows): "
                      f"{t['as_laid_out']:.1%} as laid out, {t['reordered']:.1%} reordered "
                      f"({t['every_doc_reordered']:.1%} with every document reordered), {t['causal']:.1%} "
                      f"plain causal; data.reorder={cfg.data.reorder} (auto: reordered on CUDA, where the "
                      "mask is a BlockMask)", highlight=False)


def overrides(method, model, lora, lora_r, flags: list) -> dict:
    """The explicit flags as a nested config dict (a flag left out changes nothing)."""
    over: dict = {}

    def put(path: str, value):
        if value is None:
            return
        d = over
        *head, last = path.split(".")
        for h in head:
            d = d.setdefault(h, {})
        d[last] = value

    put("method", method)
    if model == "tiny":
        put("model.init", "tiny")
    elif model is not None:
        put("model.name", model)
        put("model.init", "pretrained")
        over["model"]["recipe"] = None  # another model: the recipe's base chain no longer applies
    put("lora.enabled", True if lora_r is not None and lora is None else lora)
    put("lora.r", lora_r)
    for key, value in flags:
        put(key, value)
    return over


def summary(r) -> str:
    """`12 steps, loss 6.021 -> 2.310 (7 logged), first step 3.1 s then 0.412 s/step, eval_loss 2.4`."""
    parts = [f"{r.global_step} steps"]
    if r.first_loss is None:
        parts.append("no loss logged")
    elif r.losses_logged == 1:
        parts.append(f"loss {r.first_loss:.3f} (1 step logged)")
    else:
        parts.append(f"loss {r.first_loss:.3f} -> {r.last_loss:.3f} ({r.losses_logged} logged)")
    if r.startup_s is not None and r.startup_s >= 1:
        parts.append(f"start-up {r.startup_s:.1f} s")
    if r.first_step_s is not None:
        steady = f" then {r.steady_s_per_step:.3f} s/step" if r.steady_s_per_step is not None else ""
        parts.append(f"first step {r.first_step_s:.2f} s{steady}")
    for k, v in r.eval.items():
        if isinstance(v, float) and v == v:
            parts.append(f"{k} {v:.4g}")
    return ", ".join(parts)
