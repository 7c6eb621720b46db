"""What teams need around a run: an eval split (eval loss, LightThinker's <w> recall), TensorBoard,
honest step timing (first step apart from steady s/step), the last step's loss in the summary, a
half-written checkpoint skipped on rerun, and LoRA adapters that store only the new token rows and
reload with plain peft (AutoPeftModelForCausalLM, no manual resize) to the merged model's logits."""
import json

import pytest
import torch

from thinkc.errors import ThinkcError
from thinkc.train.callbacks import read_log
from thinkc.train.config import load_config
from thinkc.train.trainer import run_training

TINY = {"init": "tiny", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 4, "num_key_value_heads": 2}
SYNTH = {"n": 24, "min_steps": 1, "max_steps": 2, "max_value": 9}


def lt_config(out, model=None, **train):
    return load_config(overrides={
        "method": "lightthinker", "gist": {"config": "tiny"}, "model": model or dict(TINY),
        "data": {"train": "synth", "synth": SYNTH, "max_length": 256, "eval_ratio": 0.25},
        "train": {"output": str(out), "max_steps": 3, "lr": 1e-2, "batch_size": 4, "logging_steps": 10,
                  "save_steps": 2, "device": "cpu", **train}})


def test_eval_split_timing_last_step_and_tensorboard(tmp_path):
    from thinkc.cli.train import summary

    out = tmp_path / "lt"
    r = run_training(lt_config(out, report_to="tensorboard"))
    log = read_log(out / "train_log.jsonl")
    losses = [row for row in log if "loss" in row]
    assert [row["step"] for row in losses] == [1, 3]  # logging_steps=10: the first and the last step
    assert r.first_loss == losses[0]["loss"] and r.last_loss == losses[1]["loss"] and r.losses_logged == 2
    assert 0 < r.eval["eval_loss"] < 20 and 0.0 <= r.eval["eval_trigger_recall"] <= 1.0
    assert r.eval["eval_trigger_ends"] > 0  # thought ends in the 6 held-out problems
    assert any("eval_loss" in row for row in log)
    end = next(row for row in log if "train_runtime" in row)
    assert end["startup_s"] >= 0 and end["first_step_s"] > 0 and end["steady_s_per_step"] > 0
    assert r.first_step_s == pytest.approx(end["first_step_s"], abs=1e-3)
    line = summary(r)
    assert f"loss {r.first_loss:.3f} -> {r.last_loss:.3f} (2 logged)" in line and "then" in line
    assert "eval_loss" in line
    assert list((out / "runs").rglob("events.out.tfevents.*"))  # TensorBoard event files


def test_torn_checkpoint_is_skipped_and_changed_settings_refused(tmp_path):
    out = tmp_path / "lt"
    run_training(lt_config(out, max_steps=4))
    assert (out / "checkpoint-4").is_dir() and (out / "checkpoint-2").is_dir()
    (out / "checkpoint-4" / "trainer_state.json").write_text('{"global_st')  # kill -9 / full disk mid-save
    with pytest.raises(ThinkcError, match="train.lr: 0.01 -> 0.02"):
        run_training(lt_config(out, max_steps=4, lr=2e-2))
    r = run_training(lt_config(out, max_steps=4))
    assert r.resumed_from.endswith("checkpoint-2") and r.global_step == 4
    assert json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4


@pytest.mark.parametrize("arch", ["qwen2", "llama"])  # tied / untied LM head
def test_lora_adapter_holds_only_new_rows_and_reloads_with_plain_peft(tmp_path, arch):
    from peft import AutoPeftModelForCausalLM
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from thinkc.models.tiny import tiny_model
    from thinkc.models.tokenizer import tiny_tokenizer

    base = tmp_path / "base"
    tok = tiny_tokenizer(400)
    shape = {k: v for k, v in TINY.items() if k != "init"}
    tiny_model(arch, vocab_size=len(tok), seed=0, **shape).save_pretrained(base)
    tok.save_pretrained(base)
    cfg = lt_config(tmp_path / "run", model={"name": str(base)}, max_steps=2, lr=5e-2)
    cfg.lora.enabled, cfg.lora.r, cfg.data.eval_ratio = True, 2, 0.0
    r = run_training(cfg)
    adapter = r.final_dir / "adapter"
    rows = {k: v.shape for k, v in load_file(adapter / "adapter_model.safetensors").items() if "lora_" not in k}
    from transformers import AutoTokenizer

    new = AutoTokenizer.from_pretrained(adapter).convert_tokens_to_ids(["<w>", "<|c_0|>", "<|c_1|>", "[o]"])
    assert min(new) >= len(tok)  # added after the base vocabulary
    assert rows and all(s == (len(new), TINY["hidden_size"]) for s in rows.values()), rows
    assert any("lm_head" in k for k in rows) == (arch == "llama")  # an untied head learns the new rows too
    merged = AutoModelForCausalLM.from_pretrained(r.final_dir).eval()
    peft_model = AutoPeftModelForCausalLM.from_pretrained(adapter).eval()  # resizes from the saved tokenizer
    ids = torch.tensor([[1, 5, 9, *new, 7]])
    with torch.no_grad():
        torch.testing.assert_close(peft_model(ids).logits, merged(ids).logits, atol=1e-5, rtol=1e-4)


