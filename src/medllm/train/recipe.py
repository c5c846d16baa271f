"""``medllm train``: LoRA supervised fine-tuning with PEFT and TRL's SFTTrainer.

The recipe, top to bottom: load the base model and its chat template, wrap it
in a LoRA adapter, check that the largest batch fits in memory (turning on
activation checkpointing when ``train.gradient_checkpointing`` is ``auto`` and
it must: :mod:`medllm.train.memory`), train on prompt/completion pairs (loss
on the answer only, with no full-vocabulary logits for the whole batch:
:mod:`medllm.train.loss`), checkpoint every ``train.save_steps`` and at the
end, then write the adapter, tokenizer, resolved config and metrics into the
run folder. A non-finite loss stops the run before the optimizer step, so the
newest checkpoint stays the last good one (:mod:`medllm.train.callbacks`).

Runs the same under ``accelerate launch`` (configs/accelerate/): the Trainer
shards the data per rank and gathers evaluation; the run folder, logs and
adapter are written by rank 0 only.

Run folder layout::

    config.yaml            resolved configuration
    checkpoints/           checkpoint-N (adapter, optimizer, RNG, trainer state)
    logs/                  TensorBoard events and metrics.csv
    adapter/               final LoRA adapter + tokenizer
    train_summary.json     written last: the run is finished
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from transformers import TrainerCallback

from medllm.config import Config, save_config
from medllm.errors import MedllmError
from medllm.io import atomic_directory, atomic_write_json
from medllm.models import load_model, load_tokenizer
from medllm.train.callbacks import CsvLogger, DiagnosisAccuracy, StopOnNonFinite
from medllm.train.loss import AnswerOnlyLossTrainer
from medllm.train.memory import check_memory

log = logging.getLogger(__name__)


def _prepare_run_folder(config: Config, resume: bool, overwrite: bool) -> Path | None:
    """Guard finished and half-finished runs; return the checkpoint to resume from."""
    run = config.run
    if overwrite:
        run.clear_training()
        return None
    if run.train_summary.exists():
        raise MedllmError(f"{run.root} holds a finished run; pass --overwrite to replace it or set --output_dir")
    latest = run.latest_checkpoint()
    if resume:
        if latest is None:
            raise MedllmError(f"--resume: no complete checkpoint under {run.checkpoints}")
        return latest
    if run.checkpoints.exists() and any(run.checkpoints.iterdir()):
        raise MedllmError(
            f"{run.checkpoints} holds checkpoints of an unfinished run; "
            "pass --resume to continue it or --overwrite to start again"
        )
    return None


def training_arguments(config: Config):
    """The recipe's ``SFTConfig``: one place for what ``medllm train`` and the benchmarks run.

    Activation checkpointing is on here only when set to ``true``; ``auto`` is
    decided by :func:`medllm.train.memory.check_memory` once the model is loaded.
    """
    from trl import SFTConfig

    cfg = config.train
    return SFTConfig(
        output_dir=str(config.run.checkpoints),
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        packing=cfg.packing,
        packing_strategy="bfd",  # whole examples, best-fit decreasing; position ids restart per example
        bf16=cfg.bf16,
        torch_compile=cfg.torch_compile,
        activation_checkpointing=cfg.gradient_checkpointing is True,
        completion_only_loss=True,
        logging_steps=cfg.logging_steps,
        logging_nan_inf_filter=False,  # a NaN loss shows as NaN (and StopOnNonFinite stops the run)
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        ddp_find_unused_parameters=False,  # every LoRA weight has a gradient each step; True adds a graph walk
    )


def lora_config(config: Config):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        task_type="CAUSAL_LM",
    )


def build_trainer(config: Config, callbacks: list[TrainerCallback] | None = None):
    """An ``SFTTrainer`` for the recipe: base model, LoRA, prompt/completion data, logging."""
    from accelerate import PartialState
    from torch.utils.tensorboard import SummaryWriter
    from transformers import set_seed
    from transformers.integrations import TensorBoardCallback

    from medllm.data.dataset import (
        diagnosis_cases,
        load_diseases,
        load_split,
    )  # lazy: GPU benchmarks run without it

    run, cfg = config.run, config.train
    set_seed(cfg.seed)  # the LoRA initialisation too, whatever ran before in this process
    columns = ["prompt", "completion"]
    train_set = load_split(config.data_dir, "train").select_columns(columns)
    eval_set = load_split(config.data_dir, "validation").select_columns(columns)
    if cfg.eval_max_samples is not None:
        eval_set = eval_set.shuffle(seed=cfg.seed).select(range(min(cfg.eval_max_samples, len(eval_set))))
    accuracy = []
    if cfg.eval_accuracy_samples is not None:
        cases = diagnosis_cases(load_split(config.data_dir, "validation")).shuffle(seed=cfg.seed)
        cases = cases.select(range(min(cfg.eval_accuracy_samples, len(cases))))
        accuracy = [DiagnosisAccuracy(cases, load_diseases(config.data_dir), cfg.per_device_train_batch_size)]
    loggers = []
    if PartialState().is_main_process:
        run.logs.mkdir(parents=True, exist_ok=True)
        loggers = [TensorBoardCallback(SummaryWriter(str(run.logs))), CsvLogger(run.metrics_csv)]
    trainer = AnswerOnlyLossTrainer(
        model=load_model(config.model),
        args=training_arguments(config),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=load_tokenizer(config.model),
        peft_config=lora_config(config),
        callbacks=[*accuracy, *loggers, StopOnNonFinite(run), *(callbacks or [])],
    )
    dropped = len(train_set) - len(trainer.train_dataset)
    if dropped > 0 and not cfg.packing:  # TRL truncates to max_length, then drops rows left with no answer
        log.warning(
            "%d of %d training rows are longer than train.max_length=%d up to their answer and were dropped; "
            "raise train.max_length to keep them",
            dropped,
            len(train_set),
            cfg.max_length,
        )
    return trainer


def train(
    config: Config, resume: bool = False, overwrite: bool = False, callbacks: list[TrainerCallback] | None = None
) -> dict:
    """Fine-tune ``config.model`` with LoRA on ``config.data_dir``; return the summary."""
    from accelerate import PartialState

    state = PartialState()
    with state.main_process_first():  # rank 0 clears or checks the folder before the others look
        checkpoint = _prepare_run_folder(config, resume, overwrite)
    run = config.run
    trainer = build_trainer(config, callbacks)
    memory = check_memory(trainer, config)
    if state.is_main_process:
        save_config(config, run.config)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    staging = run.adapter_staging
    if trainer.is_fsdp_enabled:  # Trainer.save_model writes nothing for a sharded state dict: gather it whole
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(staging))  # every rank (FSDP gathers the shards); rank 0 writes adapter + tokenizer
    if trainer.is_world_process_zero():
        with atomic_directory(run.adapter) as tmp:
            shutil.copytree(staging, tmp, dirs_exist_ok=True)
        shutil.rmtree(staging)
    final_eval = next((e for e in reversed(trainer.state.log_history) if "eval_loss" in e), {})
    summary = {
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "eval_loss": final_eval.get("eval_loss"),
        "eval_mean_token_accuracy": final_eval.get("eval_mean_token_accuracy"),
        "eval_diagnosis_top1": final_eval.get("eval_diagnosis_top1"),
        "eval_n": len(trainer.eval_dataset),
        "train_n": len(trainer.train_dataset),
        "resumed_from": str(checkpoint) if checkpoint else None,
        "memory": memory,
        "log_history": trainer.state.log_history,
    }
    if trainer.is_world_process_zero():
        atomic_write_json(run.train_summary, summary)
    return summary
