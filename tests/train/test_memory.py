"""The memory guard: a batch that cannot fit stops the run; ``auto`` turns activation checkpointing on."""

import pytest

from medllm.errors import MedllmError
from medllm.train.memory import check_memory, estimate_memory
from medllm.train.recipe import build_trainer


def test_memory_guard_stops_a_batch_that_cannot_fit_and_turns_checkpointing_on(tiny_dataset):
    trainer = build_trainer(tiny_dataset)
    plain, checkpointed = estimate_memory(trainer, False), estimate_memory(trainer, True)
    assert checkpointed["activations"] < plain["activations"]
    weights = plain["weights"] + plain["lora_state"]
    between = (weights + (plain["activations"] + checkpointed["activations"]) / 2) / 2**30

    config = tiny_dataset.model_copy(
        update={"train": tiny_dataset.train.model_copy(update={"memory_budget_gb": between})}
    )
    found = check_memory(trainer, config)
    assert found["gradient_checkpointing"] and trainer.args.activation_checkpointing

    for setting in (False, "auto"):
        small = config.model_copy(
            update={
                "train": config.train.model_copy(
                    update={"memory_budget_gb": weights / 2**30, "gradient_checkpointing": setting}
                )
            }
        )
        with pytest.raises(MedllmError, match=r"per_device_train_batch_size.*max_length"):
            check_memory(build_trainer(small), small)

    roomy = config.model_copy(update={"train": config.train.model_copy(update={"memory_budget_gb": 64.0})})
    trainer = build_trainer(roomy)
    assert not check_memory(trainer, roomy)["gradient_checkpointing"] and not trainer.args.activation_checkpointing

    trainer.is_fsdp_enabled = True  # weights not yet sharded when the guard would run: it stands aside
    small = roomy.model_copy(update={"train": roomy.train.model_copy(update={"memory_budget_gb": 1e-6})})
    assert "skipped" in check_memory(trainer, small) and not trainer.args.activation_checkpointing
