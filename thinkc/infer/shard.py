"""One replica per process under torchrun / accelerate: the input is sharded by position
(sample i goes to rank i % world size: the seed's split_size/index, automatic), each rank decodes
its shard into `<output>.shard-R-of-N` (resumable like any output), and rank 0 merges every shard
with rows already in `output`, in input order, atomically. Ranks wait for each other with a
torch.distributed barrier (gloo on CPU, nccl on GPU), created here when the launcher has not."""
from __future__ import annotations

import json
import os
from pathlib import Path

from thinkc.io import atomic_write


def world() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when initialised, else the launcher's environment."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard_path(output, rank: int, size: int) -> Path:
    p = Path(output)
    return p.with_name(f"{p.name}.shard-{rank}-of-{size}")


def _barrier() -> None:
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    dist.barrier()


def run_sharded(run_local, model, tokenizer, records, policy, settings, build_prompt, output, on_tokens, on_sample,
                stats, rank: int, size: int) -> list[dict]:
    """`run_local`: thinkc.infer.run's single-process run, called on this rank's shard."""
    from thinkc.infer.outputs import check_resumable, read_done

    merged = read_done(output)
    check_resumable(merged, settings, output)
    mine = [r for i, r in enumerate(records) if i % size == rank and str(r["id"]) not in merged]
    part = shard_path(output, rank, size)
    if mine:
        run_local(model, tokenizer, mine, policy, settings, build_prompt, part, on_tokens, on_sample, stats)
    _barrier()
    if rank == 0:
        for r in range(size):
            merged.update(read_done(shard_path(output, r, size)))
        ids = [str(r["id"]) for r in records]
        keep = set(ids)
        rows = [merged[i] for i in ids] + [row for k, row in merged.items() if k not in keep]
        with atomic_write(output) as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        for r in range(size):
            shard_path(output, r, size).unlink(missing_ok=True)
    _barrier()
    done = read_done(output)
    return [done[str(r["id"])] for r in records]
