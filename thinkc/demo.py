"""The main job (`thinkc demo`, `make demo`): synthesise the R1-length task -> CTS-compress training
traces with the tiny reference model (kept share of computation vs filler tokens) -> infer with
vanilla / CTS-trained / LightThinker / CTS+LightThinker on the shipped tiny models, then R-KV, SnapKV,
H2O and StreamingLLM on tiny-sft at LightThinker's measured mean peak KV (thinkc.demo_baselines;
and at three more budgets each unless --no-sweep) -> evaluate -> one table (accuracy, thinking tokens, peak KV,
dependency, time, tokens/s), one verdict per method against vanilla, plots (accuracy vs mean peak KV
among them). Every number printed comes from this run."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from thinkc.console import FitTable, wide_console
from thinkc.data.schema import write_records
from thinkc.data.synth import synth_splits

SAME_ACCURACY_POINTS = 3.0  # within this many points of vanilla counts as the same accuracy


def tiny_training_synth() -> dict:
    """The synthetic-task arguments the shipped tiny checkpoints were trained on (data.synth of the
    train_config.yaml saved beside tiny-sft): n, seed and the synth_records options."""
    import yaml

    from thinkc.models.loading import resolve_model

    cfg = yaml.safe_load((resolve_model("tiny-sft") / "train_config.yaml").read_text())
    return dict(cfg["data"]["synth"])


@dataclass
class DemoSettings:
    out: Path = Path("runs/demo")
    n_test: int = 60  # ~130 s on 2 shared cores; `thinkc demo --n-test 200`: the docs/tiny_task.md measurement
    n_cts: int = 32
    ratios: tuple = (0.5, 0.6, 0.7)  # tiny-cts trains on 0.7, then 0.5, then 0.5 + 0.6 (configs/train/tiny_cts*.yaml)
    max_new_tokens: int = 768  # the task's traces are ~300-700 tokens + the answer
    batch_size: int = 50
    baselines: tuple = ("rkv", "snapkv", "h2o", "streamingllm")  # training-free, at LightThinker's mean peak KV
    baseline_model: str = "tiny-sft"  # the vanilla-trained model the training-free policies decode with
    kv_reference: str = "lightthinker"  # the run whose mean peak KV sets their budget
    sweep: bool = True  # also 0.5x, 1.5x and 2x that budget (thinkc.demo_baselines.SWEEP_FACTORS) for the plot
    reference: str = "tiny-cts-reference"  # configs/train/tiny_cts_reference.yaml
    task: dict = field(default_factory=tiny_training_synth)  # n + seed of the training split, task options
    # (label, method, model); the training-free baselines follow, once kv_reference's peak KV is known
    runs: tuple = (("vanilla", "vanilla", "tiny-sft"), ("cts", "vanilla", "tiny-cts"),
                   ("lightthinker", "lightthinker", "tiny-lightthinker"),
                   ("cts+lightthinker", "lightthinker", "tiny-cts-lightthinker"))  # gist on CTS 0.7 traces


def _synthesise(s: DemoSettings, console: Console):
    console.print(Rule("1. synthesise the reasoning task"))
    task = dict(s.task)  # regenerate the models' training split so the test problems are disjoint from it
    n_train, seed = task.pop("n"), task.pop("seed")
    train, test = synth_splits(n_train, s.n_test, seed=seed, **task)
    cts_input = train[: s.n_cts]  # CTS compresses training traces; test problems are unseen
    write_records(s.out / "data" / "cts_input.jsonl", cts_input)
    write_records(s.out / "data" / "test.jsonl", test)
    console.print(f"{len(cts_input)} records to compress, {len(test)} test problems -> {s.out / 'data'}")
    console.print(f"[dim]example question:[/] {test[0].question}")
    return cts_input, test


def _cts_job(s: DemoSettings):
    from thinkc.cts.pipeline import CtsJob
    from thinkc.cts.select import SelectOptions

    return CtsJob(input=s.out / "data" / "cts_input.jsonl", output=str(s.out / "cts" / "train.jsonl"),
                  ratios=list(s.ratios), reference=s.reference, batch_size=8,
                  options=SelectOptions(force_digits=True, force_operators=True))


def _compress(s: DemoSettings, console: Console) -> dict:
    from thinkc.cts.pipeline import run as run_cts

    ratios = ", ".join(str(r) for r in s.ratios)
    console.print(Rule(f"2. CTS: compress reasoning traces at ratios {ratios} (reference model: {s.reference}, "
                       "digits and operators force-kept, as for tiny-cts)"))
    summaries = run_cts(_cts_job(s), console=console)  # one scoring pass, one selection per ratio
    cols = ("ratio", "records", "tokens before", "tokens after", "achieved ratio", "kept in computation",
            "kept in filler", "gap (points)", "random scores' gap")
    rows = [(str(x["ratio"]), str(x["records"]), str(x["tokens_before"]), str(x["tokens_after"]),
             f"{x['achieved']:.3f}", f"{x['compute_kept_share']:.0%}", f"{x['filler_kept_share']:.0%}",
             f"{100 * x['kept_share_gap']:+.1f}", f"{100 * x['chance_gap']:+.1f}") for x in summaries]
    console.print(FitTable("CTS compression", cols, rows, short=CTS_SHORT))
    return summaries


def _infer(s: DemoSettings, console: Console, test, runs: list) -> tuple[list[Path], dict[str, float]]:
    """One run file per demo Run (label, method, model, budget), a progress bar each; the wall time
    of each run in seconds. A training-free policy that fails mid-run is one warning line and is left
    out (the rest of the demo still reports); a trained method's failure stops the demo."""
    from thinkc.console import print_warning

    paths, seconds, records = [], {}, [r.to_dict() for r in test]
    for run in runs:
        try:
            paths.append(_decode(s, console, run, records, seconds))
        except RuntimeError as e:
            if run.budget is None:
                raise
            print_warning(f"{run.label}: {run.method} failed ({e}); left out of this run's table and plot")
    return paths, seconds


