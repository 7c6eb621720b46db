"""Inference: the static ragged KV cache with in-place compaction (cache.py), the decode loop and
cache policies (loop.py, policies/)."""
from thinkc.infer.cache import StaticGistCache  # noqa: F401
