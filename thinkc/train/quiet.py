"""Less noise around a training run: the lines a user cannot act on.

- DeepSpeed's "Setting accelerator to CPU. If you have GPU ..." warning on every CPU run (deepspeed
  is imported by the Trainer stack whether or not it is used): on a machine without CUDA the CPU
  accelerator is named up front (DS_ACCELERATOR=cpu, unless the user set it).
- The weight-loading / shard-writing progress bars of every load and save (the rich bar and the
  JSONL log say what matters), and checkpoint rotation's "mtime may not be reliable" notice: off for
  the run, restored after.
- "The tokenizer has new PAD/BOS/EOS tokens ...": thinkc sets pad/eos on purpose (tiny tokenizer,
  pad = eos), so the configs are aligned before the Trainer does it with a warning."""
from __future__ import annotations

import contextlib
import logging
import os


def name_cpu_accelerator() -> None:
    """Call before transformers / deepspeed are imported."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


class _DropNotices(logging.Filter):
    NOTICES = ("mtime may not be reliable",)

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOTICES)


@contextlib.contextmanager
def quiet_run():
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    notices, log = _DropNotices(), logging.getLogger("transformers.trainer_utils")
    log.addFilter(notices)
    try:
        yield
    finally:
        log.removeFilter(notices)
        if was:
            hf_logging.enable_progress_bar()


def align_special_tokens(model, tokenizer) -> None:
    """The Trainer's own pad/bos/eos alignment, done silently (it only warns about what it changed)."""
    try:
        from transformers.trainer_utils import align_special_tokens as align
    except ImportError:  # older transformers: the Trainer does not align either
        return
    log = logging.getLogger("transformers.trainer_utils")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        align(model, tokenizer)
    finally:
        log.setLevel(level)
