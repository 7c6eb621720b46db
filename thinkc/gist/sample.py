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
    meta: GistMeta  # role / seg / doc / expire, 1-D [L]; pos when physically reordered

    # A physically reordered row (thinkc.gist.reorder) keeps every field attached to its token:
    # position_ids stay logical, labels[t] is still the target AT token t, and meta.pos gives each
    # token's logical index (the loss then uses reorder.shifted_labels, not the physical shift).

    def __len__(self) -> int:
        return self.input_ids.numel()

    def prefix(self, n: int) -> "GistSample":
        """The first n tokens (self when it is no longer): a prefix of a layout is a valid layout,
        its metadata kept as computed on the whole (a block cut off never closes: its thought's keys
        never expire inside the prefix). The original LightThinker cuts over-long samples the same way."""
        if len(self) <= n:
            return self
        if self.meta.pos is not None:
            raise ValueError("cannot cut a physically reordered row; cut before reordering")
        m = self.meta
        meta = GistMeta(m.role[:n], m.seg[:n], m.doc[:n], m.expire[:n], m.flags)
        return GistSample(self.input_ids[:n], self.labels[:n], self.position_ids[:n], meta)
