"""thinkc's Typer app (installed as thinkc.cli). Thin: parse, call the library, print."""
