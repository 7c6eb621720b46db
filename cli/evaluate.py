"""`thinkc eval`: score `thinkc infer` runs against reference answers and compare methods."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


def evaluate(
    runs: List[Path] = typer.Argument(..., help="Run JSONL files written by `thinkc infer` (one or several)."),
    reference: Optional[Path] = typer.Option(None, "--reference", "-r",
                                             help="Reference answers: thinkc records JSONL, or a local MATH-500 / "
                                                  "AIME / GPQA-Diamond / GSM8K file or folder (default: the gold "
                                                  "answers `thinkc infer` copied into the runs)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the per-method summary as JSON here."),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown", help="Write the per-method table as Markdown here."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for PNG plots (KV over steps, accuracy vs tokens)."),
    plot_id: Optional[str] = typer.Option(None, "--plot-id", help="Sample id for the KV-over-steps plot (default: "
                                                                  "the first id every method has a trace for)."),
    verdicts: Optional[Path] = typer.Option(None, "--verdicts", help="Write all per-sample verdicts to this JSONL "
                                                                     "(default: <run>.verdicts.jsonl next to each run)."),
):
    """Extract each answer (last \\boxed{}, final number, option letter), check it with math-verify,
    and report accuracy, tokens, peak KV, dependency, mean latency, run time, tokens/s and compressions
    per method (latencies of samples decoded together overlap: they are averaged, never summed)."""
    from rich.console import Console
    from rich.progress import track

    from thinkc.eval.metrics import evaluate_runs
    from thinkc.eval.plots import write_plots
    from thinkc.eval.report import rich_table, write_markdown, write_summary_json, write_verdicts

    from thinkc.io import refuse_input_as_output

    for flag, out in (("--json", json_out), ("--markdown", markdown_out), ("--verdicts", verdicts)):
        if out is not None:  # writing a run (or the reference) over itself would lose it
            refuse_input_as_output(out, [*runs, reference], flag)
    console = Console()
    rows, summaries = evaluate_runs(
        runs, reference, progress=lambda it: track(it, description="checking answers", console=console,
                                                   transient=True))
    console.print(rich_table(summaries))
    written = write_verdicts(rows, verdicts)
    if json_out:
        write_summary_json(json_out, summaries, runs=[str(p) for p in runs],
                           reference=None if reference is None else str(reference))
        written.append(json_out)
    if markdown_out:
        write_markdown(markdown_out, summaries)
        written.append(markdown_out)
    if plots:
        written += write_plots(rows, summaries, plots, plot_id)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
