"""Which implementation runs each thinkc op: CUDA kernel -> C++ op -> pure torch.

The compiled ops live in the optional extension `thinkc._C` and register as torch.ops.thinkc.*;
the dispatcher picks the CPU or CUDA kernel by the tensors' device. This module is the one place
that answers "what runs here" (used by the op wrappers and by `thinkc doctor`).
Set THINKC_OPS=torch to force the pure-torch fallbacks (tests compare the two).
"""
from __future__ import annotations

import os
from functools import lru_cache

import torch

OPS = ("build_gist_block_mask", "compact_kv", "compact_kv_paged", "paged_attention")


@lru_cache(maxsize=None)
def extension_status() -> tuple[bool, str]:
    """(loaded, detail): whether thinkc._C imported, and why not if it did not."""
    if os.environ.get("THINKC_OPS") == "torch":
        return False, "disabled by THINKC_OPS=torch"
    try:
        import thinkc._C as ext  # noqa: F401  (registers torch.ops.thinkc.*)
    except ImportError as e:
        return False, f"not built ({e})"
    return True, "cuda+cpu" if getattr(ext, "with_cuda", False) else "cpu"


def _has_kernel(op: str, key: str) -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"thinkc::{op}", key)
    except RuntimeError:
        return False


def backend(op: str, device: torch.device | str = "cpu") -> str:
    """'cuda', 'cpp' or 'torch': what runs `op` for tensors on `device`."""
    if not extension_status()[0]:
        return "torch"
    dev = torch.device(device)
    if dev.type == "cuda":
        return "cuda" if _has_kernel(op, "CUDA") else "torch"
    return "cpp" if _has_kernel(op, "CPU") else "torch"


def report() -> dict[str, dict[str, str]]:
    """{op: {device: backend}} for CPU and, when present, CUDA."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return {op: {d: backend(op, d) for d in devices} for op in OPS}
