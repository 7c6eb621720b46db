"""A tokenised training/inference sequence in the gist layout, with its per-token metadata.

Produced by the layout builder (thinkc/gist/layout.py), packed by thinkc/gist/packing.py,
turned into masks by thinkc/gist/rule.py (reference) and the fast paths."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from thinkc.gist.rule import GistMeta

IGNORE_INDEX = -100


@dataclass
class GistSample:
    input_ids: torch.Tensor  # [L] int64
    labels: torch.Tensor  # [L] int64, IGNORE_INDEX where no loss; labels[t] is the target AT t (HF shifts)
    position_ids: torch.Tensor  # [L] int64, contiguous over the augmented sequence
    meta: GistMeta  # role / seg / doc / expire, 1-D [L]

    def __len__(self) -> int:
        return self.input_ids.numel()
