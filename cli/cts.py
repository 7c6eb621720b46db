"""`thinkc data cts`: compress reasoning traces by conditional token selection (CTS).

Registered on the `thinkc data` sub-app by cli/data.py (`cts.register(app)`)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(data_app: typer.Typer) -> None:
    data_app.command("cts")(cts)
    data_app.command("cts-reference")(cts_reference)


def cts_reference(
    recipe: Path = typer.Argument(..., help="Reference recipe: a shipped name (tiny_cts_reference) or a YAML file; "
                                            "its relative paths resolve next to it, then in the current folder."),
    with_base: bool = typer.Option(False, "--with-base", help="First train the missing `thinkc train` recipes that "
                                                               "write its init model (init_recipe), oldest first."),
):
    """Train a CTS reference model on a held-out split, on the scorer's conditional and
    unconditional rows (thinkc.cts.reference), so it can use the answer it is conditioned on.
    A missing init model names the `thinkc train` recipe to run first (or use --with-base).
    """
    import json

    from rich.console import Console

    from thinkc.cts.reference import ReferenceRecipe, train_reference
    from thinkc.train.chain import check_base, missing_bases, train_bases

    rec = ReferenceRecipe.load(recipe)
    if with_base:
        train_bases(missing_bases(rec.init, rec.init_recipe), Console(stderr=True))
    check_base(rec.init, rec.init_recipe)
    summary = train_reference(rec)
    print(json.dumps(summary))


def cts(
    input: Path = typer.Option(..., "--input", "-i", help="Records JSONL (id, question, thinking, answer)."),
    output: str = typer.Option(..., "--output", "-o",
                               help="Output JSONL; one file per ratio: out.jsonl -> out.r0.5.jsonl, or a pattern with {ratio}."),
    reference_model: str = typer.Option(..., "--reference-model", "-m",
                                                  help="Reference model: local folder, 'smollm2' or a shipped tiny name "
                                                       "(llmlingua2: a local token-classification model folder)."),
    ratio: List[float] = typer.Option([0.5, 0.7], "--ratio", "-r",
                                      help="Keep ratio in (0, 1]; repeat for several (one scoring pass). Default: 0.5 and 0.7, "
                                           "the seed's and the paper's."),
    backend: str = typer.Option("native", help="native | unconditional | random (the control: id-seeded random "
                                "scores, no model) | llmlingua | llmlingua2."),
    batch_size: int = typer.Option(8, help="Sequences per forward (two per record for native)."),
    window: int = typer.Option(2048, help="Tokens per forward for long traces (KV-cached windows; 0 = one pass)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    dtype: str = typer.Option("float32", help="Reference model dtype: float32, bfloat16 or float16."),
    chunk_size: int = typer.Option(64, help="Records per checkpointed score chunk (resume granularity)."),
    shard: str = typer.Option("0/1", help="Score only shard i of n (i/n); outputs are then written by --merge."),
    merge: bool = typer.Option(False, "--merge", help="Write outputs from the score store of all shards (no scoring)."),
    scores: Optional[Path] = typer.Option(None, help="Score store folder (default: <output>.cts-<backend> next to the output)."),
    tokenizer: Optional[str] = typer.Option(None, help="Target tokenizer for token counts (needed by llmlingua2)."),
    force_keep_digits: bool = typer.Option(True, "--force-keep-digits/--no-keep-digits",
                                           help="Always keep tokens holding digits (on by default, as the seed's "
                                                "LLMLingua force_reserve_digit=True)."),
    force_keep_operators: bool = typer.Option(False, "--force-keep-operators", help="Always keep + - * / = < > ^ tokens."),
    force_keep_format: bool = typer.Option(False, "--force-keep-format", help="Always keep \\boxed and LaTeX commands, braces, $."),
    keep_first: int = typer.Option(0, help="Always keep the first K tokens of every thought."),
    keep_last: int = typer.Option(0, help="Always keep the last K tokens of every thought."),
    keep_thought_structure: bool = typer.Option(False, "--keep-thought-structure",
                                                help="Never delete a blank-line boundary between thoughts."),
):
    """Score every thinking token with a reference model (how much the answer tells about it) and
    keep the best ones at each ratio; the answer is never touched."""
    from thinkc.console import wide_console
    from thinkc.cts.pipeline import CtsJob, parse_shard, run
    from thinkc.cts.select import SelectOptions

    console = wide_console()
    job = CtsJob(input=input, output=output, ratios=list(ratio), backend=backend, reference=reference_model,
                 tokenizer=tokenizer, batch_size=batch_size, window=window or None, device=device, dtype=dtype,
                 chunk_size=chunk_size, shard=parse_shard(shard), merge=merge, scores=scores,
                 options=SelectOptions(force_keep_digits, force_keep_operators, force_keep_format,
                                       keep_first, keep_last, keep_thought_structure))
    rows = run(job, console=console)
    if not rows:
        console.print(f"shard {shard} scored; run again with --merge once every shard is done")
        return
    _print_rows(console, rows, f"CTS ({backend}, reference {reference_model})")


def _print_rows(console, rows: list[dict], title: str) -> None:
    """One line per ratio; the computation-vs-filler kept shares when the records mark their thoughts."""
    from thinkc.console import FitTable

    kinds = all("kept_share_gap" in r for r in rows)  # records mark computation vs filler thoughts
    cols = ("ratio", "records", "tokens before", "tokens after", "achieved")
    cols += ("kept in computation", "kept in filler", "gap (points)", "random scores' gap") if kinds else ()
    cells = []
    for r in rows:
        extra = (f"{r['compute_kept_share']:.1%}", f"{r['filler_kept_share']:.1%}",
                 f"{100 * r['kept_share_gap']:+.1f}", f"{100 * r['chance_gap']:+.1f}") if kinds else ()
        cells.append([f"{r['ratio']:g}", str(r["records"]), f"{r['tokens_before']:,}", f"{r['tokens_after']:,}",
                      f"{r['achieved']:.3f}", *extra, r["output"]])
    short = {"tokens before": "before", "tokens after": "after", "kept in computation": "kept comp.",
             "kept in filler": "kept filler", "gap (points)": "gap", "random scores' gap": "chance"}
    console.print(FitTable(title, cols + ("output",), cells, short=short, left=["output"]))
    over = sum(r["forced_over_budget"] for r in rows)
    if over:
        console.print(f"[yellow]{over} record(s) had more force-kept tokens than the budget (kept them all)[/]")
