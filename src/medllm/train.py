"""``medllm train``: LoRA supervised fine-tuning with PEFT and TRL's SFTTrainer.

The recipe, top to bottom: load the base model and its chat template, wrap it
in a LoRA adapter, train on prompt/completion pairs (loss on the answer
only), checkpoint every ``train.save_steps`` and at the end, then write the
adapter, tokenizer, resolved config and metrics into the run folder.

Run folder layout::

    config.yaml            resolved configuration
    checkpoints/           checkpoint-N (adapter, optimizer, RNG, trainer state)
    logs/                  TensorBoard events and metrics.csv
    adapter/               final LoRA adapter + tokenizer
    train_summary.json     written last: the run is finished
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

from medllm.config import Config, save_config
from medllm.data import diagnosis_cases, load_diseases, load_split
from medllm.errors import MedllmError
from medllm.io import atomic_directory, atomic_write_json
from medllm.models import load_model, load_tokenizer

log = logging.getLogger(__name__)

CSV_FIELDS = ("step", "epoch", "loss", "eval_loss", "eval_mean_token_accuracy", "eval_diagnosis_top1", "eval_diagnosis_n",
              "learning_rate", "grad_norm")


class DiagnosisAccuracy(TrainerCallback):
    """Validation diagnosis top-1 beside every validation loss.

    The shown candidate with the highest length-normalised log-likelihood as
    the answer's first line (:func:`medllm.generation.candidate_loglikelihoods`)
    is the prediction: one prompt pass per case, no generation. The value is
    added to the eval log event before the TensorBoard and CSV loggers see it,
    so it must come before them in the callback list.
    """

    def __init__(self, cases, diseases: list, batch_size: int):
        self.cases = cases
        self.name_to_id = {d.name: d.id for d in diseases}
        self.batch_size = batch_size

    def on_log(self, args, state, control, logs=None, model=None, processing_class=None, **kwargs):
        if not logs or "eval_loss" not in logs:
            return
        from medllm.generation import candidate_confidences, candidate_loglikelihoods

        training = model.training
        model.eval()
        scores = candidate_loglikelihoods(model, processing_class, self.cases["prompt"], self.cases["candidates"],
                                          self.batch_size, desc="validation diagnosis")
        model.train(training)
        hits = sum(self.name_to_id[names[int(candidate_confidences(lls).argmax())]] == gold
                   for names, lls, gold in zip(self.cases["candidates"], scores, self.cases["disease_id"]))
        extra = {"eval_diagnosis_top1": hits / len(scores), "eval_diagnosis_n": len(scores)}
        logs.update(extra)
        state.log_history[-1].update(extra)


class CsvLogger(TrainerCallback):
    """Append every log event (training and validation) to a CSV file."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({"step": state.global_step, "epoch": state.epoch, **logs})


def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints whose trainer state was written (it is saved last), oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()]
    return sorted((p for p in found if (p / "trainer_state.json").is_file()),
                  key=lambda p: int(p.name.split("-")[1]))


def _prepare_run_folder(config: Config, resume: bool, overwrite: bool) -> Path | None:
    """Guard finished and half-finished runs; return the checkpoint to resume from."""
    out = config.output_dir
    checkpoints = out / "checkpoints"
    finished = out / "train_summary.json"
    if overwrite:
        for name in ("checkpoints", "logs", "adapter", "eval"):
            shutil.rmtree(out / name, ignore_errors=True)
        finished.unlink(missing_ok=True)
        return None
    if finished.exists():
        raise MedllmError(f"{out} holds a finished run; pass --overwrite to replace it or set --output_dir")
    found = complete_checkpoints(checkpoints)
    if resume:
        if not found:
            raise MedllmError(f"--resume: no complete checkpoint under {checkpoints}")
        return found[-1]
    if checkpoints.exists() and any(checkpoints.iterdir()):
        raise MedllmError(f"{checkpoints} holds checkpoints of an unfinished run; "
                          "pass --resume to continue it or --overwrite to start again")
    return None


def build_trainer(config: Config, callbacks: list[TrainerCallback] | None = None):
    """An ``SFTTrainer`` for the recipe: base model, LoRA, prompt/completion data, logging."""
    from peft import LoraConfig
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback
    from trl import SFTConfig, SFTTrainer

    out, cfg = config.output_dir, config.train
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
    (out / "logs").mkdir(parents=True, exist_ok=True)
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
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
        train_sampling_strategy="group_by_length",  # batches of similar length: less padding
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        completion_only_loss=True,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
    )
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=config.lora.target_modules, task_type="CAUSAL_LM")
    return SFTTrainer(
        model=load_model(config.model), args=args, train_dataset=train_set, eval_dataset=eval_set,
        processing_class=load_tokenizer(config.model), peft_config=lora,
        callbacks=[*accuracy, TensorBoardCallback(SummaryWriter(str(out / "logs"))),
                   CsvLogger(out / "logs" / "metrics.csv"), *(callbacks or [])],
    )


def train(config: Config, resume: bool = False, overwrite: bool = False,
          callbacks: list[TrainerCallback] | None = None) -> dict:
    """Fine-tune ``config.model`` with LoRA on ``config.data_dir``; return the summary."""
    checkpoint = _prepare_run_folder(config, resume, overwrite)
    out = config.output_dir
    trainer = build_trainer(config, callbacks)
    save_config(config, out / "config.yaml")
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if trainer.is_world_process_zero():
        with atomic_directory(out / "adapter") as tmp:
            trainer.model.save_pretrained(str(tmp))
            trainer.processing_class.save_pretrained(str(tmp))
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
        "log_history": trainer.state.log_history,
    }
    if trainer.is_world_process_zero():
        atomic_write_json(out / "train_summary.json", summary)
    return summary
