"""The `thinkc` command. Each sub-app lives in its own module; errors the user can fix print as
one red line and exit 2 (a traceback only with --debug)."""
from __future__ import annotations

import importlib
import os
import sys

import typer

from thinkc.errors import ThinkcError

app = typer.Typer(
    name="thinkc",
    help="Make reasoning LLMs think with fewer tokens: CTS token selection and LightThinker gist compression.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# (module in thinkc.cli, sub-command name or None for top-level commands registered on `app`)
SUBAPPS = [
    ("doctor", None),
    ("models", "models"),
    ("data", "data"),
    ("train", None),
    ("infer", None),
    ("evaluate", None),
    ("bench", "bench"),
    ("demo", None),
]


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    if debug:
        os.environ["THINKC_DEBUG"] = "1"


def _register():
    for mod_name, sub in SUBAPPS:
        mod = importlib.import_module(f"thinkc.cli.{mod_name}")
        if sub is None:
            mod.register(app)
        else:
            app.add_typer(mod.app, name=sub)


_register()


def main():
    debug = "--debug" in sys.argv or os.environ.get("THINKC_DEBUG") == "1"
    try:
        app()
    except ThinkcError as e:
        if debug:
            raise
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as e:  # a path the user gave: missing, a directory, not writable, disk full
        if debug:
            raise
        from rich.console import Console

        where = f"{e.filename}: " if e.filename else ""
        Console(stderr=True).print(f"[bold red]error:[/] {where}{e.strerror or e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
