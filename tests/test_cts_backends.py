"""Comparison backends: LLMLingua (longllmlingua path, patched for offline + transformers 5) and
LLMLingua-2 (token classification) on tiny local models; the unconditional backend in the pipeline."""
import json

import pytest
import torch

from thinkc.cts.backends import make_backend
from thinkc.cts.pipeline import CtsJob, run
from thinkc.errors import ThinkcError
from thinkc.models.tiny import tiny_model

THINK = "\n\n".join(["Let me compute step by step. 12 + 7 = 19.", "Hmm, let me double-check that. Wait, I should restate.",
                     "Then 19 - 5 = 14.", "Okay, so we know that the total is the sum of the parts."] * 5)

pytest.importorskip("llmlingua")


@pytest.fixture
def tiny_folder(tmp_path, tokenizer):
    folder = tmp_path / "ref"
    tiny_model("llama", vocab_size=len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_llmlingua_compresses_long_trace_offline(tiny_folder, tokenizer):
    b = make_backend("llmlingua", tiny_folder)
    n = len(tokenizer(THINK, add_special_tokens=False)["input_ids"])
    assert n > 200  # longer than llmlingua's iterative_size: exercises the patched KV-cache path
    out = b.compress([{"thinking": THINK, "answer": "\\boxed{14}"}], 0.5)[0]
    m = len(tokenizer(out, add_special_tokens=False)["input_ids"])
    assert 0 < m < n and not out.endswith("\\boxed{14}")
    assert b.compress([{"thinking": THINK, "answer": "x"}], 1.0)[0] == THINK


def test_llmlingua_needs_a_folder():
    with pytest.raises(ThinkcError, match="no such local folder"):
        make_backend("llmlingua", "no/such/folder")


def test_llmlingua2_needs_a_folder():
    with pytest.raises(ThinkcError, match="llmlingua2 backend needs"):
        make_backend("llmlingua2", None)


def test_llmlingua2_with_local_token_classifier(tmp_path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,=+-") + \
        ["let", "me", "compute", "wait", "hmm", "the", "then", "step", "by", "so", "we", "know", "sum", "of", "parts"] + [f"##{d}" for d in range(10)]
    tk = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tk.normalizer, tk.pre_tokenizer = normalizers.BertNormalizer(), pre_tokenizers.BertPreTokenizer()
    tok = BertTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                            pad_token="[PAD]", mask_token="[MASK]")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, num_labels=2)
    BertForTokenClassification(cfg).save_pretrained(tmp_path / "ll2")
    tok.save_pretrained(tmp_path / "ll2")
    b = make_backend("llmlingua2", str(tmp_path / "ll2"))
    out = b.compress([{"thinking": THINK, "answer": "14"}], 0.5)[0]
    assert 0 < len(out.split()) < len(THINK.split())
    assert all(d in out for d in ("12", "19", "14"))  # digits are force-kept


def test_llmlingua_in_pipeline_reports_achieved_ratio(tmp_path, tiny_folder, tokenizer):
    recs = [{"id": f"r{i}", "thinking": THINK[: 120 + 40 * i], "answer": "\\boxed{14}"} for i in range(3)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    job = CtsJob(input=tmp_path / "in.jsonl", output=str(tmp_path / "o.jsonl"), ratios=[0.5], backend="llmlingua",
                 reference=tiny_folder, chunk_size=2)
    rows = run(job)
    out = [json.loads(l) for l in (tmp_path / "o.r0.5.jsonl").open(encoding="utf-8")]
    assert [o["meta"]["cts"]["backend"] for o in out] == ["llmlingua"] * 3
    assert rows[0]["tokens_after"] == sum(o["meta"]["cts"]["tokens_after"] for o in out)
    assert 0 < rows[0]["achieved"] < 1
    assert sorted(p.name for p in (tmp_path / "o.cts-llmlingua" / "shard-0-of-1").glob("*.npz")) == \
        ["chunk-000000.r0.5.npz", "chunk-000001.r0.5.npz"]


def test_unconditional_backend_in_pipeline(tmp_path, tokenizer):
    recs = [{"id": f"r{i}", "thinking": THINK[: 100 + 30 * i], "answer": "\\boxed{14}"} for i in range(3)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    job = CtsJob(input=tmp_path / "in.jsonl", output=str(tmp_path / "o.jsonl"), ratios=[0.6], backend="unconditional")
    rows = run(job, model=tiny_model("qwen2", vocab_size=len(tokenizer)), tokenizer=tokenizer)
    assert rows[0]["records"] == 3
    out = [json.loads(l) for l in (tmp_path / "o.r0.6.jsonl").open(encoding="utf-8")]
    assert all(o["meta"]["cts"]["backend"] == "unconditional" for o in out)
    assert (tmp_path / "o.cts-unconditional" / "shard-0-of-1" / "meta.json").is_file()


def test_unsupported_llmlingua_version_is_named(monkeypatch):
    import importlib.metadata

    from thinkc.cts.backends.llmlingua import compressor_class

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.9.0" if name == "llmlingua" else real(name))
    with pytest.raises(ThinkcError, match=r"llmlingua 0\.9\.0 is not supported"):
        compressor_class()
