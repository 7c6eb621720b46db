"""`thinkc eval`: score `thinkc infer` runs against reference answers and compare methods."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from thinkc.errors import ThinkcError


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
    app.command("eval-lighteval")(evaluate_lighteval)


def evaluate(
    runs: List[Path] = typer.Argument(None, help="Run JSONL files written by `thinkc infer` (one or several).",
                                      show_default=False),
    url: Optional[str] = typer.Option(None, "--url", help="Also grade a served model (thinkc serve or any "
                                                          "OpenAI-compatible server): send it every --problems "
                                                          "question, save the replies as a run (--save), grade it."),
    problems: Optional[Path] = typer.Option(None, "--problems", help="With --url: the problems, as `thinkc infer "
                                                                     "--input` reads them."),
    save: Optional[Path] = typer.Option(None, "--save", help="With --url: where the served run is written "
                                                             "(default: served.jsonl beside --problems)."),
    clients: int = typer.Option(8, "--clients", min=1, help="With --url: concurrent requests."),
    max_tokens: int = typer.Option(1024, "--max-tokens", min=1, help="With --url: max_tokens per request (greedy)."),
    reference: Optional[Path] = typer.Option(None, "--reference", "-r",
                                             help="Reference answers: thinkc records JSONL, or a local MATH-500 / "
                                                  "AIME / GPQA-Diamond / GSM8K file or folder (default: the gold "
                                                  "answers `thinkc infer` copied into the runs)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the per-method summary as JSON here."),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown", help="Write the per-method table as Markdown here."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for PNG plots (KV over steps, accuracy vs "
                                                               "tokens; with two runs or more, accuracy vs mean peak "
                                                               "KV: one line per training-free policy through its "
                                                               "budgets)."),
    plot_id: Optional[str] = typer.Option(None, "--plot-id", help="Sample id for the KV-over-steps plot (default: "
                                                                  "the first id every method has a trace for)."),
    verdicts: Optional[Path] = typer.Option(None, "--verdicts", help="Write all per-sample verdicts to this JSONL "
                                                                     "(default: <run>.verdicts.jsonl next to each run)."),
):
    """Extract each answer (last \\boxed{}, final number, option letter), check it with math-verify,
    and report accuracy, tokens, peak KV, dependency, mean latency, run time, tokens/s and compressions
    per method (latencies of samples decoded together overlap: they are averaged, never summed).
    A run made with --budget is labelled with it (rkv-b128, h2o-b0.5), so one policy at several
    budgets is several rows side by side."""
    from rich.console import Console
    from rich.progress import track

    from thinkc.eval.budgets import evaluate_labelled
    from thinkc.eval.plots import write_plots
    from thinkc.eval.report import rich_table, write_markdown, write_summary_json, write_verdicts

    from thinkc.io import refuse_input_as_output

    for flag, out in (("--json", json_out), ("--markdown", markdown_out), ("--verdicts", verdicts)):
        if out is not None:  # writing a run (or the reference) over itself would lose it
            refuse_input_as_output(out, [*(runs or []), reference], flag)
    console = Console()
    runs = list(runs or []) + _served(url, problems, save, clients, max_tokens, console)
    if not runs:
        raise ThinkcError("give run files to grade, or --url with --problems")
    rows, summaries = evaluate_labelled(
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


def _served(url, problems, save, clients, max_tokens, console) -> list[Path]:
    """[the served run's file] for --url (thinkc.eval.served), or []."""
    if url is None:
        if problems is not None or save is not None:
            raise ThinkcError("--problems and --save go with --url")
        return []
    if problems is None:
        raise ThinkcError("--url needs --problems (the questions to send)")
    from thinkc.eval.served import fetch_served_run

    out = save or problems.with_name("served.jsonl")
    with console.status(f"querying {url} ({clients} clients)"):
        path = fetch_served_run(url, problems, out, clients=clients, max_tokens=max_tokens)
    console.print(f"wrote {path}", highlight=False)
    return [path]


def evaluate_lighteval(
    tasks: str = typer.Option(..., "--tasks", "-t", help="Comma-separated: math500, aime, gpqa, gsm8k, records "
                                                          "(or lighteval names such as thinkc_math500|0)."),
    root: Path = typer.Option(Path("benchmarks"), "--root", help="Folder with one subfolder per benchmark (math500/, "
                                                                 "aime/, gpqa_diamond/, gsm8k/, records/), each "
                                                                 "holding the dataset's file as test.jsonl."),
    method: str = typer.Option("lightthinker", "--method", "-m", help="Cache policy, as for `thinkc infer`."),
    model: Optional[str] = typer.Option(None, "--model", help="As for `thinkc infer`."),
    gist_config: Optional[str] = typer.Option(None, "--gist-config", help="As for `thinkc infer`."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1),
    max_new_tokens: int = typer.Option(1024, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed"),
    budget: Optional[int] = typer.Option(None, "--budget", min=2),
    window: Optional[int] = typer.Option(None, "--window", min=1),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1, help="First N problems per task."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Save lighteval's results and details here."),
):
    """Evaluate with lighteval's Pipeline, offline on local files, decoding through thinkc's engine:
    the per-sample verdicts (thinkc_match) are those of `thinkc infer` + `thinkc eval`; lighteval's
    own extractive_match is shown beside them."""
    from rich.console import Console
    from rich.table import Table

    from thinkc.eval.lighteval_run import evaluate_with_lighteval

    console = Console()
    with console.status("lighteval: loading tasks and model, generating"):
        result = evaluate_with_lighteval(tasks, root, method=method, model=model, max_samples=max_samples,
                                         output_dir=output_dir, gist_config=gist_config, batch_size=batch_size,
                                         max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                         seed=seed, budget=budget, window=window, device=device)
    table = Table(title=f"thinkc eval-lighteval — {method}")
    for col in ("task", "n", "thinkc_match %", "extractive_match %"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task, samples in result.samples.items():
        table.add_row(task, str(len(samples)), f"{100 * result.accuracy(task):.1f}",
                      f"{100 * result.accuracy(task, 'extractive_match'):.1f}")
    console.print(table)
    if output_dir:
        console.print(f"wrote lighteval results under {output_dir}", highlight=False)
