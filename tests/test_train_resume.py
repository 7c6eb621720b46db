"""Resume safety without training: a checkpoint cut short by kill -9 or a full disk is skipped (and
cleared), the newest complete one is taken; resuming a folder written with other settings is one
ThinkcError line naming what changed, while run-length / logging keys may change."""
import json

import pytest
import yaml

from thinkc.errors import ThinkcError
from thinkc.train.checkpoints import (check_resume, is_complete, last_complete, remove_incomplete,
                                      resume_checkpoint, setting_changes)
from thinkc.train.config import load_config


def ckpt(root, step, *, state=True, weights=True, torn=False):
    p = root / f"checkpoint-{step}"
    p.mkdir(parents=True)
    if weights:
        (p / "model.safetensors").write_bytes(b"x" * 16)
    if state:
        text = json.dumps({"global_step": step})
        (p / "trainer_state.json").write_text(text[: len(text) // 2] if torn else text)
    return p


def config(tmp_path, **train):
    return load_config(overrides={"model": {"init": "tiny"}, "data": {"train": "synth"},
                                  "train": {"output": str(tmp_path), **train}})


def test_newest_complete_checkpoint_wins_and_incomplete_ones_are_cleared(tmp_path):
    ckpt(tmp_path, 100)
    ckpt(tmp_path, 200)
    ckpt(tmp_path, 300, state=False)  # killed before trainer_state.json (written last)
    ckpt(tmp_path, 400, torn=True)  # disk full while writing it
    ckpt(tmp_path, 500, weights=False)
    assert [is_complete(tmp_path / f"checkpoint-{s}") for s in (100, 200, 300, 400, 500)] == [True, True] + [False] * 3
    assert last_complete(tmp_path).name == "checkpoint-200"
    assert resume_checkpoint(config(tmp_path)).endswith("checkpoint-200")
    assert resume_checkpoint(config(tmp_path, resume="never")) is None
    gone = remove_incomplete(tmp_path)
    assert sorted(p.name for p in gone) == ["checkpoint-300", "checkpoint-400", "checkpoint-500"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-100", "checkpoint-200"]


def test_explicit_incomplete_checkpoint_is_refused(tmp_path):
    bad = ckpt(tmp_path, 7, state=False)
    with pytest.raises(ThinkcError, match="not a complete checkpoint"):
        resume_checkpoint(config(tmp_path, resume=str(bad)))


def write_saved(tmp_path, cfg):
    (tmp_path / "train_config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))


def test_changed_settings_are_refused_in_one_line(tmp_path):
    write_saved(tmp_path, config(tmp_path, lr=1e-3))
    c = str(ckpt(tmp_path, 10))
    with pytest.raises(ThinkcError) as e:
        check_resume(config(tmp_path, lr=2e-3), c)
    msg = str(e.value)
    assert "train.lr: 0.001 -> 0.002" in msg and "--resume never" in msg and "\n" not in msg
    other = load_config(overrides={"method": "lightthinker", "model": {"init": "tiny"}, "data": {"train": "synth"},
                                   "train": {"output": str(tmp_path), "lr": 1e-3}})
    with pytest.raises(ThinkcError, match="method: 'sft' -> 'lightthinker'"):
        check_resume(other, c)


def test_run_length_and_logging_may_change(tmp_path):
    saved = config(tmp_path, lr=1e-3, max_steps=10)
    write_saved(tmp_path, saved)
    c = str(ckpt(tmp_path, 10))
    check_resume(config(tmp_path, lr="1e-3", max_steps=50, logging_steps=1, report_to="tensorboard"), c)
    assert setting_changes(saved.to_dict(), config(tmp_path, lr=1e-3, max_steps=10, seed=3)) == ["train.seed: 0 -> 3"]
    check_resume(config(tmp_path, lr=5.0), None)  # nothing to resume: no check
    older = saved.to_dict()
    del older["data"]["eval_ratio"], older["train"]["report_to"]  # written before these keys existed
    assert setting_changes(older, config(tmp_path, lr=1e-3, max_steps=10)) == []


def test_resume_never_starts_over_and_auto_clears_only_incomplete(tmp_path):
    import io

    from rich.console import Console

    from thinkc.train.trainer import prepare_output

    ckpt(tmp_path, 2)
    ckpt(tmp_path, 4, state=False)
    buf = io.StringIO()
    prepare_output(config(tmp_path), str(tmp_path / "checkpoint-2"), Console(file=buf), "sft: ...")
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2"]
    assert "removed 1 incomplete checkpoint(s): checkpoint-4" in buf.getvalue()
    assert yaml.safe_load((tmp_path / "train_config.yaml").read_text())["method"] == "sft"
    prepare_output(config(tmp_path, resume="never"), None, Console(file=buf), "sft: ...")
    assert not list(tmp_path.glob("checkpoint-*"))  # an old run's checkpoints can never be resumed by mistake
