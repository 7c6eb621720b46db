"""Rich console for tables: rich wraps to 80 columns when stdout is not a terminal (logs, CI),
which truncates wide tables; keep them whole there."""
import sys

from rich.console import Console


def wide_console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=160)