def _decode(s: DemoSettings, console: Console, run, records: list[dict], seconds: dict[str, float]) -> Path:
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from thinkc.errors import ThinkcError
    from thinkc.infer.run import InferSettings, prepare, read_done, run_inference

    model, tok, policy, build_prompt, _ = prepare(run.method, run.model, budget=run.budget)
    settings = InferSettings(method=run.method, model_label=run.model, batch_size=s.batch_size,
                             max_new_tokens=s.max_new_tokens,
                             extra={} if run.budget is None else {"budget": run.budget})
    path = s.out / "infer" / f"{run.label}.jsonl"
    _drop_stale(path, settings, console)
    done = len(read_done(path).keys() & {str(r["id"]) for r in records})  # finished rows are reused
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"{run.label}: {run.method} on {run.model}", total=len(records), completed=done)
        t0 = time.perf_counter()
        try:
            run_inference(model, tok, records, policy, settings, build_prompt, path,
                          on_sample=lambda _row: bar.advance(task))
        except ThinkcError:  # rows of other test problems under the same ids: the demo starts this run over
            path.unlink(missing_ok=True)
            bar.reset(task)
            run_inference(model, tok, records, policy, settings, build_prompt, path,
                          on_sample=lambda _row: bar.advance(task))
        seconds[run.label] = time.perf_counter() - t0
    console.print(f"{run.label}: {run.method} on {run.model}" + ("" if run.budget is None else
                  f", budget {run.budget} keys per row") + f" ({seconds[run.label]:.1f} s)", highlight=False)
    return path


def _drop_stale(path: Path, settings, console: Console) -> None:
    """The demo owns its run folder: a run left by other settings (or other test problems) starts over
    instead of being reused."""
    from thinkc.errors import ThinkcError
    from thinkc.infer.run import check_resumable, read_done

    if not path.exists():
        return
    try:
        check_resumable(read_done(path), settings, path)
    except ThinkcError:
        console.print(f"[dim]{path.name}: made with other settings, starting over[/]")
        path.unlink()


def relabel(rows: list[dict], summaries: list, paths: list[Path]) -> list:
    """Name every group by its run's demo label (the file stem: vanilla, cts, lightthinker, cts+lightthinker, h2o)
    instead of eval's model/method, so tables, verdicts and plot colours use the method names."""
    from dataclasses import replace

    names = {}
    for r in rows:
        names[r["group"]] = Path(r["_file"]).stem if "_file" in r else r["group"]
        r["group"] = names[r["group"]]
    by_label = {replace(x, method=names.get(x.method, x.method)).method: replace(x, method=names.get(x.method, x.method))
                for x in summaries}
    order = [p.stem for p in paths]
    return [by_label[k] for k in order if k in by_label] + [v for k, v in by_label.items() if k not in order]


