"""The recipe's loss: cross-entropy on the answer positions only, without full-vocabulary logits for the batch."""

from __future__ import annotations

import torch
from transformers.utils import is_triton_available
from trl import SFTTrainer


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
