"""`thinkc train`: sft / lightthinker / anllm fine-tuning on the transformers Trainer."""
from thinkc.train.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config", "run_training"]


def run_training(cfg, console=None):
    from thinkc.train.trainer import run_training as _run  # heavy imports only when training

    return _run(cfg, console)
