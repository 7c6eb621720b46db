"""The main job (`thinkc demo`, `make demo`): synthesise data -> CTS-compress it with a reference
model -> infer with vanilla / CTS-trained / LightThinker / H2O on the shipped tiny models ->
evaluate -> comparison table + plots. Every number printed comes from this run."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from thinkc.data.schema import write_records
from thinkc.console import wide_console
from thinkc.data.synth import synth_splits



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
    n_test: int = 100
    n_cts: int = 32
    ratio: float = 0.7  # the ratio tiny-cts was trained at (configs/train/tiny_cts.yaml)
    max_new_tokens: int = 200
    batch_size: int = 8
    h2o_budget: int = 48
    task: dict = field(default_factory=tiny_training_synth)  # n + seed of the training split, task options
    # (label, method, model)
    runs: tuple = (("vanilla", "vanilla", "tiny-sft"), ("cts", "vanilla", "tiny-cts"),
                   ("lightthinker", "lightthinker", "tiny-lightthinker"), ("h2o", "h2o", "tiny-sft"))


def kept_share_by_kind(job, records: list[dict], tokenizer) -> dict[str, float]:
    """Kept share of thinking tokens inside computation vs filler thoughts (the synthetic data knows
    which is which), from the scores the CTS run stored: CTS should keep computation, drop filler."""
    from thinkc.bench.cts import kind_totals
    from thinkc.cts.pipeline import default_store
    from thinkc.cts.select import select
    from thinkc.cts.store import load_store

    store = load_store(default_store(job))

    def selections():
        for rec in records:
            e = store[rec["id"]]
            yield e["ids"], select(tokenizer, rec["thinking"], e["ids"], e["scores"], job.ratios[0], job.options).keep

    tot = kind_totals(tokenizer, records, selections())
    return {kind: k / max(n, 1) for kind, (k, n) in tot.items()}


def run_demo(s: DemoSettings, console: Console | None = None) -> list:
    from thinkc.cts.pipeline import CtsJob, run as run_cts
    from thinkc.eval.metrics import evaluate_runs
    from thinkc.eval.plots import write_plots
    from thinkc.eval.report import rich_table, write_markdown, write_summary_json
    from thinkc.infer.run import InferSettings, prepare, run_inference
    from thinkc.models.loading import load_tokenizer

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line per weight load is noise here
    console = console or wide_console()
    s.out.mkdir(parents=True, exist_ok=True)

    console.print(Rule("1. synthesise the reasoning task"))
    # regenerate the models' training split so the test problems are disjoint from it
    task = dict(s.task)
    n_train, seed = task.pop("n"), task.pop("seed")
    train, test = synth_splits(n_train, s.n_test, seed=seed, **task)
    cts_input = train[: s.n_cts]  # CTS compresses training traces; test problems are unseen
    write_records(s.out / "data" / "cts_input.jsonl", cts_input)
    write_records(s.out / "data" / "test.jsonl", test)
    console.print(f"{len(cts_input)} records to compress, {len(test)} test problems -> {s.out / 'data'}")
    console.print(f"[dim]example question:[/] {test[0].question}")

    console.print(Rule(f"2. CTS: compress reasoning traces at ratio {s.ratio} (reference model: tiny-sft)"))
    job = CtsJob(input=s.out / "data" / "cts_input.jsonl", output=str(s.out / "cts" / "train.jsonl"),
                 ratios=[s.ratio], reference="tiny-sft", batch_size=8)
    (summary,) = run_cts(job, console=console)
    share = kept_share_by_kind(job, [r.to_dict() for r in cts_input], load_tokenizer("tiny-sft"))
    t = Table(title="CTS compression")
    for c in ("records", "tokens before", "tokens after", "achieved ratio", "kept in computations", "kept in filler"):
        t.add_column(c, justify="right")
    t.add_row(str(summary["records"]), str(summary["tokens_before"]), str(summary["tokens_after"]),
              f"{summary['achieved']:.3f}", f"{share['compute']:.0%}", f"{share['filler']:.0%}")
    console.print(t)

    console.print(Rule("3. infer on the test split"))
    run_paths = []
    records = [r.to_dict() for r in test]
    for label, method, model_name in s.runs:
        model, tok, policy, build_prompt, _ = prepare(method, model_name, budget=s.h2o_budget if method == "h2o" else None)
        settings = InferSettings(method=method, model_label=model_name, batch_size=s.batch_size,
                                 max_new_tokens=s.max_new_tokens)
        path = s.out / "infer" / f"{label}.jsonl"
        console.print(f"{label}: {method} on {model_name} ...")
        run_inference(model, tok, records, policy, settings, build_prompt, path)
        run_paths.append(path)

    console.print(Rule("4. evaluate"))
    rows, summaries = evaluate_runs(run_paths, s.out / "data" / "test.jsonl")
    console.print(rich_table(summaries, title="thinkc demo: synthetic arithmetic, tiny models (this run)"))
    write_summary_json(s.out / "summary.json", summaries)
    write_markdown(s.out / "summary.md", summaries)
    plots = write_plots(rows, summaries, s.out / "plots")
    console.print(f"wrote {s.out / 'summary.json'}, {s.out / 'summary.md'}, plots: {', '.join(str(p) for p in plots)}")
    return summaries
