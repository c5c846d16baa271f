"""Trainer callbacks: a non-finite loss stops the run and keeps the last good checkpoint."""

import pytest
from transformers import TrainerCallback

from medllm.errors import MedllmError
from medllm.train.recipe import train


class PoisonAt(TrainerCallback):
    """Makes the loss NaN from ``step`` on (a LoRA weight set to NaN)."""

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:
            import torch

            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_dataset):
    config = tiny_dataset
    with pytest.raises(MedllmError, match=r"non-finite loss or gradient at step 3.*checkpoint-2"):
        train(config, callbacks=[PoisonAt(3)])
    assert [c.name for c in config.run.complete_checkpoints()] == ["checkpoint-2"]
    assert not (config.output_dir / "adapter").exists()
    from safetensors.torch import load_file

    weights = load_file(config.output_dir / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    assert all(t.isfinite().all() for t in weights.values())
