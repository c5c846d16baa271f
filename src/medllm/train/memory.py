"""The memory guard: estimate peak training memory for the largest batch and stop before a run that cannot fit.

It also decides ``train.gradient_checkpointing: auto``: activation
checkpointing goes on when the batch fits only with it.
"""

from __future__ import annotations

import logging

import torch

from medllm.config import Config, TrainConfig
from medllm.errors import MedllmError

log = logging.getLogger(__name__)

GiB = 2**30
# At the start of the backward pass the LM head's loss holds, beside everything saved, more tensors the
# size of the largest saved one (its log-probabilities): their gradient, the logits' gradient, and on this
# CPU about one more; then a margin for the layers' own gradients. Checked against measured peaks by
# benchmarks/memory_guard.py and tests/benchmarks/test_memory_guard.py.
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
