"""`thinkc bench ...`: one command per performance target. Each prints a table and writes JSON
with the environment (device, torch, transformers, CUDA). Warm-up runs are excluded and times are
medians over repeats; everything in one table is measured side by side in one run."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from thinkc.errors import ThinkcError

app = typer.Typer(help="Benchmarks (tables + JSON). Use small sizes on CPU; the defaults target a GPU.",
                  no_args_is_help=True)

DEVICE = typer.Option(None, help="cpu or cuda (default: cuda when available).")
JSON = typer.Option(None, help="Where to write the JSON results (default: bench/<name>-<device>.json in "
                                "$THINKC_HOME, else ~/.cache/thinkc).")
REPEATS = typer.Option(5, min=1, help="Timed repeats (median is reported).")
WARMUP = typer.Option(1, min=0, help="Untimed warm-up runs.")


def _device(device: Optional[str]) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ThinkcError("--device cuda asked for, but torch sees no CUDA device")
    return device


# -L defaults: the GPU sizes; on a CPU they take minutes (the dense reference build, flex attention
# without kernels), so a CPU run without -L uses small ones and says so
LENGTHS = {"mask": ([4096, 8192, 16384, 32768], [1024, 2048, 4096]), "attention": ([4096, 8192, 16384], [1024])}


def _lengths(name: str, lengths: List[int], device: str) -> tuple[int, ...]:
    if lengths:
        return tuple(lengths)
    gpu, cpu = LENGTHS[name]
    if device.startswith("cuda"):
        return tuple(gpu)
    typer.echo(f"cpu: lengths {', '.join(map(str, cpu))} (the GPU default, {gpu[0]} to {gpu[-1]}, takes minutes on a "
               "CPU; pass -L to choose)")
    return tuple(cpu)


def _finish(name: str, device: str, rows: list[dict], json_path: Optional[Path]) -> None:
    from thinkc.bench.common import environment, print_table, write_results

    env = environment(device)
    print_table(f"thinkc bench {name} — {env['device_name']} ({device}), torch {env['torch']}", rows)
    if json_path is None:  # not into the current folder: next to thinkc's other caches
        from thinkc.home import thinkc_home

        json_path = thinkc_home() / "bench" / f"{name}-{device.split(':')[0]}.json"
    path = json_path
    write_results(path, name, env, rows)
    typer.echo(f"wrote {path}")


@app.command()
def mask(lengths: List[int] = typer.Option([], "--length", "-L", show_default=False, min=1,
                                           help="Sequence lengths (default: 4096 8192 16384 32768 on CUDA, "
                                                "1024 2048 4096 on CPU)."),
         block_size: int = typer.Option(128, min=1, help="BlockMask tile size."),
         device: Optional[str] = DEVICE, repeats: int = REPEATS, warmup: int = WARMUP,
         json: Optional[Path] = JSON):
    """BlockMask build: thinkc op vs torch create_block_mask(mask_mod) vs the dense reference build."""
    from thinkc.bench.mask import run_mask_bench

    dev = _device(device)
    rows = run_mask_bench(_lengths("mask", lengths, dev), device=dev, block_size=block_size, repeats=repeats,
                          warmup=warmup)
    _finish("mask", dev, rows, json)


@app.command()
def attention(lengths: List[int] = typer.Option([], "--length", "-L", show_default=False, min=1,
                                                help="Sequence lengths (default: 4096 8192 16384 on CUDA, 1024 "
                                                     "on CPU)."),
              q_heads: int = typer.Option(28, min=1, help="Query heads (7B: 28)."),
              kv_heads: int = typer.Option(4, min=1, help="KV heads (7B: 4)."),
              head_dim: int = typer.Option(128, min=1, help="Head dim (7B: 128)."),
              backward: Optional[bool] = typer.Option(None, help="Include backward (default: on CUDA only; flex has no CPU backward)."),
              reorder: bool = typer.Option(True, help="Also report tiles computed with [prompt|cache|thoughts] reordering."),
              device: Optional[str] = DEVICE, repeats: int = REPEATS, warmup: int = typer.Option(2, min=0, help="Untimed warm-up runs."),
              json: Optional[Path] = JSON):
    """Gist attention for one 7B-shaped layer: FlexAttention + thinkc BlockMask vs SDPA + dense mask."""
    import torch

    from thinkc.bench.attention import reorder_study, run_attention_bench

    dev = _device(device)
    dtype = torch.bfloat16 if dev.startswith("cuda") else torch.float32
    rows = run_attention_bench(_lengths("attention", lengths, dev), device=dev, q_heads=q_heads, kv_heads=kv_heads,
                               head_dim=head_dim, dtype=dtype, backward=backward, repeats=repeats, warmup=warmup)
    if reorder:
        from thinkc.bench.mask import synthetic_layout

        for row in rows:
            if row["L"] <= 8192:  # the study builds the dense mask on the CPU
                row.update(reorder_study(synthetic_layout(row["L"], seed=0).batched()))
    _finish("attention", dev, rows, json)


@app.command()
def compact(batch: int = typer.Option(8, min=1, help="Rows."), layers: int = typer.Option(28, min=1, help="Layers (7B: 28)."),
            kv_heads: int = typer.Option(4, min=1, help="KV heads."), head_dim: int = typer.Option(128, min=1, help="Head dim."),
            tokens: int = typer.Option(8192, min=1, help="Cached tokens per row."),
            drop_fraction: float = typer.Option(0.5, min=0.0, max=1.0, help="Share of each row's tokens dropped."),
            device: Optional[str] = DEVICE, repeats: int = REPEATS, warmup: int = WARMUP,
            json: Optional[Path] = JSON):
    """In-place KV compaction (thinkc op) vs torch gather + copy: time and GB/s (bytes read + written)."""
    import torch

    from thinkc.bench.compact import run_compact_bench

    dev = _device(device)
    dtype = torch.bfloat16
    rows = run_compact_bench(batch=batch, layers=layers, kv_heads=kv_heads, head_dim=head_dim, tokens=tokens,
                             dtype=dtype, device=dev, drop_fraction=drop_fraction, repeats=repeats, warmup=warmup)
    _finish("compact", dev, rows, json)


@app.command()
def decode(model: str = typer.Option("smollm2", help="Model: local folder, smollm2, tiny-lightthinker, tiny-sft, "
                                                     "'tiny' (random tiny) or 'random-7b' (GPU)."),
           methods: List[str] = typer.Option(["vanilla", "lightthinker", "h2o"], "--method", help="thinkc cache policies."),
           baselines: Optional[List[str]] = typer.Option(None, "--baseline", help="hf-dynamic, hf-static, forward-loop "
                                                         "(default: all on CUDA; hf-dynamic and forward-loop on CPU)."),
           batch_sizes: List[int] = typer.Option([1, 8], "--batch-size", "-b", min=1, help="Batch sizes."),
           max_new_tokens: int = typer.Option(256, "--new-tokens", "--max-new-tokens", min=1,
                                              help="Tokens generated per row (up to 4k: the long-generation regime)."),
           prompt_len: int = typer.Option(128, min=1, help="Prompt tokens (random prompts)."),
           prompts: str = typer.Option("random", help="random | synth (the synthetic task's test questions)."),
           compress_every: int = typer.Option(64, min=0, help="Forced compression period for lightthinker on models "
                                                            "not trained for gists (0: none)."),
           compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="Also time the compiled step "
                                                  "(CUDA graphs; default: on CUDA)."),
           repeats: int = typer.Option(1, min=1, help="Timed repeats, entry order rotated (median is reported)."),
           eos: bool = typer.Option(False, "--eos/--no-eos", help="Rows stop at EOS (up to --new-tokens; synth "
                                    "prompts, thinkc entries only)."),
           vanilla_model: Optional[str] = typer.Option(None, help="Also decode vanilla with this checkpoint on the "
                                                       "same task prompts (synth), e.g. tiny-sft."),
           kv_budget: Optional[int] = typer.Option(None, "--kv-budget", min=16,
                                                   help="Also decode each method on a KV pool of this many tokens "
                                                        "(pages of 128 on CUDA, 16 on CPU)."),
           device: Optional[str] = DEVICE,
           json: Optional[Path] = JSON):
    """Decode tokens/s side by side: thinkc (vanilla, lightthinker, h2o) vs HF generate (dynamic, static),
    the raw forward-loop floor and the bandwidth roofline (CUDA)."""
    from thinkc.bench.decode import BASELINES, run_decode_bench

    if prompts not in ("random", "synth"):
        raise ThinkcError(f"--prompts {prompts!r}: choose random or synth")
    if (eos or vanilla_model) and prompts != "synth":
        raise ThinkcError("--eos and --vanilla-model need --prompts synth")
    bad = [b for b in baselines or () if b not in BASELINES]
    if bad:
        raise ThinkcError(f"--baseline {bad[0]!r}: choose from {', '.join(BASELINES)}")
    dev = _device(device)
    if model == "random-7b" and not dev.startswith("cuda"):
        raise ThinkcError("--model random-7b is a GPU benchmark (a 7B model in float32 needs ~30 GB on CPU); "
                          "use --device cuda, or a small model on CPU")
    rows = run_decode_bench(model, methods=tuple(methods), batch_sizes=tuple(batch_sizes),
                            max_new_tokens=max_new_tokens, compress_every=compress_every, device=dev,
                            prompt_len=prompt_len, baselines=baselines, prompts=prompts, repeats=repeats,
                            compile=compile, eos=eos, vanilla_model=vanilla_model, kv_budget=kv_budget)
    _finish("decode", dev, rows, json)


@app.command()
def batching(model: str = typer.Option("tiny-sft", help="Model (a checkpoint with a tokenizer)."),
             n: int = typer.Option(200, min=1, help="Synthetic test problems."),
             batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Decode slots."),
             max_new_tokens: int = typer.Option(512, "--new-tokens", "--max-new-tokens", min=1, help="Generation limit."),
             method: str = typer.Option("vanilla", help="Cache policy."),
             repeats: int = typer.Option(1, min=1, help="Timed repeats, order alternating (median is reported)."),
             device: Optional[str] = DEVICE,
             json: Optional[Path] = JSON):
    """thinkc infer's scheduling: fixed batches vs continuous batching on the same problems (same tokens)."""
    from thinkc.bench.decode import run_batching_bench

    dev = _device(device)
    rows = run_batching_bench(model, n=n, batch_size=batch_size, max_new_tokens=max_new_tokens, method=method,
                              device=dev, repeats=repeats)
    _finish("batching", dev, rows, json)


