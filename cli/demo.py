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
    sweep: bool = typer.Option(DemoSettings.sweep, "--sweep/--no-sweep",
                               help="Also run each training-free policy at 0.5x, 1.5x and 2x LightThinker's mean "
                                    "peak KV (12 more decodes: measured 3.7 minutes in all against 1.3 without, on 2 "
                                    "cores): four points per policy on plots/accuracy_vs_kv.png and a sweep table. "
                                    "--no-sweep: one point per policy, at LightThinker's KV."),
    fresh: bool = typer.Option(False, "--fresh", help="Delete earlier results in --out first (otherwise finished "
                                                      "infer rows are reused)."),
):
    """Synthesise data -> CTS-compress it -> infer with vanilla / CTS-trained / LightThinker / CTS+LightThinker
    on the shipped tiny models, then R-KV, SnapKV, H2O and StreamingLLM on tiny-sft at LightThinker's measured mean
    peak KV -> evaluate: prints the comparison table and writes plots (accuracy vs tokens, vs mean peak KV, KV
    over steps). Offline, CPU, minutes."""
    import shutil

    from thinkc.demo import run_demo

    if fresh and out.exists():
        shutil.rmtree(out)
    run_demo(DemoSettings(out=out, n_test=n_test, n_cts=n_cts, ratios=tuple(ratio), max_new_tokens=max_new_tokens,
                          sweep=sweep))
