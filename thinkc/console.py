"""Rich console for tables: rich wraps to 80 columns when stdout is not a terminal (logs, CI),
which truncates wide tables; keep them whole there. `print_error` / `print_warning`: the one-line
error and warning printers (stderr); the message is shown as written, never read as rich markup
(a token name like `[o]` or `[/]` in it would otherwise vanish or crash the print)."""
import sys

from rich.console import Console


def wide_console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=160)


def print_error(message: str) -> None:
    _stderr_line("[bold red]error:[/]", message)


def print_warning(message: str) -> None:
    _stderr_line("[yellow]warning:[/]", message)


def _stderr_line(label: str, message: str) -> None:
    from rich.markup import escape

    Console(stderr=True).print(f"{label} {escape(str(message))}", highlight=False, soft_wrap=True)
