"""`thinkc infer`: generate with a cache policy (vanilla, LightThinker, AnLLM, H2O, SepLLM,
StreamingLLM), one JSON line per sample with the text, the answer and KV measurements."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from thinkc.errors import ThinkcError

METHODS_HELP = "vanilla | lightthinker | anllm | h2o | sepllm | streamingllm | snapkv | rkv"


def _parse_budget(text: Optional[str]):
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ThinkcError(f"--budget {text!r}: give a key count (e.g. 512) or a share in (0, 1) (e.g. 0.5)") from None
    if 0 < value < 1:
        return value
    if value >= 2 and value == int(value):
        return int(value)
    raise ThinkcError(f"--budget {text!r}: give a key count >= 2 (e.g. 512) or a share in (0, 1) (e.g. 0.5)")


def _print_summary(console, s: dict, method: str, label: str, stats, output) -> None:
    from thinkc.console import FitTable
    from thinkc.infer.shard import world

    headers = ("method", "samples", "accuracy", "mean peak KV", "mean dependency", "mean tokens", "compressions")
    short = {"samples": "n", "accuracy": "acc", "mean peak KV": "peak KV", "mean dependency": "dep",
             "mean tokens": "tokens", "compressions": "compr"}
    acc = f"{s['accuracy']:.1%}" if "accuracy" in s else "-"
    row = (method, str(s["samples"]), acc, f"{s['mean_peak_kv']:.1f}", f"{s['mean_dependency']:.0f}",
           f"{s['mean_generated_tokens']:.1f}", f"{s['mean_compressions']:.1f}")
    console.print(FitTable(f"thinkc infer — {label}", headers, [row], short=short))
    if output is not None and stats.samples and world()[0] == 0:  # under torchrun: rank 0's share stands for all
        from thinkc.eval.metrics import write_run_totals

        write_run_totals(output, stats.wall_s, stats.generated_tokens, stats.samples)  # what eval reports as time
    if stats.samples:
        console.print(f"this run: {stats.samples} samples, {stats.generated_tokens} tokens in {stats.wall_s:.1f} s "
                      f"({stats.tokens_per_s:.1f} tokens/s); per-sample latency is metrics.wall_s", highlight=False)


def _print_answer(console, row: dict, max_new_tokens: int) -> None:
    """--prompt: the generated text and the answer found in it."""
    from rich.rule import Rule
    from rich.text import Text

    console.print(Rule("generated"))
    console.print(Text(row["text"].strip() or "(no text)"))
    cut = row["metrics"].get("generated_tokens", 0) >= max_new_tokens
    answer = f"answer: {row['pred']}" if row.get("pred") else "answer: (none found in the text)"
    console.print(Text(answer + (f" (the text stopped at --max-new-tokens {max_new_tokens})" if cut else ""),
                       style="bold"))


def _engine_options(device, page_size, dtype, compile, pool_attention, kv_budget):
    """(device, page size, dtype, compile) with the device's defaults: bfloat16, CUDA graphs and
    128-token pages on CUDA; float32, eager and 16-token pages on CPU. Bad values: one line."""
    import torch

    from thinkc.infer.pool import ATTENTION_MODES

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    on_cuda = device.startswith("cuda")
    page_size = page_size or (128 if on_cuda else 16)
    if pool_attention is not None and pool_attention not in ATTENTION_MODES:
        raise ThinkcError(f"--pool-attention {pool_attention!r}: choose one of {', '.join(ATTENTION_MODES)}")
    if kv_budget is not None and kv_budget < page_size:
        raise ThinkcError(f"--kv-budget {kv_budget}: the pool needs at least one page ({page_size} tokens)")
    return device, page_size, dtype or ("bfloat16" if on_cuda else None), on_cuda if compile is None else compile


def _print_engine(console, stats, settings, output) -> None:
    """The engine's line (rows in flight, KV held, preemptions, cold start) and `<output>.summary.json`."""
    from thinkc.infer.outputs import write_summary
    from thinkc.infer.shard import world

    s = stats.summary()
    pool = f"pool {s['kv_budget']:,} KV tokens" if settings.kv_budget else f"{s['kv_budget']:,} KV tokens reserved"
    cold = f", cold start {s['cold_start_s']:.1f} s" if s["cold_start_s"] is not None else ""
    console.print(f"engine: {pool}, peak {s['kv_peak']:,} in use, up to {s['max_rows_in_flight']} rows in flight, "
                  f"{s['preemptions']} preemptions, {s['forwards_per_token']:.2f} forwards per token{cold}",
                  highlight=False)
    if world()[0] == 0:
        console.print(f"wrote {write_summary(output, stats, settings)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("infer")(infer)


def infer(
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="JSONL of thinkc records or benchmark rows "
                                                                     "(MATH-500 / AIME / GPQA / GSM8K layouts)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="A single question instead of --input."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Output JSONL (appended as samples finish; re-running skips ids made "
                                               "with the same settings). Needed with --input; optional with "
                                               "--prompt, whose answer is printed."),
    method: str = typer.Option("lightthinker", "--method", "-m", help=f"Cache policy: {METHODS_HELP}."),
    model: Optional[str] = typer.Option(None, "--model", help="Local HF folder, 'smollm2', or a shipped tiny checkpoint "
                                                              "(default: tiny-lightthinker for gist methods, else tiny-sft)."),
    gist_config: Optional[str] = typer.Option(None, "--gist-config", help="Gist layout preset or file "
                                                                          "(default: the one saved with the model)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Most rows in flight: samples decoded "
                                                                       "together (continuous batching: a finished "
                                                                       "sample's slot takes the next one at once)."),
    kv_budget: Optional[int] = typer.Option(None, "--kv-budget", min=1,
                                            help="KV tokens for all rows together, in pages (a pool): rows are "
                                                 "admitted while pages are free and the youngest is swapped to host "
                                                 "memory when it runs dry, so a method that keeps fewer keys decodes "
                                                 "more rows at once. Tokens are the same under any budget. Default: "
                                                 "on CUDA what fits beside the weights (90% of free memory); on CPU "
                                                 "none (every row reserves its full length)."),
    page_size: Optional[int] = typer.Option(None, "--page-size", min=1,
                                            help="Tokens per KV page (with a pool). Default: 128 on CUDA (the "
                                                 "FlexAttention kernels' tile), 16 on CPU."),
    pool_attention: Optional[str] = typer.Option(None, "--pool-attention",
                                                 help="How attention reads the pool: flex (FlexAttention on the pages; "
                                                      "the CUDA default), kernel (thinkc's C++ op; the CPU default when "
                                                      "built) or gather (copy the rows' pages, then SDPA)."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile",
                                           help="Run the decode step under torch.compile (CUDA graphs on GPU). "
                                                "Default: on for CUDA, off on CPU. The cold start is printed."),
    max_new_tokens: int = typer.Option(1024, "--max-new-tokens", min=1, help="Generation limit per sample."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0, help="Nucleus sampling mass (with --temperature > 0)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (each sample has its own generator)."),
    budget: Optional[str] = typer.Option(None, "--budget", help="KV budget for h2o / sepllm / streamingllm: keys "
                                                                "per row (e.g. 512) or a share of the row's length so "
                                                                "far (e.g. 0.5, the default); snapkv / rkv: keys per "
                                                                "row only (default 1024)."),
    window: Optional[int] = typer.Option(None, "--window", min=1, help="Recent/local window for h2o (default budget/2) "
                                                                       "and sepllm (default 256); observation window "
                                                                       "of snapkv (default 32) and rkv (default 8)."),
    compress_every: Optional[int] = typer.Option(None, "--compress-every", min=1,
                                                 help="Force a gist compression every N generated tokens "
                                                      "(untrained models: measures the mechanics)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, bfloat16 or float16 (default: bfloat16 on "
                                                              "CUDA, float32 on CPU)."),
):
    """Generate answers with in-place KV compaction and report accuracy, peak KV and dependency."""
    from rich.console import Console

    from thinkc.infer.policies import METHODS
    from thinkc.infer.run import load_inputs

    if method not in METHODS:
        raise ThinkcError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    budget = _parse_budget(budget)
    device, page_size, dtype, compile = _engine_options(device, page_size, dtype, compile, pool_attention, kv_budget)
    console = Console()
    if input is not None and output is None:
        raise ThinkcError("--output is required with --input (the JSONL the samples are written to)")
    if input is not None and output.exists() and output.resolve() == input.resolve():
        raise ThinkcError(f"--output {output} is the input file: choose another output")
    records = load_inputs(input, prompt)
    o = dict(method=method, model=model, gist_config=gist_config, budget=budget, window=window, device=device,
             dtype=dtype, batch_size=batch_size, max_new_tokens=max_new_tokens, temperature=temperature,
             top_p=top_p, seed=seed, compress_every=compress_every, show_answer=prompt is not None,
             kv_budget=kv_budget, page_size=page_size, compile=compile, pool_attention=pool_attention)
    if output is None:  # --prompt alone: decode into a scratch file, print the answer
        import tempfile

        with tempfile.TemporaryDirectory(prefix="thinkc-infer-") as scratch:
            return _infer(console, records, Path(scratch) / "prompt.jsonl", o, keep=False)
    return _infer(console, records, output, o, keep=True)


