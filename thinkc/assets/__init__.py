"""Package data: shipped tiny checkpoints live in checkpoints/<name>/ (see thinkc.models.loading)."""