@app.command()
def cts(model: str = typer.Option("smollm2", help="Reference model: local folder, smollm2 or a shipped tiny name."),
        n: int = typer.Option(16, min=1, help="Synthetic records scored."),
        backends: List[str] = typer.Option(["native", "llmlingua"], "--backend", help="Scoring backends."),
        batch_size: int = typer.Option(8, min=1, help="Records per forward (native)."),
        device: Optional[str] = DEVICE,
        json: Optional[Path] = JSON):
    """CTS scoring throughput (tokens/s) and achieved vs target ratio: native vs llmlingua."""
    from thinkc.bench.cts import run_cts_bench
    from thinkc.data.synth import synth_records

    dev = _device(device)
    rows = run_cts_bench(model, [r.to_dict() for r in synth_records(n, seed=0)], backends=tuple(backends), device=dev,
                         batch_size=batch_size)
    _finish("cts", dev, rows, json)


@app.command()
def serve(methods: List[str] = typer.Option(["vanilla", "lightthinker", "h2o"], "--method",
                                            help="Cache policies (vanilla and the training-free ones decode with "
                                                 "tiny-sft, lightthinker with tiny-lightthinker)."),
          n: int = typer.Option(96, min=1, help="Requests: the synthetic task's test questions."),
          rows: int = typer.Option(64, "--rows", "-b", min=1, help="Most rows in flight."),
          kv_budget: int = typer.Option(4800, "--kv-budget", min=16, help="KV tokens of the fixed pool, all rows."),
          max_new_tokens: int = typer.Option(1024, "--max-new-tokens", min=1, help="Generation limit per request."),
          page_size: int = typer.Option(16, min=1, help="Tokens per KV page."),
          modes: List[str] = typer.Option(["pool", "ample", "static"], "--mode",
                                          help="pool: the --kv-budget pool; ample: a pool nothing waits for (the "
                                               "pool's overhead); static: no pool, every row at full capacity."),
          repeats: int = typer.Option(1, min=1, help="Repeats, order rotated (medians)."),
          plot: Optional[Path] = typer.Option(None, help="PNG of rows in flight over time (default: beside the JSON)."),
          urls: List[str] = typer.Option([], "--url", show_default=False,
                                         help="Measure running OpenAI-compatible servers instead (thinkc serve, "
                                              "vLLM, ...; repeatable, one row each): --n requests from --clients "
                                              "concurrent clients; tasks/s, tokens/s, p50 / p95 latency."),
          clients: int = typer.Option(32, min=1, help="With --url: concurrent closed-loop clients."),
          device: Optional[str] = DEVICE, json: Optional[Path] = JSON):
    """Serving under a fixed KV pool (the R-KV stress protocol): tokens/s, tasks/s, rows in flight over time,
    preemptions, and the pool's overhead against the engine without a pool; greedy texts checked equal.
    With --url, the same requests against running servers (start each with `thinkc serve --kv-budget N`)."""
    from rich.progress import Progress

    from thinkc.bench.serve import MODES, plot_rows_in_flight, run_serve_bench
    from thinkc.infer.policies import METHODS

    if urls:
        return _serve_urls(urls, n, clients, max_new_tokens, repeats, json)
    dev = _device(device)
    for m in methods:
        if m not in METHODS:
            raise ThinkcError(f"--method {m!r}: choose among {', '.join(METHODS)}")
    for m in modes:
        if m not in MODES:
            raise ThinkcError(f"--mode {m!r}: choose among {', '.join(MODES)}")
    with Progress(transient=True) as bar:
        task = bar.add_task("bench serve", total=len(methods) * len(modes) * repeats)
        table, traces = run_serve_bench(list(methods), n=n, rows=rows, kv_budget=kv_budget, max_new=max_new_tokens,
                                        page_size=page_size, repeats=repeats, device=dev, modes=tuple(modes),
                                        progress=lambda: bar.advance(task))
    _finish("serve", dev, table, json)
    if traces:
        from thinkc.home import thinkc_home

        out = plot or (json.with_suffix(".png") if json else thinkc_home() / "bench" / f"serve-{dev.split(':')[0]}.png")
        typer.echo(f"wrote {plot_rows_in_flight(traces, out, kv_budget)}")


def _serve_urls(urls: List[str], n: int, clients: int, max_new_tokens: int, repeats: int,
                json: Optional[Path]) -> None:
    """`bench serve --url`: each server in turn (order rotated per repeat), medians over repeats."""
    from thinkc.bench.serve_client import median_summary, run_clients
    from thinkc.data.synth import synth_splits

    questions = [r.question for r in synth_splits(1, n, seed=0)[1]]
    runs: dict[str, list[dict]] = {u: [] for u in urls}
    for rep in range(repeats):
        k = rep % len(urls)
        for u in urls[k:] + urls[:k]:
            typer.echo(f"{u}: {n} requests from {clients} clients (repeat {rep + 1}/{repeats})", err=True)
            runs[u].append(run_clients(u, questions, clients=clients, max_tokens=max_new_tokens)[1])
    _finish("serve-url", "cpu", [median_summary(runs[u]) for u in urls], json)
