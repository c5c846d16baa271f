"""Trainer callbacks of the recipe: validation diagnosis accuracy, the CSV log, the non-finite stop."""

from __future__ import annotations

import csv
from contextlib import nullcontext
from pathlib import Path

import torch
from transformers import TrainerCallback

from medllm.errors import MedllmError
from medllm.run import RunDir

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
