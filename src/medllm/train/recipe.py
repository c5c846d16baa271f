"""``medllm train``: LoRA supervised fine-tuning with PEFT and TRL's SFTTrainer.

The recipe, top to bottom: load the base model and its chat template, wrap it
in a LoRA adapter, check that the largest batch fits in memory (turning on
activation checkpointing when ``train.gradient_checkpointing`` is ``auto`` and
it must), train on prompt/completion pairs (loss on the answer only, with no
full-vocabulary logits for the whole batch: :class:`AnswerOnlyLossTrainer`),
checkpoint every
``train.save_steps`` and at the end, then write the adapter, tokenizer,
resolved config and metrics into the run folder. A non-finite loss stops the
run before the optimizer step, so the newest checkpoint stays the last good
one.

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

import csv
import logging
import shutil
from contextlib import nullcontext
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.utils import is_triton_available
from trl import SFTTrainer

from medllm.config import Config, TrainConfig, save_config
from medllm.errors import MedllmError
from medllm.io import atomic_directory, atomic_write_json
from medllm.models import load_model, load_tokenizer
from medllm.run import RunDir

log = logging.getLogger(__name__)

CSV_FIELDS = (
    "step",
    "epoch",
    "loss",
    "eval_loss",
    "eval_mean_token_accuracy",
    "eval_diagnosis_top1",
    "eval_diagnosis_n",
    "learning_rate",
    "grad_norm",
)


class DiagnosisAccuracy(TrainerCallback):
    """Validation diagnosis top-1 beside every validation loss.

    The shown candidate with the highest length-normalised log-likelihood as
    the answer's first line (:func:`medllm.generation.candidate_loglikelihoods`)
    is the prediction: one prompt pass per case, no generation. Under data
    parallelism each rank scores its share of the cases and the hits are
    gathered, so every rank logs the same figure over all of them; a sharded
    model's forward is collective, so under FSDP or DeepSpeed every rank
    scores every case in step. The value is added to the eval log event
    before the TensorBoard and CSV loggers see it, so it must come before
    them in the callback list.
    """

    def __init__(self, cases, diseases: list, batch_size: int):
        self.cases = cases
        self.name_to_id = {d.name: d.id for d in diseases}
        self.batch_size = batch_size

    def on_log(self, args, state, control, logs=None, model=None, processing_class=None, **kwargs):
        if not logs or "eval_loss" not in logs:
            return
        from accelerate import PartialState
        from accelerate.utils import DistributedType, gather_object

        from medllm.generation import candidate_confidences, candidate_loglikelihoods

        ranks = PartialState()
        replicated = ranks.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        everything = list(range(len(self.cases)))
        training = model.training
        model.eval()
        with ranks.split_between_processes(everything) if replicated else nullcontext(everything) as mine:
            cases = self.cases.select(mine)
            scores = candidate_loglikelihoods(
                model,
                processing_class,
                cases["prompt"],
                cases["candidates"],
                self.batch_size,
                desc="validation diagnosis",
            )
            hits = [
                self.name_to_id[names[int(candidate_confidences(lls).argmax())]] == gold
                for names, lls, gold in zip(cases["candidates"], scores, cases["disease_id"])
            ]
        model.train(training)
        if replicated:
            hits = gather_object(hits)
        extra = {"eval_diagnosis_top1": sum(hits) / len(hits), "eval_diagnosis_n": len(hits)}
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


class StopOnNonFinite(TrainerCallback):
    """Stop before the optimizer step when a gradient is NaN or inf (the loss was).

    The weights are not updated and no checkpoint is written, so the newest
    checkpoint is the last good state. (fp16 loss scaling, where an inf step is
    skipped by design, is not used by this recipe.)
    """

    def __init__(self, run: RunDir):
        self.run = run

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        from accelerate.utils import reduce

        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        if not grads:
            return
        local = [g.to_local() if hasattr(g, "to_local") else g for g in grads]  # FSDP2: this rank's shard
        bad = ~torch.stack([torch.isfinite(g).all() for g in local]).all()
        if reduce(bad.float(), reduction="max").item():  # every rank stops together
            found = self.run.latest_checkpoint()
            last = (
                f"the last good checkpoint is {found} (--resume continues from it)"
                if found
                else "no checkpoint was written yet"
            )
            raise MedllmError(
                f"non-finite loss or gradient at step {state.global_step + 1}: training stopped; "
                f"{last}. Lower train.learning_rate, or use float32 / bfloat16 weights (model.dtype)"
            )


def fused_head_scores_labels_only(device: torch.device) -> bool:
    """Whether TRL's fused LM head takes its Triton kernel here (labelled positions only): Triton on CUDA or XPU."""
    return device.type in ("cuda", "xpu") and is_triton_available()


class AnswerOnlyLossTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss projects only answer positions through the LM head where TRL's does not.

    TRL's fused LM head scores only the positions with a label on Triton
    devices (CUDA, XPU) and is used there as is. Elsewhere it scores every
    position of the batch, vocabulary tile by vocabulary tile in plain torch,
    no faster than the plain full-logits loss (``benchmarks/train_throughput.py``
    compares them). There, the model is asked for the logits of the answer positions only
    (``logits_to_keep`` with the positions that hold a label in any row of the
    batch; exactly the labelled ones in a padding-free row) and the loss is
    their cross-entropy in float32: the same loss for a fraction of the
    head's work.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or fused_head_scores_labels_only(self.accelerator.device):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if model.training else "eval"
        targets = inputs["labels"][:, 1:]
        positions = (targets != -100).any(dim=0).nonzero().squeeze(1)
        forward = {k: v for k, v in inputs.items() if k != "labels"}
        logits = model(**forward, use_cache=False, logits_to_keep=positions).logits.float()
        targets = targets[:, positions]
        valid = targets != -100
        count = valid.sum()
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="sum")
        loss = loss / (count.clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as TRL: DDP averages the gradients across ranks
        with torch.no_grad():  # TRL's token accuracy and token count, from the logits at hand
            correct = self.accelerator.gather_for_metrics(((logits.argmax(-1) == targets) & valid).sum()).sum()
            total = self.accelerator.gather_for_metrics(count).sum()
            self._metrics[mode]["mean_token_accuracy"].append((correct / total).item() if total else 0.0)
            if mode == "train":
                key = "attention_mask" if "attention_mask" in inputs else "position_ids"
                tokens = inputs[key].sum() if key == "attention_mask" else torch.tensor(inputs[key].numel())
                self._total_train_tokens += int(self.accelerator.gather_for_metrics(tokens.to(count.device)).sum())
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss


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
    decided by :func:`check_memory` once the model is loaded.
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

    from medllm.data.build import diagnosis_cases, load_diseases, load_split  # here: the GPU benchmark runs without it

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
    return AnswerOnlyLossTrainer(
        model=load_model(config.model),
        args=training_arguments(config),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=load_tokenizer(config.model),
        peft_config=lora_config(config),
        callbacks=[*accuracy, *loggers, StopOnNonFinite(run), *(callbacks or [])],
    )


# ----------------------------------------------------------------------------- memory guard

GiB = 2**30
# At the start of the backward pass the LM head's loss holds, beside everything saved, more tensors the
# size of the largest saved one (its log-probabilities): their gradient, the logits' gradient, and on this
# CPU about one more; then a margin for the layers' own gradients. Checked against measured peaks by
# benchmarks/memory_guard.py (1.08-1.17x for SmolLM2-135M at batch 1-16 here) and tests/test_memory_guard.py.
BACKWARD_COPIES = 3
ACTIVATION_MARGIN = 1.1


def activation_bytes_per_token(trainer) -> tuple[float, float]:
    """Bytes of autograd-saved tensors per token of the training forward, and of the largest one, measured.

    One training forward (the trainer's own ``compute_loss``: LoRA, fused LM
    head) on a batch of the first two training examples, counting each saved
    tensor's storage once. Two rows, not one, so the figure includes what
    batching adds: padding, and on CPUs the LM head's logits for the union of
    the rows' answer positions. Measured rather than modelled, so it holds for
    any architecture, dtype and attention kernel (sdpa saves no
    sequence-squared matrix; eager does, which this per-token figure
    understates for longer rows).
    """
    examples = [trainer.train_dataset[i] for i in range(min(2, len(trainer.train_dataset)))]
    batch = trainer._prepare_inputs(trainer.data_collator(examples))
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        if t.device.type != "meta":
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    model = trainer.model
    training = model.training
    model.eval()  # same saved tensors (no dropout in this recipe's attention); TRL then counts no training tokens
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = trainer.compute_loss(model, batch)
    del loss
    model.train(training)
    trainer._metrics["eval"].clear()  # the probe's token accuracy is not a validation result
    saved = [n for ptr, n in storages.items() if ptr not in params]
    tokens = batch["input_ids"].numel()
    return sum(saved) / tokens, max(saved) / tokens


def memory_budget(cfg: TrainConfig, device: torch.device) -> tuple[int, str]:
    """Bytes training may use on ``device``, and where the figure comes from."""
    if cfg.memory_budget_gb is not None:
        return int(cfg.memory_budget_gb * GiB), "train.memory_budget_gb"
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_allocated(device), f"free memory of {torch.cuda.get_device_name(device)}"
    import psutil

    return psutil.virtual_memory().available + psutil.Process().memory_info().rss, "available RAM"


def estimate_memory(
    trainer, checkpointing: bool, per_token: tuple[float, float] | None = None, tokens: int | None = None
) -> dict[str, int]:
    """Peak training memory (bytes) for the largest batch: weights, LoRA training state and activations.

    Weights: every parameter and buffer as loaded. LoRA state: a float32
    gradient and AdamW's two moments per trainable parameter. Activations:
    the measured saved bytes per token, plus the backward pass's copies of
    the largest saved tensor, times the largest batch (``tokens``, by default
    the per-device batch times ``max_length``), with a margin; with
    activation checkpointing, each layer keeps only its input (hidden size
    per token) and one layer's activations are live at a time.
    """
    model, cfg = trainer.model, trainer.args
    saved, largest = activation_bytes_per_token(trainer) if per_token is None else per_token
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad) * (4 + 8)
    tokens = cfg.per_device_train_batch_size * cfg.max_length if tokens is None else tokens
    text = model.config.get_text_config()
    if checkpointing:
        layers = text.num_hidden_layers
        saved = layers * text.hidden_size * model.dtype.itemsize + saved / layers
    activations = int(tokens * (saved + BACKWARD_COPIES * largest) * ACTIVATION_MARGIN)
    return {
        "weights": weights,
        "lora_state": lora,
        "activations": activations,
        "total": weights + lora + activations,
        "tokens": tokens,
    }


