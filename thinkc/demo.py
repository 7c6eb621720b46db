"""The main job (`thinkc demo`, `make demo`): synthesise the R1-length task -> CTS-compress training
traces with the tiny reference model (kept share of computation vs filler tokens) -> infer with
vanilla / CTS-trained / LightThinker / CTS+LightThinker / H2O on the shipped tiny models -> evaluate -> one table
(accuracy, thinking tokens, peak KV, dependency, time), one verdict per method against vanilla,
plots. Every number printed comes from this run."""
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
    n_test: int = 60  # ~90 s on 2 cores; `thinkc demo --n-test 200` for the measurement in docs/tiny_task.md
    n_cts: int = 32
    ratios: tuple = (0.5, 0.6, 0.7)  # tiny-cts trains on 0.7, then 0.5, then 0.5 + 0.6 (configs/train/tiny_cts*.yaml)
    max_new_tokens: int = 768  # the task's traces are ~300-700 tokens + the answer
    batch_size: int = 50
    h2o_budget: int = 192  # about LightThinker's peak KV on this task
    reference: str = "tiny-cts-reference"  # configs/train/tiny_cts_reference.yaml
    task: dict = field(default_factory=tiny_training_synth)  # n + seed of the training split, task options
    # (label, method, model)
    runs: tuple = (("vanilla", "vanilla", "tiny-sft"), ("cts", "vanilla", "tiny-cts"),
                   ("lightthinker", "lightthinker", "tiny-lightthinker"),
                   ("cts+lightthinker", "lightthinker", "tiny-cts-lightthinker"),  # gist on CTS 0.7 traces
                   ("h2o", "h2o", "tiny-sft"))


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


def _infer(s: DemoSettings, console: Console, test) -> tuple[list[Path], dict[str, float]]:
    """One run file per (label, method, model); the wall time of each run in seconds."""
    import time

    from thinkc.errors import ThinkcError
    from thinkc.infer.run import InferSettings, prepare, run_inference

    console.print(Rule("3. infer on the test split"))
    paths, seconds, records = [], {}, [r.to_dict() for r in test]
    for label, method, model_name in s.runs:
        model, tok, policy, build_prompt, _ = prepare(method, model_name,
                                                      budget=s.h2o_budget if method == "h2o" else None)
        settings = InferSettings(method=method, model_label=model_name, batch_size=s.batch_size,
                                 max_new_tokens=s.max_new_tokens,
                                 extra={"budget": s.h2o_budget} if method == "h2o" else {})
        path = s.out / "infer" / f"{label}.jsonl"
        _drop_stale(path, settings, console)
        console.print(f"{label}: {method} on {model_name} ...")
        t0 = time.perf_counter()
        try:
            run_inference(model, tok, records, policy, settings, build_prompt, path)
        except ThinkcError:  # rows of other test problems under the same ids: the demo starts this run over
            path.unlink(missing_ok=True)
            run_inference(model, tok, records, policy, settings, build_prompt, path)
        seconds[label] = time.perf_counter() - t0
        paths.append(path)
    return paths, seconds


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
                 "time (s)": "time s"}


def results_table(summaries, think: dict[str, float], seconds: dict[str, float]) -> FitTable:
    """Laid out for the console's width: short headers at 80 columns, method names never cut."""
    cols = ("method", "n", "accuracy", "thinking tokens", "generated tokens", "peak KV (mean)",
            "dependency (M)", "compressions", "time (s)")
    rows = [(s.method, str(s.n), f"{s.accuracy:.1%}", _fmt(think.get(s.method), ".0f"),
             _fmt(s.mean_tokens, ".0f"), _fmt(s.mean_peak_kv, ".0f"), _fmt(s.dependency_m, ".3f"),
             _fmt(s.compressions, ".1f"), _fmt(seconds.get(s.method, s.run_wall_s), ".1f")) for s in summaries]
    return FitTable("thinkc demo: R1-length synthetic arithmetic, tiny models (this run)", cols, rows,
                    short=RESULTS_SHORT)


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


def run_demo(s: DemoSettings, console: Console | None = None) -> list:
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
        paths, seconds = _infer(s, console, test)

    console.print(Rule("4. evaluate"))
    rows, summaries = evaluate_runs(paths, s.out / "data" / "test.jsonl")
    summaries = relabel(rows, summaries, paths)
    think = thinking_tokens(rows, load_tokenizer("tiny-sft"))
    console.print(results_table(summaries, think, seconds))
    base = next((x for x in summaries if x.method == s.runs[0][0]), summaries[0])
    lines = [verdict(x.method, x, base, think.get(x.method), think.get(base.method))
             for x in summaries if x is not base]
    for line in lines:
        console.print(line)
    write_summary_json(s.out / "summary.json", summaries, thinking_tokens=think, seconds=seconds, verdicts=lines, cts=cts)
    write_markdown(s.out / "summary.md", summaries)
    plots = write_plots(rows, summaries, s.out / "plots")
    console.print(f"wrote {s.out / 'summary.json'}, {s.out / 'summary.md'}, plots: {', '.join(str(p) for p in plots)}")
    return summaries
