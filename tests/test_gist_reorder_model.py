"""A physically reordered row trains exactly like the sequence-order row: a tiny Qwen2 / Llama gives
the same per-token logits (put back in sequence order), the same loss and the same gradients, fp32
to 1e-5, through the collator (gist_pos, shift_labels) and transformers' own loss; packed rows and
every flag included. And `thinkc train` with data.reorder=true logs the losses of data.reorder=false."""
from __future__ import annotations

import pytest
import torch

from thinkc.data.synth import synth_records
from thinkc.gist.config import GistConfig
from thinkc.gist.layout import build_record_samples
from thinkc.gist.packing import pack_samples
from thinkc.gist.reorder import reorder_sample, restore_order
from thinkc.gist.rule import GistMeta
from thinkc.gist.tokens import add_gist_tokens
from thinkc.models.patch import enable_gist_attention, gist_attention_mask
from thinkc.models.tiny import tiny_model
from thinkc.train.collator import META_KEYS, GistCollator

CONFIGS = {
    # thoughts only; a cache token sees its own segment and only itself among its siblings; [o] expires
    "see_current+diagonal+exclude_continue": dict(see_current=True, diagonal=True, exclude_continue=True),
    # recover + hybrid, plain prefill (CACHE_PLAIN prompt blocks), siblings see each other; packed
    "recover+hybrid+bi_directional+plain_prefill": dict(mode="recover", hybrid=True, bi_directional=True,
                                                        prefill_compress=False),
}


def forward(model, collator, samples, flags, drop_shift: bool = False):
    """(loss, logits in sequence order, gradients) of one batch, as GistTrainer computes them."""
    batch = collator(samples)
    meta = GistMeta(*(batch.pop(k) for k in META_KEYS), flags, batch.pop("gist_pos", None))
    if drop_shift:  # the wrong way: labels attached to tokens, shifted by transformers in physical order
        batch.pop("shift_labels")
        batch["labels"] = torch.stack([torch.nn.functional.pad(s.labels, (0, batch["labels"].shape[1] - len(s)),
                                                               value=-100) for s in samples])
    batch["attention_mask"] = gist_attention_mask(meta, torch.float32, "cpu")
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    logits = out.logits.detach() if meta.pos is None else restore_order(out.logits.detach(), meta.pos)
    return out.loss.detach(), logits, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_reordered_rows_give_the_same_logits_loss_and_gradients(tokenizer, arch, name, one_torch_thread):
    cfg = GistConfig.load("tiny").replace(train_on_input=True, **CONFIGS[name])
    add_gist_tokens(tokenizer, None, cfg)
    samples = [s.prefix(200) for r in synth_records(2, seed=3, style="short")
               for s in build_record_samples(r, tokenizer, cfg)]
    if cfg.hybrid:  # packed: two rows of several documents each, padded
        samples = pack_samples(samples, max(len(s) for s in samples) * 2 + 5, pad_id=tokenizer.pad_token_id)
    reordered = [reorder_sample(s) for s in samples]
    assert all(not torch.equal(r.meta.pos, torch.arange(len(r))) for r in reordered)
    model = tiny_model(arch, vocab_size=len(tokenizer), seed=0)
    enable_gist_attention(model)
    collator = GistCollator(pad_id=tokenizer.pad_token_id)
    loss, logits, grads = forward(model, collator, samples, cfg.flags)
    r_loss, r_logits, r_grads = forward(model, collator, reordered, cfg.flags)
    torch.testing.assert_close(r_loss, loss, atol=1e-5, rtol=0)
    real = torch.stack([torch.nn.functional.pad(s.meta.doc >= 0, (0, logits.shape[1] - len(s))) for s in samples])
    torch.testing.assert_close(r_logits[real], logits[real], atol=1e-5, rtol=0)
    for g, want in zip(r_grads, grads):
        torch.testing.assert_close(g, want, atol=1e-5, rtol=0)
    wrong, _, _ = forward(model, collator, reordered, cfg.flags, drop_shift=True)
    assert abs(wrong.item() - loss.item()) > 1e-4  # the physical shift trains other targets (random model: ~log V)


@pytest.mark.slow  # two short training runs (~8 s)
def test_thinkc_train_reordered_logs_the_same_losses(tmp_path, monkeypatch):
    import thinkc.train.trainer as trainer
    from thinkc.train.callbacks import read_log
    from thinkc.train.config import load_config

    import thinkc.train.dataset as dataset

    built, moved = [], []
    real_build = trainer.build_samples

    def spy(*args, **kw):
        out = real_build(*args, **kw)
        built.append([s.meta.pos is not None for s in out[0]])
        moved.append(sum(s.meta.pos is not None and not torch.equal(s.meta.pos, torch.arange(len(s))) for s in out[0]))
        return out

    monkeypatch.setattr(trainer, "build_samples", spy)
    monkeypatch.setattr(dataset, "REORDER_TILE", 16)  # rows this short gain from reordering at 16-token tiles
    losses = {}
    for reorder in (False, True):
        cfg = load_config(overrides={
            "method": "lightthinker", "gist": {"config": "tiny"},
            "model": {"init": "tiny", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                      "num_attention_heads": 4, "num_key_value_heads": 2},
            "data": {"train": "synth", "synth": {"n": 6, "min_steps": 1, "max_steps": 2, "style": "short"},
                     "max_length": 256, "packing": True, "reorder": reorder},
            "train": {"output": str(tmp_path / str(reorder)), "max_steps": 3, "lr": 1e-2, "lr_scheduler": "constant",
                      "batch_size": 2, "logging_steps": 1, "save_steps": 100, "device": "cpu"}})
        trainer.run_training(cfg)
        losses[reorder] = [r["loss"] for r in read_log(tmp_path / str(reorder) / "train_log.jsonl") if "loss" in r]
    assert built == [[False] * len(built[0]), [True] * len(built[1])]
    assert moved[0] == 0 and moved[1] >= 1, moved
    assert len(losses[True]) == 3
    assert losses[True] == pytest.approx(losses[False], abs=1e-5)


def test_check_reports_the_tile_shares(capsys):
    from rich.console import Console

    from cli.train import print_check
    from thinkc.train.config import load_config

    cfg = load_config(overrides={
        "method": "lightthinker", "gist": {"config": "tiny"}, "model": {"init": "tiny"},
        "data": {"train": "synth", "synth": {"n": 4, "style": "short"}, "max_length": 1024, "packing": True},
        "train": {"output": "unused"}})
    print_check(cfg, Console(width=400))
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("attention tiles computed")]
    assert len(line) == 1 and "as laid out" in line[0] and "reordered" in line[0] and "plain causal" in line[0]
    from thinkc.train.dataset import load_records, tile_shares

    t = tile_shares(cfg, load_records(cfg), block=16)
    assert 0 < t["reordered"] <= t["as_laid_out"] <= t["causal"] <= 1 and t["rows"] >= 1
