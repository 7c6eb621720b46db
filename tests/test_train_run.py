"""`thinkc train` end to end on a tiny random model: sft learns (loss falls), the JSONL log and the
final folder are written, resume continues at the checkpoint's step, LoRA saves an adapter, and
packing trains through the document-masked gist path."""
import json
import shutil
import stat

import pytest
import torch

from thinkc.io import _umask
from thinkc.train.callbacks import read_log
from thinkc.train.config import load_config
from thinkc.train.trainer import run_training

TINY = {"init": "tiny", "hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 1,
        "num_attention_heads": 4, "num_key_value_heads": 2}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    from thinkc.data.schema import write_records
    from thinkc.data.synth import synth_records

    p = tmp_path_factory.mktemp("data") / "train.jsonl"
    write_records(p, synth_records(32, seed=1, min_steps=1, max_steps=2, max_value=9, filler=0.2))
    return p


def config(data_file, out, **sections):
    base = {"method": "sft", "model": dict(TINY), "data": {"train": str(data_file), "max_length": 256},
            "train": {"output": str(out), "max_steps": 16, "lr": 5e-3, "batch_size": 4, "logging_steps": 2,
                      "save_steps": 8, "warmup_ratio": 0.0}}
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return load_config(overrides=base)


@pytest.fixture(scope="module")
def sft_run(data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    return out, run_training(config(data_file, out))


def test_sft_loss_falls_and_outputs_are_written(sft_run):
    out, r = sft_run
    assert r.global_step == 16
    log = [row for row in read_log(out / "train_log.jsonl") if "loss" in row]
    assert [row["step"] for row in log][:2] == [1, 2] and log[-1]["step"] == 16
    assert sum(row["loss"] for row in log[-3:]) / 3 < 0.8 * log[0]["loss"]
    final = out / "final"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "train_config.yaml"):
        assert (final / name).is_file(), name
        assert stat.S_IMODE((final / name).stat().st_mode) == 0o666 & ~_umask(), name  # not a temp file's 0600
    assert not (out / ".final.tmp").exists()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    ids = tok("Tom has 3 apples.", return_tensors="pt")["input_ids"]
    assert torch.isfinite(model(ids).logits).all()


def test_resume_continues_at_checkpoint_step(sft_run, data_file, tmp_path):
    src, _ = sft_run
    out = tmp_path / "resumed"
    shutil.copytree(src, out)
    shutil.rmtree(out / "checkpoint-16")
    shutil.rmtree(out / "final")
    n_before = len(read_log(out / "train_log.jsonl"))
    r = run_training(config(data_file, out))  # resume: auto
    assert r.resumed_from is not None and r.resumed_from.endswith("checkpoint-8")
    assert r.global_step == 16
    new = [row for row in read_log(out / "train_log.jsonl")[n_before:] if "loss" in row]
    assert new and min(row["step"] for row in new) > 8  # no step before the checkpoint was redone
    assert (out / "final" / "model.safetensors").is_file()
    state = json.loads((out / "checkpoint-16" / "trainer_state.json").read_text())
    assert state["global_step"] == 16


def test_lora_saves_adapter_and_merged_model(data_file, tmp_path):
    cfg = config(data_file, tmp_path / "lora", lora={"enabled": True, "r": 4, "alpha": 8},
                 train={"max_steps": 3, "save_steps": 100})
    r = run_training(cfg)
    assert r.global_step == 3
    adapter = r.final_dir / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    assert (r.final_dir / "model.safetensors").is_file()  # merged weights, loadable without peft
    from safetensors.torch import load_file

    assert not any("lora" in k for k in load_file(r.final_dir / "model.safetensors"))


def test_packing_trains_with_document_masks(data_file, tmp_path):
    cfg = config(data_file, tmp_path / "packed", data={"packing": True, "max_length": 512},
                 train={"max_steps": 4, "save_steps": 100, "logging_steps": 1})
    r = run_training(cfg)
    assert r.samples < 32  # several samples per row
    losses = [row["loss"] for row in read_log(tmp_path / "packed" / "train_log.jsonl") if "loss" in row]
    assert len(losses) == 4 and all(l == l and l < 20 for l in losses) and losses[-1] < losses[0]