KILL_WORKER = """
import json, os, signal, sys
from transformers import Trainer
from thinkc.train.config import load_config
from thinkc.train.trainer import run_training

save = Trainer._save_optimizer_and_scheduler
def killed_mid_save(self, output_dir):  # the weights of checkpoint-4 are on disk, the rest is not
    if self.state.global_step == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return save(self, output_dir)
Trainer._save_optimizer_and_scheduler = killed_mid_save
run_training(load_config(overrides=json.loads(sys.argv[1])))
"""


def test_kill_9_mid_checkpoint_save_then_rerun_resumes(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    cfg = {"model": dict(TINY), "data": {"train": "synth", "synth": SYNTH, "max_length": 256},
           "train": {"output": str(out), "max_steps": 6, "save_steps": 2, "logging_steps": 1, "device": "cpu"}}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", KILL_WORKER, json.dumps(cfg)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == -9, p.stderr[-2000:]
    assert (out / "checkpoint-4" / "model.safetensors").is_file()  # a half checkpoint is left behind
    assert not (out / "checkpoint-4" / "trainer_state.json").exists()
    args = [sys.executable, "-m", "thinkc.cli.main", "train", "--model", "tiny", "--data", "synth", "-o", str(out), "--max-steps", "6", "--device", "cpu",
            "--set", "data.synth.n=24", "--set", "data.synth.min_steps=1", "--set", "data.synth.max_steps=2",
            "--set", "data.synth.max_value=9", "--max-length", "256", "--set", "train.save_steps=2",
            "--set", "train.logging_steps=1"]
    for k, v in TINY.items():
        if k != "init":
            args += ["--set", f"model.{k}={v}"]
    r = subprocess.run(args, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "done: 6 steps" in r.stdout and "removed 1 incomplete checkpoint(s): checkpoint-4" in r.stderr
    for noise in ("Writing model shards", "Loading weights", "missing keys", "Setting accelerator", "PAD/BOS/EOS",
                  "mtime may not"):
        assert noise not in r.stderr + r.stdout, noise
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    steps = [row["step"] for row in read_log(out / "train_log.jsonl") if "loss" in row]
    assert steps[-2:] == [5, 6] and steps.count(3) == 2  # steps 3-4 redone from checkpoint-2, none lost


def test_step_timer_keeps_start_up_first_step_and_pauses_apart(monkeypatch):
    import thinkc.train.callbacks as cb

    clock = iter([0.0, 10.0, 13.0, 14.0, 14.5, 20.5, 21.5, 22.5, 30.0])
    monkeypatch.setattr(cb.time, "perf_counter", lambda: next(clock))
    t = cb.StepTimerCallback()
    t.start()  # 0: trainer.train() called
    t.on_train_begin(None, None, None)  # 10: DeepSpeed & co. took 10 s
    t.on_step_end(None, None, None)  # 13: first step 3 s
    t.on_step_end(None, None, None)  # 14
    t.on_log(None, None, None, logs={"loss": 1.0})  # 14.5
    t.on_evaluate(None, None, None)  # 20.5: a 6 s evaluation
    t.on_step_end(None, None, None)  # 21.5
    t.on_step_end(None, None, None)  # 22.5
    logs = {"train_runtime": 1.0}
    t.on_log(None, None, None, logs=logs)  # 30
    assert t.startup_s == 10.0 and t.first_step_s == 3.0 and t.pause_s == 6.0
    assert t.steady_s_per_step == pytest.approx((22.5 - 13.0 - 6.0) / 3)
    assert logs["first_step_s"] == 3.0 and logs["pause_s"] == 6.0 and logs["startup_s"] == 10.0


@pytest.mark.slow
@pytest.mark.smollm2
def test_smollm2_lora_adapter_is_small_and_reloads_with_plain_peft(smollm2_path, tmp_path):
    """SmolLM2-135M (tied head), LightThinker, 9 new tokens: the adapter stores 9 x 576 token values
    beside the LoRA matrices (it was 235 MB with the whole resized embedding and head)."""
    from peft import AutoPeftModelForCausalLM
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    cfg = load_config("smollm2_lightthinker", sets=[
        f"train.output={tmp_path / 'run'}", "train.max_steps=1", "train.batch_size=1", "train.grad_accum=1",
        "data.synth.n=2", "data.max_length=160", "lora.enabled=true", "lora.r=8", "train.device=cpu",
        "train.save_steps=100"])
    r = run_training(cfg)
    adapter = r.final_dir / "adapter" / "adapter_model.safetensors"
    tensors = load_file(adapter)
    rows = {k: tuple(v.shape) for k, v in tensors.items() if "lora_" not in k}
    assert list(rows.values()) == [(9, 576)], rows
    assert adapter.stat().st_size < 10 * 2**20
    merged = AutoModelForCausalLM.from_pretrained(r.final_dir).eval()
    peft_model = AutoPeftModelForCausalLM.from_pretrained(r.final_dir / "adapter").eval()
    ids = torch.tensor([[1, 200, 300, 49152, 49153, 49160, 5]])
    with torch.no_grad():
        torch.testing.assert_close(peft_model(ids).logits, merged(ids).logits, atol=2e-3, rtol=1e-3)
