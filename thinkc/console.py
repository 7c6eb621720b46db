"""Rich console helpers. `wide_console`: rich wraps to 80 columns when stdout is not a terminal (logs,
CI), which would squeeze wide tables; keep them whole there unless COLUMNS says otherwise.
`FitTable`: a table that fits the console's width without cutting a cell. `print_error` /
`print_warning`: the one-line error and warning printers (stderr); the message is shown as written,
never read as rich markup (a token name like `[o]` or `[/]` in it would otherwise vanish or crash
the print)."""
from __future__ import annotations

import os
import sys
from typing import Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text


def wide_console() -> Console:
    return Console() if sys.stdout.isatty() or os.environ.get("COLUMNS") else Console(width=160)


class FitTable:
    """A table of text cells laid out for the width it is printed at, never cutting a cell ("…").

    Too wide for the console, it tries in turn: the `short` headers; names (first column) on two
    lines, broken after a "/" (model/method); dropping the `optional` columns (in the order given;
    their figures stay in the JSON / Markdown outputs); splitting the remaining columns into several
    tables that each repeat the name column. Only a cell too long for the whole width wraps
    (folded); no cell is ever shortened."""

    def __init__(self, title: str | None, headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                 short: dict[str, str] | None = None, optional: Sequence[str] = (), left: Sequence[str] = (),
                 first_style: str | None = None):
        self.title, self.headers, self.rows = title, list(headers), [[str(c) for c in r] for r in rows]
        self.short, self.optional, self.first_style = short or {}, list(optional), first_style
        self.left = {0} | {self.headers.index(h) for h in left}  # left-justified: the names and these

    def __rich_console__(self, console, options):
        yield from self.tables(options.max_width)

    def _width(self, cols: list[int], heads: list[str], rows: list[list[str]]) -> int:
        """The table's printed width with every cell on one line: content + 2 padding + 1 rule each."""
        def w(text: str) -> int:
            return max(cell_len(line) for line in text.split("\n"))
        return sum(max([w(heads[c])] + [w(r[c]) for r in rows]) for c in cols) + 3 * len(cols) + 1

    def layout(self, width: int) -> tuple[list[str], list[list[int]], list[list[str]]]:
        """(headers, column groups, rows) for `width`: one group when the table fits."""
        cols, heads, rows = list(range(len(self.headers))), self.headers, self.rows
        if self._width(cols, heads, rows) <= width:
            return heads, [cols], rows
        heads = [self.short.get(h, h) for h in self.headers]
        if self._width(cols, heads, rows) <= width:
            return heads, [cols], rows
        rows = [[r[0].replace("/", "/\n"), *r[1:]] for r in rows]
        for name in [None] + self.optional:
            if name is not None and name in self.headers:
                cols.remove(self.headers.index(name))
            if self._width(cols, heads, rows) <= width:
                return heads, [cols], rows
        groups, cur = [], [cols[0]]
        for c in cols[1:]:
            if len(cur) > 1 and self._width(cur + [c], heads, rows) > width:
                groups.append(cur)
                cur = [cols[0]]
            cur.append(c)
        return heads, groups + [cur], rows

    def tables(self, width: int) -> list[Table]:
        heads, groups, rows = self.layout(width)
        out = []
        for i, cols in enumerate(groups):
            fold = self._width(cols, heads, rows) > width  # a cell longer than the width: folded, never cut
            t = Table(title=self.title if i == 0 else None)
            for c in cols:
                t.add_column(heads[c], justify="left" if c in self.left else "right", overflow="fold", no_wrap=not fold,
                             style=self.first_style if c == cols[0] else None)
            for r in rows:
                t.add_row(*(Text(r[c]) for c in cols))
            out.append(t)
        return out


def print_error(message: str) -> None:
    _stderr_line("[bold red]error:[/]", message)


def print_warning(message: str) -> None:
    _stderr_line("[yellow]warning:[/]", message)


def _stderr_line(label: str, message: str) -> None:
    from rich.markup import escape

    Console(stderr=True).print(f"{label} {escape(str(message))}", highlight=False, soft_wrap=True)
