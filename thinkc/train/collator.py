"""Stack GistSamples into a batch: right-padding with IGNORE labels and PAD metadata (doc -1, so pad
keys are never visible). The gist metadata travels as `gist_*` tensors; the trainer turns it into
the attention mask on the model's device (a BlockMask on GPU, a dense additive mask on CPU).

Physically reordered samples (thinkc.gist.reorder) add `gist_pos` (each token's logical index;
padding continues past the row) and `shift_labels`: the target at each token is its logical
successor's label, which transformers' loss takes as is instead of shifting by one physical position
(`labels` is then the same tensor, so the loss and the Trainer's token count both use it)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from thinkc.gist.reorder import shifted_labels
from thinkc.gist.rule import NEVER, Role
from thinkc.gist.sample import IGNORE_INDEX, GistSample

META_KEYS = ("gist_role", "gist_seg", "gist_doc", "gist_expire")


@dataclass
class GistCollator:
    pad_id: int
    pad_to_multiple_of: int = 8  # friendlier tile shapes; extra columns are padding

    def __call__(self, samples: list[GistSample]) -> dict[str, torch.Tensor]:
        L = max(len(s) for s in samples)
        if self.pad_to_multiple_of > 1:
            L = -(-L // self.pad_to_multiple_of) * self.pad_to_multiple_of
        B = len(samples)
        batch = {
            "input_ids": torch.full((B, L), self.pad_id, dtype=torch.long),
            "labels": torch.full((B, L), IGNORE_INDEX, dtype=torch.long),
            "position_ids": torch.zeros((B, L), dtype=torch.long),
            "gist_role": torch.full((B, L), int(Role.PAD), dtype=torch.int8),
            "gist_seg": torch.full((B, L), -1, dtype=torch.int32),
            "gist_doc": torch.full((B, L), -1, dtype=torch.int32),
            "gist_expire": torch.full((B, L), NEVER, dtype=torch.int32),
        }
        for i, s in enumerate(samples):
            n = len(s)
            batch["input_ids"][i, :n] = s.input_ids
            batch["labels"][i, :n] = s.labels
            batch["position_ids"][i, :n] = s.position_ids
            # Padding positions continue the row's last position (keeps RoPE indices in range).
            if n < L:
                batch["position_ids"][i, n:] = torch.arange(L - n) + int(s.position_ids[-1]) + 1
            m = s.meta
            batch["gist_role"][i, :n] = m.role.to(torch.int8)
            batch["gist_seg"][i, :n] = m.seg.to(torch.int32)
            batch["gist_doc"][i, :n] = m.doc.to(torch.int32)
            batch["gist_expire"][i, :n] = m.expire.to(torch.int32)
        reordered = {s.meta.pos is not None for s in samples}
        if reordered == {True}:
            _add_reordered(batch, samples)
        elif len(reordered) > 1:
            raise ValueError("a batch mixes physically reordered and sequence-order samples")
        return batch


def _add_reordered(batch: dict[str, torch.Tensor], samples: list[GistSample]) -> None:
    B, L = batch["input_ids"].shape
    pos = torch.arange(L).repeat(B, 1)  # padding: logical indices past the row's own
    shift = torch.full((B, L), IGNORE_INDEX, dtype=torch.long)
    for i, s in enumerate(samples):
        n = len(s)
        pos[i, :n] = s.meta.pos.long()
        shift[i, :n] = shifted_labels(s.labels.long(), s.meta.pos)
    batch["gist_pos"] = pos
    batch["shift_labels"] = shift
    batch["labels"] = shift