def _infer(console, records: list[dict], output: Path, o: dict, keep: bool) -> None:
    """Decode `records` into `output` with a progress bar; the summary, and the answer of a --prompt."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from thinkc.infer.pool import default_kv_budget
    from thinkc.infer.run import (InferSettings, RunStats, check_resumable, prepare, read_done, run_inference,
                                  summarize)
    from thinkc.infer.sampling import SamplingConfig

    method = o["method"]
    done = read_done(output)
    skipped = sum(str(r["id"]) in done for r in records)
    with console.status(f"loading {o['model'] or 'default model'}"):
        mdl, tok, policy, build, label = prepare(method, o["model"], o["gist_config"], o["budget"], o["window"],
                                                 o["device"], o["dtype"])
    extra = {k: o[k] for k in ("budget", "window", "gist_config") if o[k] is not None}
    settings = InferSettings(method=method, model_label=label, batch_size=o["batch_size"],
                             max_new_tokens=o["max_new_tokens"], compress_every=o["compress_every"],
                             sampling=SamplingConfig(o["temperature"], o["top_p"], o["seed"]), extra=extra,
                             kv_budget=o["kv_budget"] or default_kv_budget(mdl, o["page_size"]),
                             page_size=o["page_size"], compile=o["compile"], attention=o["pool_attention"])
    check_resumable(done, settings, output)
    if skipped:
        console.print(f"resuming: {skipped} of {len(records)} samples already in {output}", highlight=False)

    tokens = {"n": 0}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"{method}", total=len(records), completed=skipped, tps="-")
        t0 = progress.get_time()

        def on_tokens(n):
            tokens["n"] += n
            dt = progress.get_time() - t0
            progress.update(task, tps=f"{tokens['n'] / dt:.1f}" if dt > 0 else "-")

        stats = RunStats()
        rows = run_inference(mdl, tok, records, policy, settings, build, output, on_tokens=on_tokens,
                             on_sample=lambda row: progress.advance(task), stats=stats)

    _print_summary(console, summarize(rows), method, label, stats, output if keep else None)
    if keep and stats.samples:
        _print_engine(console, stats, settings, output)
    if o["show_answer"]:
        _print_answer(console, rows[0], o["max_new_tokens"])
    if keep:
        console.print(f"wrote {output}", highlight=False)
