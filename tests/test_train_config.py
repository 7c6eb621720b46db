"""`thinkc train` configuration: every bad key/value/file is one ThinkcError line, fast, before any
model is loaded; --help documents every option."""
import json

import pytest
from typer.testing import CliRunner

from thinkc.errors import ThinkcError
from thinkc.train.config import load_config, parse_set


@pytest.fixture
def data_file(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"id": "1", "question": "q?", "thinking": "t", "answer": "a"}) + "\n")
    return p


def base(data_file, tmp_path, **extra):
    return {"model": {"init": "tiny"}, "data": {"train": str(data_file)}, "train": {"output": str(tmp_path / "o")}, **extra}


def test_parse_set_reads_yaml_values():
    assert float(parse_set("train.lr=2e-5")["train"]["lr"]) == 2e-5  # YAML 1.1 may keep it a string; config coerces
    assert parse_set("data.packing=true") == {"data": {"packing": True}}
    assert parse_set("lora.target_modules=[q_proj, v_proj]") == {"lora": {"target_modules": ["q_proj", "v_proj"]}}
    with pytest.raises(ThinkcError, match="key=value"):
        parse_set("train.lr")


def test_file_sets_and_overrides_compose(tmp_path, data_file):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"method: sft\nmodel: {{init: tiny}}\ndata: {{train: {data_file}}}\ntrain: {{lr: 1e-3, output: {tmp_path}}}\n")
    cfg = load_config(cfg_file, sets=["train.lr=5e-4", "train.batch_size=3"], overrides={"train": {"epochs": 2}})
    assert cfg.train.lr == pytest.approx(5e-4) and cfg.train.batch_size == 3 and cfg.train.epochs == 2.0
    assert cfg.model.init == "tiny" and cfg.data.train == str(data_file)


@pytest.mark.parametrize("overrides, message", [
    ({"trian": {"lr": 1}}, "unknown config key trian"),
    ({"train": {"lr_rate": 1}}, "unknown config key train.lr_rate"),
    ({"method": "rlhf"}, "method: 'rlhf' is not one of"),
    ({"train": {"lr": "fast"}}, "train.lr: expected a number"),
    ({"train": {"batch_size": 0}}, "train.batch_size: must be >= 1"),
    ({"data": {"packing": "maybe"}}, "data.packing: expected true/false"),
    ({"model": {"init": "tiny", "arch": "gpt2"}}, "model.arch"),
    ({"train": {"deepspeed": "zero9"}}, "train.deepspeed"),
    ({"gist": {"config": "qwen"}}, "gist.config: only used by lightthinker"),
])
def test_bad_values_are_one_line_errors(tmp_path, data_file, overrides, message):
    with pytest.raises(ThinkcError) as e:
        load_config(overrides=_merge(base(data_file, tmp_path), overrides))
    assert message in str(e.value) and "\n" not in str(e.value)


def _merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_missing_data_file(tmp_path):
    with pytest.raises(ThinkcError, match="no such file"):
        load_config(overrides={"model": {"init": "tiny"}, "data": {"train": str(tmp_path / "nope.jsonl")},
                               "train": {"output": str(tmp_path)}})


def test_shipped_deepspeed_names_resolve(tmp_path, data_file):
    for stage in ("zero2", "zero3"):
        cfg = load_config(overrides=base(data_file, tmp_path, train={"output": str(tmp_path), "deepspeed": stage}))
        ds = json.loads(open(cfg.train.deepspeed).read())
        assert ds["zero_optimization"]["stage"] == int(stage[-1])


def _cli(args):
    from thinkc.cli.main import app

    # COLUMNS only: typer reads TERMINAL_WIDTH once, at import, so setting it here would leak into later tests
    return CliRunner().invoke(app, args, env={"COLUMNS": "240"})


def test_cli_help_documents_every_option():
    import typer.core
    import typer.main

    from thinkc.cli.main import app

    cmd = typer.main.get_command(app).commands["train"]
    options = [p for p in cmd.params if isinstance(p, typer.core.TyperOption)]
    assert len(options) >= 20
    assert all(p.help for p in cmd.params), [p.name for p in cmd.params if not p.help]
    assert all(p.help for p in options), [p.name for p in options if not p.help]
    out = _cli(["train", "--help"])
    assert out.exit_code == 0
    for flag in ("--method", "--model", "--data", "--output", "--epochs", "--lr", "--batch-size", "--grad-accum",
                 "--max-length", "--lora", "--lora-r", "--packing", "--gradient-checkpointing", "--bf16",
                 "--resume", "--deepspeed", "--gist-config", "--seed", "--max-steps", "--set"):
        assert flag in out.output


