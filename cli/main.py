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
    ("serve", None),
    ("evaluate", None),
    ("bench", "bench"),
    ("demo", None),
]


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug",
                                      help="Show full tracebacks on errors (accepted anywhere on the command line).")):
    # listed here for --help only: main() takes --debug out of the arguments wherever it stands
    pass


def _register():
    for mod_name, sub in SUBAPPS:
        mod = importlib.import_module(f"thinkc.cli.{mod_name}")
        if sub is None:
            mod.register(app)
        else:
            app.add_typer(mod.app, name=sub)


_register()


# Rich's option panels cut long option names ("--reference-mod…") in narrower terminals: there,
# help uses click's plain layout, which wraps the text and keeps every name whole
RICH_HELP_MIN_WIDTH = 110


def help_width() -> int:
    """The width help is printed at: TERMINAL_WIDTH (typer's override), else what rich detects
    (COLUMNS, the terminal, 80 when not a terminal)."""
    from rich.console import Console

    forced = os.environ.get("TERMINAL_WIDTH", "")
    return int(forced) if forced.isdigit() else Console().width


def fit_help(argv: list[str], typer_app: typer.Typer = app) -> None:
    """Plain help below RICH_HELP_MIN_WIDTH columns, rich panels otherwise (only when help may be
    printed: --help, or a group named without a subcommand)."""
    if "--help" not in argv[1:] and len(argv) > 2:
        return
    from typer.core import DEFAULT_MARKUP_MODE

    mode = None if help_width() < RICH_HELP_MIN_WIDTH else DEFAULT_MARKUP_MODE
    stack = [typer_app]
    while stack:
        t = stack.pop()
        t.rich_markup_mode = mode
        stack += [g.typer_instance for g in t.registered_groups]


def _take_debug(argv: list[str]) -> bool:
    """Remove every `--debug` before a `--` from argv (so it works after the subcommand too)."""
    stop = argv.index("--") if "--" in argv else len(argv)
    found = "--debug" in argv[1:stop]
    argv[1:stop] = [a for a in argv[1:stop] if a != "--debug"]
    return found


def main():
    debug = _take_debug(sys.argv) or os.environ.get("THINKC_DEBUG") == "1"
    fit_help(sys.argv)
    try:
        app()
    except Exception as e:
        if debug or not isinstance(e, (ThinkcError, OSError, UnicodeDecodeError)):
            raise
        from thinkc.console import print_error

        print_error(_one_line(e))
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _one_line(e: Exception) -> str:
    if isinstance(e, UnicodeDecodeError):  # a reader that did not name its file; say what went wrong
        return f"an input file is not UTF-8 text (byte 0x{e.object[e.start]:02x}); save it as UTF-8"
    if isinstance(e, OSError) and not isinstance(e, ThinkcError):  # a path the user gave: missing, a folder, ...
        return (f"{e.filename}: " if e.filename else "") + str(e.strerror or e)
    return str(e)


if __name__ == "__main__":
    main()