def thinking_tokens(rows: list[dict], tokenizer) -> dict[str, float]:
    """Mean tokens of the thinking (the text before </think>, all of it when never closed) per group."""
    sums: dict[str, list[int]] = {}
    for r in rows:
        think = (r.get("text") or "").split("</think>")[0]
        sums.setdefault(r["group"], []).append(len(tokenizer(think, add_special_tokens=False)["input_ids"]))
    return {g: sum(v) / len(v) for g, v in sums.items()}


def _ratio(x, base) -> float | None:
    return x / base if x is not None and base else None


def verdict(label: str, s, base, think: float, think_base: float) -> str:
    """One line: this method against vanilla (accuracy in points, thinking tokens and peak KV as
    shares of vanilla's), and what that amounts to."""
    d = 100 * (s.accuracy - base.accuracy)
    same = abs(d) <= SAME_ACCURACY_POINTS
    acc = "same accuracy" if same else "higher accuracy" if d > 0 else "lower accuracy"
    if s.accuracy == base.accuracy == 0:
        acc = "no accuracy to compare (both 0%)"
    tr, kr = _ratio(think, think_base), _ratio(s.mean_peak_kv, base.mean_peak_kv)
    saves = [f"{1 - r:.0%} {what}" for r, what in ((tr, "of the thinking tokens"), (kr, "of the peak KV"))
             if r is not None and r <= 0.9]
    if not saves:
        end = "no saving" + ("" if same or d > 0 else ", and it loses accuracy")
    else:
        end = "saves " + " and ".join(saves) + (" (accuracy not comparable)" if s.accuracy == base.accuracy == 0 else
                                                " at the same accuracy" if same else
                                                " with higher accuracy" if d > 0 else " but loses accuracy")
    shares = ", ".join(f"{what} {r:.0%} of vanilla's" for r, what in ((tr, "thinking tokens"), (kr, "peak KV"))
                       if r is not None)
    points = "" if s.accuracy == base.accuracy == 0 else f" ({d:+.1f} points)"
    return f"{label}: {acc}{points}, {shares} -> {end}"


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


CTS_SHORT = {"tokens before": "before", "tokens after": "after", "achieved ratio": "ratio",
             "kept in computation": "kept comp.", "kept in filler": "kept filler", "gap (points)": "gap",
             "random scores' gap": "chance"}
RESULTS_SHORT = {"accuracy": "acc", "thinking tokens": "thinking", "generated tokens": "tokens",
                 "peak KV (mean)": "peak KV", "dependency (M)": "dep (M)", "compressions": "compr",
                 "time (s)": "time s", "tokens/s": "tok/s"}


def results_table(summaries, think: dict[str, float], seconds: dict[str, float],
                  title: str = "thinkc demo: R1-length synthetic arithmetic, tiny models (this run)") -> FitTable:
    """Laid out for the console's width: short headers at 80 columns, method names never cut.
    tokens/s: the run's generated tokens over its wall time (this run's decode, not a resumed one)."""
    cols = ("method", "n", "accuracy", "thinking tokens", "generated tokens", "peak KV (mean)",
            "dependency (M)", "compressions", "time (s)", "tokens/s")
    rows = []
    for s in summaries:
        t = seconds.get(s.method, s.run_wall_s)
        tps = s.mean_tokens * s.n / t if t and s.mean_tokens is not None else None
        rows.append((s.method, str(s.n), f"{s.accuracy:.1%}", _fmt(think.get(s.method), ".0f"),
                     _fmt(s.mean_tokens, ".0f"), _fmt(s.mean_peak_kv, ".0f"), _fmt(s.dependency_m, ".3f"),
                     _fmt(s.compressions, ".1f"), _fmt(t, ".1f"), _fmt(tps, ".0f")))
    return FitTable(title, cols, rows, short=RESULTS_SHORT)


