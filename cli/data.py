"""`thinkc data ...`: synthesise, import, export and inspect reasoning records."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Reasoning data: synthesise, import public layouts, export for trainers, stats.",
                  no_args_is_help=True)


@app.command()
def synth(
    output: Path = typer.Option(..., "--output", "-o", help="Train records JSONL to write."),
    n: int = typer.Option(1000, "--n", "-n", help="Number of training records (10 to 100k is typical)."),
    n_test: int = typer.Option(0, "--n-test", help="Also write this many test records (no question shared with train)."),
    test_output: Optional[Path] = typer.Option(None, help="Test records JSONL (default: <output stem>.test.jsonl)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same records."),
    min_steps: int = typer.Option(3, help="Fewest arithmetic operations per problem."),
    max_steps: int = typer.Option(4, help="Most arithmetic operations per problem."),
    filler: float = typer.Option(0.4, help="Share of filler thoughts (re-checks, 'Wait,', 'Hmm') in [0, 1)."),
    max_value: Optional[int] = typer.Option(None, help="Largest starting amount and +/- operand "
                                                       "(default: 99 for r1, 100 for short)."),
    style: str = typer.Option("r1", help="r1: every step worked out column by column (40-200-token thoughts); "
                                         "short: one sentence per step."),
    max_factor: int = typer.Option(3, help="Largest multiplier in 'gets k times as many' steps (2-9)."),
):
    """Write the synthetic multi-step arithmetic set (R1-style thinking, \\boxed{} answers). The
    defaults are the task the shipped tiny checkpoints were trained on."""
    from rich.console import Console

    from thinkc.data.schema import write_records
    from thinkc.data.synth import synth_splits
    from thinkc.errors import ThinkcError
    from thinkc.io import same_file

    console = Console(soft_wrap=True)
    try:
        with console.status(f"synthesising {n + n_test:,} records"):
            train, test = synth_splits(n, n_test, seed, min_steps=min_steps, max_steps=max_steps, filler=filler,
                                       max_value=max_value, style=style, max_factor=max_factor)
    except ValueError as e:
        raise ThinkcError(str(e)) from None
    test_path = test_output or output.with_name(output.name.removesuffix(".jsonl") + ".test.jsonl")
    if n_test and same_file(test_path, output):
        raise ThinkcError(f"{test_path}: --test-output is also --output; the test records would overwrite "
                          "the training records (choose another --test-output)")
    write_records(output, train)
    console.print(f"wrote {len(train):,} records to {output}")
    if n_test:
        write_records(test_path, test)
        console.print(f"wrote {len(test):,} test records to {test_path}")


@app.command("import")
def import_(
    input: Path = typer.Argument(..., help="Source file: JSONL, JSON array or Parquet."),
    output: Path = typer.Option(..., "--output", "-o", help="thinkc records JSONL to write."),
    format: str = typer.Option("auto", "--format", "-f", help="auto | stratos | openr1 | messages | alpaca | thinkc."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip bad rows (and say how many) instead of stopping."),
):
    """Convert Bespoke-Stratos, OpenR1-Math, chat-messages or Alpaca data (including what `thinkc data
    export` writes, id and meta kept) to thinkc records."""
    from rich.console import Console

    from thinkc.data.importers import import_file
    from thinkc.data.schema import write_records
    from thinkc.io import refuse_input_as_output

    refuse_input_as_output(output, [input])
    records, skipped = import_file(input, format, skip_invalid=skip_invalid)
    write_records(output, records)
    Console(soft_wrap=True).print(f"imported {len(records):,} records to {output}" + (f", skipped {skipped:,} invalid" if skip_invalid else ""))


@app.command()
def export(
    input: Path = typer.Argument(..., help="thinkc records JSONL."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write."),
    format: str = typer.Option("messages", "--format", "-f", help="messages (JSONL, TRL/LLaMA-Factory) | alpaca (JSON)."),
    ratio_tag: bool = typer.Option(False, "--ratio-tag",
                                   help="Append '\\n<ratio>R</ratio>' to each prompt, R = the record's CTS keep ratio (1 if none)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip invalid records instead of stopping."),
):
    """Export records for a trainer: <think>thinking</think> then the answer as the assistant turn.
    Also writes LLaMA-Factory's dataset_info.json entry for the file beside it."""
    from rich.console import Console

    from thinkc.data.exporters import export_alpaca, export_messages, write_dataset_info
    from thinkc.data.schema import read_records_with_skips
    from thinkc.errors import ThinkcError
    from thinkc.io import refuse_input_as_output

    writers = {"messages": export_messages, "alpaca": export_alpaca}
    if format not in writers:
        raise ThinkcError(f"unknown export format {format!r} (choose messages or alpaca)")
    refuse_input_as_output(output, [input])
    records, skipped = read_records_with_skips(input, skip_invalid)
    n = writers[format](records, output, ratio_tag=ratio_tag)
    info = write_dataset_info(output, format)
    Console(soft_wrap=True).print(f"exported {n:,} records ({format}) to {output}" + (f", skipped {skipped:,} invalid" if skip_invalid else "")
                                  + f"; LLaMA-Factory entry in {info}", highlight=False)


@app.command()
def stats(
    input: Path = typer.Argument(..., help="thinkc records JSONL."),
    tokenizer: str = typer.Option("tiny", help="Tokenizer for lengths: 'tiny' (offline), smollm2, a shipped name or a local folder."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip invalid records instead of stopping."),
):
    """Count, token lengths of thinking and answer (percentiles), thoughts per record."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from thinkc.data.schema import read_records_with_skips
    from thinkc.data.stats import PERCENTILES, compute_stats, tokenizer_counter
    from thinkc.models.loading import load_tokenizer

    records, skipped = read_records_with_skips(input, skip_invalid)
    tok = load_tokenizer(tokenizer)
    with Progress(transient=True) as progress:
        task = progress.add_task("tokenizing", total=len(records))
        st = compute_stats(records, tokenizer_counter(tok), progress=lambda k: progress.advance(task, k))
    console = Console(soft_wrap=True)
    console.print(f"{input}: {st.count:,} records" + (f" ({skipped:,} skipped)" if skipped else "")
                  + f", tokenizer {tokenizer}")
    table = Table()
    table.add_column("")
    table.add_column("mean", justify="right")
    for p in PERCENTILES:
        table.add_column({0: "min", 100: "max"}.get(p, f"p{p}"), justify="right")
    table.add_column("total", justify="right")
    for label, d in (("thinking tokens", st.thinking_tokens), ("answer tokens", st.answer_tokens),
                     ("thoughts / record", st.thoughts)):
        table.add_row(label, f"{d.mean:,.1f}", *(f"{d.percentiles[p]:,.0f}" for p in PERCENTILES), f"{d.total:,}")
    console.print(table)


# `thinkc data cts` lives in its own module
from thinkc.cli import cts as _cts  # noqa: E402

_cts.register(app)
