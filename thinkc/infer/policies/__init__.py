"""Cache policies over the one decode loop (see base.py)."""
from thinkc.infer.policies.anllm import AnLLMPolicy
from thinkc.infer.policies.base import CachePolicy, RowState, SlotView
from thinkc.infer.policies.h2o import H2OPolicy
from thinkc.infer.policies.lightthinker import GistSpec, LightThinkerPolicy
from thinkc.infer.policies.rkv import RKVPolicy
from thinkc.infer.policies.sepllm import SepLLMPolicy, separator_ids
from thinkc.infer.policies.snapkv import SnapKVPolicy
from thinkc.infer.policies.streamingllm import StreamingLLMPolicy
from thinkc.infer.policies.vanilla import VanillaPolicy

METHODS = ("vanilla", "lightthinker", "anllm", "h2o", "sepllm", "streamingllm", "snapkv", "rkv")
GIST_METHODS = ("lightthinker", "anllm")

__all__ = ["AnLLMPolicy", "CachePolicy", "GistSpec", "H2OPolicy", "LightThinkerPolicy", "METHODS", "GIST_METHODS",
           "RKVPolicy", "RowState", "SepLLMPolicy", "SnapKVPolicy", "SlotView", "StreamingLLMPolicy", "VanillaPolicy", "make_policy", "separator_ids"]


DEFAULT_BUDGET = 0.5  # budget methods keep half of each row's keys unless told otherwise (a ratio bites on
#                       every trace length; an absolute 1024 was never reached on short traces)


def make_policy(method: str, *, spec: GistSpec | None = None, tokenizer=None, budget: int | float | None = None,
                window: int | None = None) -> CachePolicy:
    """The policy for a method name. `budget`: keys kept per row, absolute (int) or a share of the
    row's length so far (float in (0, 1); default DEFAULT_BUDGET); `window`: the recent window."""
    from thinkc.errors import ThinkcError

    try:
        return _make_policy(method, spec, tokenizer, budget, window)
    except ValueError as e:  # inconsistent budget/window: the user's to fix
        raise ThinkcError(f"--method {method}: {e}") from None


def _make_policy(method, spec, tokenizer, budget, window) -> CachePolicy:
    from thinkc.errors import ThinkcError

    if method == "vanilla":
        return VanillaPolicy()
    if method in GIST_METHODS:
        if spec is None:
            raise ThinkcError(f"--method {method} needs a gist config (the model's gist_config.json or --gist-config)")
        return (LightThinkerPolicy if method == "lightthinker" else AnLLMPolicy)(spec)
    if method in ("snapkv", "rkv"):  # absolute budgets only (their schedule is in keys); default 1024
        return (SnapKVPolicy if method == "snapkv" else RKVPolicy)(1024 if budget is None else budget, window)
    b = DEFAULT_BUDGET if budget is None else budget
    if method == "h2o":
        return H2OPolicy(b, window)
    if method == "streamingllm":
        return StreamingLLMPolicy(b)
    if method == "sepllm":
        if tokenizer is None:
            raise ThinkcError("sepllm needs the tokenizer (to find separator tokens)")
        if window is None and isinstance(b, int):
            window = min(256, b // 4)
        return SepLLMPolicy(separator_ids(tokenizer), b, window=window)
    raise ThinkcError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")