@contextmanager
def one_thread():
    """Tiny models decode fastest on one thread: their matmuls are too small to split, and on a busy
    machine a second thread mostly waits at OpenMP barriers (a 2-thread run was ~10x slower here)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _decode_all(s: DemoSettings, console: Console, test) -> tuple[list[Path], list[Path], dict, dict]:
    """The trained methods, then the training-free policies at kv_reference's mean peak KV (and, with
    s.sweep, at the other budgets): (table's runs, sweep-only runs, seconds per label, budget info)."""
    from thinkc import demo_baselines as B

    console.print(Rule("3. infer on the test split"))
    paths, seconds = _infer(s, console, test, [B.Run(*r) for r in s.runs])
    ref = next((p for p in paths if p.stem == s.kv_reference), None)
    if ref is None or not s.baselines:
        return paths, [], seconds, {}
    target = B.mean_peak_kv(ref)
    at = B.baseline_runs(s.baselines, s.baseline_model, target)
    console.print(Rule("3b. training-free policies on tiny-sft at lightthinker's mean peak KV"))
    console.print(B.budget_note(target, at), highlight=False)
    more, sec = _infer(s, console, test, at)
    seconds.update(sec)
    sweep, extra = [], []
    if s.sweep:
        extra = [r for r in B.baseline_runs(s.baselines, s.baseline_model, target, (1.0, *B.SWEEP_FACTORS))
                 if r not in at]
        console.print(Rule(f"3c. budget sweep: {', '.join(f'{f:g}x' for f in B.SWEEP_FACTORS)} that peak KV "
                           f"({len(extra)} more runs)"))
        sweep, sec = _infer(s, console, test, extra)
        seconds.update(sec)
    budgets = {"kv_reference": s.kv_reference, "target_peak_kv": target,
               "at_target": {r.label: {"method": r.method, "budget": r.budget} for r in at},
               "sweep": {r.label: {"method": r.method, "budget": r.budget} for r in extra}}
    return paths + more, sweep, seconds, budgets


def run_demo(s: DemoSettings, console: Console | None = None) -> list:
    from thinkc.eval.budgets import plot_accuracy_vs_kv
    from thinkc.eval.metrics import evaluate_runs
    from thinkc.eval.plots import write_plots
    from thinkc.eval.report import write_markdown, write_summary_json
    from thinkc.models.loading import load_tokenizer

    from transformers.utils import logging as hf_logging

    from thinkc.cts.pipeline import check_job

    hf_logging.disable_progress_bar()  # one line per weight load is noise here
    console = console or wide_console()
    check_job(_cts_job(s))  # bad --ratio values fail before any work
    s.out.mkdir(parents=True, exist_ok=True)
    _, test = _synthesise(s, console)
    with one_thread():
        cts = _compress(s, console)
        paths, sweep, seconds, budgets = _decode_all(s, console, test)

    console.print(Rule("4. evaluate"))
    rows, every = evaluate_runs(paths + sweep, s.out / "data" / "test.jsonl")
    every = relabel(rows, every, paths + sweep)
    summaries = [x for x in every if x.method not in {p.stem for p in sweep}]
    think = thinking_tokens(rows, load_tokenizer("tiny-sft"))
    console.print(results_table(summaries, think, seconds))
    if sweep:
        runs = {**budgets["at_target"], **budgets["sweep"]}
        swept = sorted((x for x in every if x.method in runs),
                       key=lambda x: (s.baselines.index(runs[x.method]["method"]), runs[x.method]["budget"]))
        console.print(results_table(swept, think, seconds, title="budget sweep (the accuracy_vs_kv.png lines)"))
    base = next((x for x in summaries if x.method == s.runs[0][0]), summaries[0])
    lines = [verdict(x.method, x, base, think.get(x.method), think.get(base.method))
             for x in summaries if x is not base]
    for line in lines:
        console.print(line)
    write_summary_json(s.out / "summary.json", summaries, thinking_tokens=think, seconds=seconds, verdicts=lines,
                       cts=cts, budgets=budgets, sweep=[x.to_dict() for x in every if x not in summaries])
    write_markdown(s.out / "summary.md", summaries)
    plots = [p for p in write_plots(rows, summaries, s.out / "plots") if p.name != "accuracy_vs_kv.png"]
    plots.append(plot_accuracy_vs_kv(every, s.out / "plots" / "accuracy_vs_kv.png", reference=s.kv_reference,
                                     title="accuracy vs mean peak KV (this run)"))
    console.print(f"wrote {s.out / 'summary.json'}, {s.out / 'summary.md'}, plots: {', '.join(str(p) for p in plots)}")
    return summaries
