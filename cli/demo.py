"""`thinkc demo`: the main job on the embedded default, end to end, in minutes on a CPU."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from thinkc.demo import DemoSettings


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for data, compressed traces, infer runs, "
                                                             "the summary (JSON + Markdown) and plots."),
    n_test: int = typer.Option(DemoSettings.n_test, "--n-test", min=1, help="Synthetic test problems decoded by each method."),
    n_cts: int = typer.Option(DemoSettings.n_cts, "--n-cts", min=1, help="Synthetic traces compressed by CTS."),
    ratio: List[float] = typer.Option(list(DemoSettings.ratios), "--ratio", "-r",
                                      help="CTS keep ratio in (0, 1]; repeat for several. Default: 0.5, 0.6 and 0.7 "
                                           "(tiny-cts's last part trains on 0.5 + 0.6; the seed's are 0.5 and 0.7)."),
    max_new_tokens: int = typer.Option(DemoSettings.max_new_tokens, "--max-new-tokens", min=1,
                                       help="Generation limit per problem."),
    h2o_budget: int = typer.Option(DemoSettings.h2o_budget, "--h2o-budget", min=4,
                                   help="KV budget of the H2O baseline (tokens)."),
    fresh: bool = typer.Option(False, "--fresh", help="Delete earlier results in --out first (otherwise finished "
                                                      "infer rows are reused)."),
):
    """Synthesise data -> CTS-compress it -> infer with vanilla / CTS-trained / LightThinker / CTS+LightThinker /
    H2O on the shipped tiny models -> evaluate: prints the comparison table and writes plots. Offline, CPU, minutes."""
    import shutil

    from thinkc.demo import run_demo

    if fresh and out.exists():
        shutil.rmtree(out)
    run_demo(DemoSettings(out=out, n_test=n_test, n_cts=n_cts, ratios=tuple(ratio), max_new_tokens=max_new_tokens,
                          h2o_budget=h2o_budget))
