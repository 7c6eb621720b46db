"""Keep every key (plain decoding): the baseline for peak KV and dependency."""
from thinkc.infer.policies.base import CachePolicy


class VanillaPolicy(CachePolicy):
    name = "vanilla"