def check_memory(trainer, config: Config) -> dict:
    """Stop before training when the largest batch cannot fit; decide ``auto`` activation checkpointing.

    Returns the estimate, the budget and whether checkpointing is on (also
    written to ``train_summary.json``). Skipped under FSDP and DeepSpeed: the
    weights are sharded only once training starts (and may not be loaded on
    every rank yet), so the per-rank peak cannot be measured here; use their
    own activation checkpointing settings.
    """
    cfg = config.train
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        log.info("memory guard skipped: the weights are sharded across ranks only once training starts")
        return {
            "skipped": "weights sharded (FSDP or DeepSpeed)",
            "gradient_checkpointing": bool(trainer.args.activation_checkpointing),
        }
    budget, source = memory_budget(cfg, trainer.model.device)
    per_token = activation_bytes_per_token(trainer)
    plain = estimate_memory(trainer, False, per_token)
    checkpointed = estimate_memory(trainer, True, per_token)

    if cfg.gradient_checkpointing == "auto":
        checkpointing = plain["total"] > budget
    else:
        checkpointing = cfg.gradient_checkpointing
    chosen = checkpointed if checkpointing else plain
    if chosen["total"] > budget:
        parts = ", ".join(f"{k} {chosen[k] / GiB:.2f}" for k in ("weights", "lora_state", "activations"))
        hints = [
            "train.per_device_train_batch_size (raise gradient_accumulation_steps to keep the batch)",
            "train.max_length",
        ]
        if not checkpointing:
            hints.append("train.gradient_checkpointing: auto")
        if trainer.model.dtype == torch.float32 and trainer.model.device.type == "cuda":
            hints.append("model.dtype: bfloat16")
        raise MedllmError(
            f"training needs about {chosen['total'] / GiB:.2f} GiB ({parts} GiB for a batch of "
            f"{cfg.per_device_train_batch_size} x {cfg.max_length} tokens) but {budget / GiB:.2f} GiB is "
            f"available ({source}); lower "
            + ", or set ".join(hints[:2])
            + (f", or set {', '.join(hints[2:])}" if hints[2:] else "")
        )
    if checkpointing and not trainer.args.activation_checkpointing:
        trainer.args.activation_checkpointing = trainer.args.gradient_checkpointing = True
        trainer.model.enable_input_require_grads()  # as SFTTrainer does when it is on from the start
    return {
        "estimate_gib": round(chosen["total"] / GiB, 3),
        "budget_gib": round(budget / GiB, 3),
        "activation_bytes_per_token": round(per_token[0]),
        "gradient_checkpointing": bool(checkpointing),
    }


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
