"""Multi-process training: `torchrun --nproc_per_node 2 -m thinkc.cli.main train ...` on CPU (gloo)."""
import json
import os
import subprocess
import sys

import pytest

from thinkc.train.callbacks import read_log


@pytest.mark.slow
def test_torchrun_two_processes_on_gloo(tmp_path):
    data = tmp_path / "d.jsonl"
    with open(data, "w") as f:
        for i in range(16):
            a, b = i % 7 + 1, i % 5 + 2
            f.write(json.dumps({"id": str(i), "question": f"Tom has {a} apples and buys {b} more. How many?",
                                "thinking": f"{a} + {b} = {a + b}.", "answer": f"\\boxed{{{a + b}}}"}) + "\n")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "thinkc.cli.main", "train", "--model", "tiny", "--data", str(data), "-o", str(out),
           "--max-steps", "3", "--batch-size", "2", "--set", "train.logging_steps=1",
           "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64",
           "--set", "model.num_hidden_layers=1", "--set", "train.device=cpu"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    log = [r for r in read_log(out / "train_log.jsonl") if "loss" in r]
    assert [r["step"] for r in log] == [1, 2, 3]  # logged once (rank 0), not twice
    # 16 rows, 2 per device, 2 processes -> 4 steps per epoch: step 3 is epoch 0.75 only with 2 ranks
    assert abs(log[-1]["epoch"] - 0.75) < 1e-6
    assert (out / "final" / "model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_two_cpu_processes(tmp_path, stage):
    """ZeRO-2 / ZeRO-3 (the shipped presets) on 2 CPU processes (gloo): 3 steps, one log, a loadable
    final model, and the start-up (DeepSpeed init) reported apart from the step times. No C++ op is
    compiled: an empty torch-extensions dir stays empty (thinkc skips DeepSpeed's shm comm op, which
    only DeepSpeed inference uses; the presets offload nothing, so no DeepSpeedCPUAdam either)."""
    out, ext = tmp_path / "run", tmp_path / "torch_extensions"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TORCH_EXTENSIONS_DIR": str(ext)}
    env.pop("THINKC_DEEPSPEED_SHM_OP", None)
    port = {"zero2": "29519", "zero3": "29521"}[stage]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "-m", "thinkc.cli.main", "train", "--model", "tiny", "--data", "synth", "--set", "data.synth.n=16",
           "-o", str(out), "--max-steps", "3", "--batch-size", "2", "--max-length", "128", "--deepspeed", stage,
           "--set", "train.logging_steps=1", "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64",
           "--set", "model.num_hidden_layers=1", "--set", "train.device=cpu"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert not ext.exists() or not any(ext.rglob("*.so")), sorted(ext.rglob("*"))
    assert "built successfully" not in p.stdout + p.stderr
    log = read_log(out / "train_log.jsonl")
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    end = next(r for r in log if "train_runtime" in r)
    assert end["startup_s"] >= 0 and end["first_step_s"] > 0 and end["steady_s_per_step"] > 0
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "final")  # ZeRO-3: 16-bit weights gathered on save
    assert model.get_input_embeddings().weight.shape[1] == 32
    assert json.loads((out / "final" / "config.json").read_text())["hidden_size"] == 32


@pytest.mark.slow
def test_fsdp2_two_cpu_processes(tmp_path):
    """The shipped FSDP2 accelerate config, made a CPU variant (use_cpu, no mixed precision, 2
    processes), runs `thinkc train` for 3 steps with the decoder layers sharded by torch's
    fully_shard on gloo (tests/_fsdp_cpu_worker.py: accelerate itself keeps FSDP for accelerators),
    and final/ is an ordinary loadable model (FULL_STATE_DICT)."""
    import yaml

    from thinkc.train.shipped import shipped

    cfg = yaml.safe_load(shipped("accelerate", "fsdp2", ".yaml").read_text())
    cfg.update(use_cpu=True, mixed_precision="no", num_processes=2)
    (tmp_path / "fsdp2_cpu.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    worker = os.path.join(os.path.dirname(__file__), "_fsdp_cpu_worker.py")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(tmp_path / "fsdp2_cpu.yaml"),
           "--main_process_port", "29531", worker, "train", "--model", "tiny", "--data", "synth",
           "--set", "data.synth.n=16", "-o", str(out), "--max-steps", "3", "--batch-size", "2", "--max-length", "128",
           "--set", "train.logging_steps=1", "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64",
           "--set", "model.num_hidden_layers=2", "--set", "train.device=cpu", "--set", "train.deepspeed=null"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    ranks = [json.loads((out / f"fsdp_rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:  # sharded: every parameter a DTensor, each rank holding about half of the weights
        assert r["is_fsdp2"] and r["distributed_type"].endswith("FSDP") and r["wrapper"].startswith("FSDP")
        assert r["dtensor_params"] == r["params"] > 0
        assert r["local_numel"] < 0.6 * r["full_numel"]
    assert ranks[0]["local_numel"] + ranks[1]["local_numel"] >= ranks[0]["full_numel"]
    log = read_log(out / "train_log.jsonl")
    losses = [r["loss"] for r in log if "loss" in r]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3] and all(x == x and x > 0 for x in losses)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "final")
    assert model.get_input_embeddings().weight.shape[1] == 32 and model.config.num_hidden_layers == 2
    assert sum(p.numel() for p in model.parameters()) == ranks[0]["full_numel"]
    saved = sum(float(p.detach().abs().sum()) for p in model.parameters())  # final/ holds the trained weights
    assert saved == pytest.approx(ranks[0]["abs_sum"], rel=1e-5) and ranks[1]["abs_sum"] == ranks[0]["abs_sum"]


def test_fsdp2_accelerate_config_is_valid():
    """configs/accelerate/fsdp2.yaml is what `accelerate launch --config_file` reads: FSDP, version 2,
    a full state dict on save (ordinary safetensors in final/). The CPU run is the test above; the
    GPU run (bf16, 8 processes) is a GPU check (docs/training.md)."""
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    from thinkc.train.shipped import shipped

    c = ClusterConfig.from_yaml_file(str(shipped("accelerate", "fsdp2", ".yaml")))
    assert c.distributed_type == DistributedType.FSDP and c.fsdp_config["fsdp_version"] == 2
    assert c.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT" and not c.use_cpu
