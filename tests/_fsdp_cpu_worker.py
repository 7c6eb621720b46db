"""Training script for test_train_dist's FSDP2-on-CPU test, run by `accelerate launch` on 2 CPU
processes: `thinkc train <argv>` with one shim, in this harness only (not in thinkc).

accelerate (1.15) turns FSDP on only for accelerator process groups (MULTI_GPU, MULTI_XPU, ...): a
CPU launch becomes MULTI_CPU and the FSDP plugin is dropped without a word (plain DDP). torch's
FSDP2 (`fully_shard`) itself runs on CPU with gloo. The shim lifts that one gate: after
AcceleratorState is set up as MULTI_CPU with an FSDP plugin, it is marked FSDP with that plugin,
so the Trainer prepares the model through accelerate's own fsdp2_prepare_model (DTensor shards,
FULL_STATE_DICT gathered on save). Each rank writes <output>/fsdp_rank<r>.json: what it trained."""
import functools
import json
import os
import sys

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

_init = AcceleratorState.__init__


@functools.wraps(_init)
def _fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type, self.fsdp_plugin = DistributedType.FSDP, fsdp_plugin
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP


AcceleratorState.__init__ = _fsdp_on_cpu

from transformers import Trainer  # noqa: E402

_train = Trainer.train


def _train_and_report(self, *args, **kwargs):
    out = _train(self, *args, **kwargs)
    from torch.distributed.tensor import DTensor

    model = self.model_wrapped
    params = dict(model.named_parameters())
    report = {"distributed_type": str(self.accelerator.distributed_type), "is_fsdp2": self.accelerator.is_fsdp2,
              "wrapper": type(model).__name__, "params": len(params),
              "dtensor_params": sum(isinstance(p, DTensor) for p in params.values()),
              "local_numel": sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in params.values()),
              "full_numel": sum(p.numel() for p in params.values()),
              # the trained weights gathered (a collective: every rank calls full_tensor)
              "abs_sum": sum(float((p.full_tensor() if isinstance(p, DTensor) else p).abs().sum())
                             for p in params.values())}
    with open(os.path.join(self.args.output_dir, f"fsdp_rank{self.args.process_index}.json"), "w") as f:
        json.dump(report, f)
    return out


Trainer.train = _train_and_report

from thinkc.cli.main import main  # noqa: E402

sys.argv = ["thinkc", *sys.argv[1:]]
main()
