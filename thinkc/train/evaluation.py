"""The optional eval split and its metrics.

`data.eval` names an eval records file (or `synth`: a synthetic split with no question shared with
the training problems); `data.eval_ratio` holds out a seeded share of the training records instead.
Evaluation reports `eval_loss` and, for LightThinker (thought-level trigger), `eval_trigger_recall`:
the share of thought ends (positions whose target is the trigger `<w>`) where the model's argmax
prediction is `<w>`, with `eval_trigger_precision` beside it (predicted `<w>` that are thought ends)."""
from __future__ import annotations

import math
import random
from typing import Callable, Optional

import numpy as np

from thinkc.errors import ThinkcError
from thinkc.train.config import TrainConfig


def synth_eval_size(n_train: int) -> int:
    return min(200, max(16, n_train // 20))


def _synth_eval(cfg: TrainConfig) -> list:
    from thinkc.data.synth import synth_splits

    opts = dict(cfg.data.synth)
    n, seed = int(opts.pop("n", 2000)), int(opts.pop("seed", cfg.train.seed))
    n = n if cfg.data.train == "synth" else 1  # a file: any synthetic problems will do
    try:
        return list(synth_splits(n, synth_eval_size(n), seed, **opts)[1])
    except (TypeError, ValueError) as e:
        raise ThinkcError(f"data.eval=synth: {e}") from None


def split_records(cfg: TrainConfig, records: list) -> tuple[list, list]:
    """(train records, eval records); eval is empty when no eval split is configured."""
    d = cfg.data
    if d.eval == "synth":
        return records, _synth_eval(cfg)
    if d.eval:
        from thinkc.train.dataset import _read

        ev = _read(d.eval, d.skip_invalid)
        if not ev:
            raise ThinkcError(f"data.eval: {d.eval}: no records")
        return records, ev
    if d.eval_ratio:
        k = math.ceil(d.eval_ratio * len(records))
        if k >= len(records):
            raise ThinkcError(f"data.eval_ratio: {d.eval_ratio} of {len(records)} records leaves none to train on")
        order = list(range(len(records)))
        random.Random(cfg.train.seed).shuffle(order)
        held = set(order[:k])
        return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]
    return records, []


def trigger_id(tokenizer, gist_config) -> Optional[int]:
    """The `<w>` token id when the layout trains a thought-level trigger (LightThinker), else None."""
    if gist_config is None or not gist_config.uses_trigger:
        return None
    tid = tokenizer.convert_tokens_to_ids(gist_config.trigger)
    return tid if isinstance(tid, int) and tid != tokenizer.unk_token_id else None


def argmax_logits(logits, labels):
    """preprocess_logits_for_metrics: keep the argmax only (not [B, L, vocab] logits per batch)."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def trigger_metrics(trigger: int) -> Callable:
    """compute_metrics for the trigger: labels[t] is the target AT t, predicted from t - 1."""
    def compute(eval_pred) -> dict:
        preds, labels = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)
        pred, target = preds[:, :-1], labels[:, 1:]
        valid = target != -100
        ends = target == trigger
        said = (pred == trigger) & valid
        out = {"trigger_ends": int(ends.sum())}
        out["trigger_recall"] = float((said & ends).sum() / ends.sum()) if ends.any() else float("nan")
        out["trigger_precision"] = float((said & ends).sum() / said.sum()) if said.any() else float("nan")
        return out

    return compute


def metric_kwargs(trigger: Optional[int]) -> dict:
    """Trainer keyword arguments for the metrics (none without a trigger: eval loss only)."""
    if trigger is None:
        return {}
    return {"compute_metrics": trigger_metrics(trigger), "preprocess_logits_for_metrics": argmax_logits}