def test_cli_malformed_data_fails_fast_with_line_number(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "question": "q", "thinking": "t", "answer": "a"}\n{not json\n')
    out = _cli(["train", "--model", "tiny", "--data", str(bad), "-o", str(tmp_path / "o"), "--check"])
    assert out.exit_code != 0
    assert isinstance(out.exception, ThinkcError) and ":2" in str(out.exception)


def test_cli_check_prints_resolved_config(tmp_path, data_file):
    out = _cli(["train", "--model", "tiny", "--data", str(data_file), "-o", str(tmp_path / "o"),
                "--lr", "0.01", "--set", "train.seed=7", "--check"])
    assert out.exit_code == 0, out.output
    assert "lr: 0.01" in out.output and "seed: 7" in out.output and "1 records" in out.output


def test_dotted_sets_merge_inside_nested_mappings(tmp_path, data_file):
    cfg = load_config(sets=["data.synth.n=8", "data.synth.max_steps=2"],
                      overrides={"model": {"init": "tiny"}, "data": {"train": "synth"}, "train": {"output": str(tmp_path)}})
    assert cfg.data.synth == {"n": 8, "max_steps": 2}


@pytest.mark.parametrize("steps", [0, -5])
def test_max_steps_below_one_is_one_error(tmp_path, data_file, steps):
    with pytest.raises(ThinkcError, match="train.max_steps: must be >= 1"):
        load_config(overrides=base(data_file, tmp_path, train={"output": str(tmp_path), "max_steps": steps}))
    out = _cli(["train", "--model", "tiny", "--data", str(data_file), "-o", str(tmp_path / "o"),
                "--max-steps", str(steps)])
    assert isinstance(out.exception, ThinkcError), out.output  # main() prints it as one line, exit 2
    assert str(out.exception).startswith(f"--max-steps: must be >= 1, got {steps}")


def test_report_to_and_eval_settings(tmp_path, data_file):
    ok = lambda **t: load_config(overrides=base(data_file, tmp_path, train={"output": str(tmp_path), **t}))
    assert ok(report_to="none").train.report_to == "none"
    assert ok(report_to="tensorboard, wandb").train.report_to == ["tensorboard", "wandb"]
    assert ok(report_to=["none", "tensorboard"]).train.report_to == "tensorboard"
    with pytest.raises(ThinkcError, match="train.report_to: 'mlflow' is not one of none, tensorboard, wandb"):
        ok(report_to="mlflow")
    with pytest.raises(ThinkcError, match="train.eval_steps: needs data.eval"):
        ok(eval_steps=5)
    with pytest.raises(ThinkcError, match="data.eval: .*no such file"):
        load_config(overrides=base(data_file, tmp_path, data={"train": str(data_file), "eval": str(tmp_path / "x")}))


def test_extra_args_pass_through_and_unknown_names(tmp_path, data_file):
    from thinkc.train.arguments import training_arguments

    cfg = load_config(overrides=base(data_file, tmp_path), sets=["train.extra_args.adam_beta2=0.95",
                                                                 "train.extra_args.optim=adamw_torch",
                                                                 "train.device=cpu"])
    args = training_arguments(cfg)
    assert args.adam_beta2 == 0.95 and args.report_to in ([], "none", ["none"])
    for item, message in [("train.extra_args.adam_beta=0.9", "not a TrainingArguments option .*did you mean adam_beta[12]"),
                          ("train.extra_args.learning_rate=0.1", "set by thinkc \\(use train.lr\\)")]:
        bad = load_config(overrides=base(data_file, tmp_path), sets=[item, "train.device=cpu"])
        with pytest.raises(ThinkcError, match=message):
            training_arguments(bad)


def test_shipped_configs_resolve_by_name_and_list_alternatives(tmp_path):
    from thinkc.train.shipped import configs_root, names, shipped

    assert {"tiny_sft", "tiny_lightthinker"} <= set(names("train", ".yaml"))
    assert shipped("deepspeed", "zero3", ".json").parent.parent == configs_root()
    assert shipped("train", "../train/tiny_sft", ".yaml") is None  # a bare name only
    with pytest.raises(ThinkcError, match="no such config file \\(shipped recipes: .*tiny_sft"):
        load_config("tiny_sfft", check_files=False)


def test_report_to_a_tracker_that_is_not_installed_is_one_line(tmp_path, data_file, monkeypatch):
    import importlib.util

    from thinkc.train.arguments import training_arguments

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    cfg = load_config(overrides=base(data_file, tmp_path), sets=["train.report_to=wandb", "train.device=cpu"])
    with pytest.raises(ThinkcError, match="train.report_to: wandb is not installed \\(pip install wandb"):
        training_arguments(cfg)
    cfg = load_config(overrides=base(data_file, tmp_path), sets=["train.report_to=tensorboard", "train.device=cpu"])
    assert training_arguments(cfg).report_to == ["tensorboard"]  # installed with thinkc[all]


def test_check_refuses_an_unknown_extra_argument(tmp_path, data_file):
    out = _cli(["train", "--model", "tiny", "--data", str(data_file), "-o", str(tmp_path / "o"),
                "--set", "train.extra_args.warmup_stepz=3", "--check"])
    assert isinstance(out.exception, ThinkcError)
    assert "train.extra_args.warmup_stepz: not a TrainingArguments option" in str(out.exception)


def test_data_train_may_list_several_files_read_in_order(tmp_path, data_file):
    from thinkc.train.dataset import load_records

    second = tmp_path / "e.jsonl"  # the same id again: e.g. one problem compressed at two CTS ratios
    second.write_text(json.dumps({"id": "1", "question": "q2?", "thinking": "t2", "answer": "a2"}) + "\n")
    cfg = load_config(overrides=base(data_file, tmp_path, data={"train": [str(data_file), str(second)]}))
    records = load_records(cfg)
    questions = [r["question"] if isinstance(r, dict) else r.question for r in records]
    assert questions == ["q?", "q2?"]
    with pytest.raises(ThinkcError, match="nope.jsonl: no such file"):
        load_config(overrides=base(data_file, tmp_path, data={"train": [str(data_file), str(tmp_path / "nope.jsonl")]}))
    with pytest.raises(ThinkcError, match="not both"):
        load_config(overrides=base(data_file, tmp_path, data={"train": [str(data_file), "synth"]}))
