"""Data-parallel training: two CPU processes (gloo) against one at the same global batch, and a resumed 2-rank run."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from conftest import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_train(config, output_dir, per_device: int, processes: int, resume: bool = False) -> dict:
    launcher = [sys.executable, "-m", "medllm"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", "--master_addr=127.0.0.1",
        f"--master_port={free_port()}", "-m", "medllm"]
    overrides = {"model.name": config.model.name, "model.dtype": "float32", "data.dir": config.data_dir,
                 "output_dir": output_dir, "train.max_steps": 4, "train.gradient_accumulation_steps": 2,
                 "train.per_device_train_batch_size": per_device, "train.eval_steps": 2, "train.save_steps": 2,
                 "train.eval_max_samples": 8, "train.eval_accuracy_samples": 7, "train.logging_steps": 1,
                 "train.warmup_steps": 0, "train.group_by_length": "false"}  # same order for any number of ranks
    args = [a for key, value in overrides.items() for a in (f"--{key}", str(value))] + ["--resume"] * resume
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "train", "--config", str(REPO / "configs" / "smollm2-135m-lora.yaml"), *args],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((output_dir / "train_summary.json").read_text())


def test_two_processes_train_like_one_at_the_same_global_batch_and_resume(tiny_dataset, tmp_path):
    from safetensors.torch import load_file

    one = run_train(tiny_dataset, tmp_path / "one", per_device=4, processes=1)
    two = run_train(tiny_dataset, tmp_path / "two", per_device=2, processes=2)
    losses = [[e["loss"] for e in s["log_history"] if "loss" in e] for s in (one, two)]
    assert len(losses[0]) == 4 and losses[1] == pytest.approx(losses[0], rel=1e-5), \
        "each rank takes its shard of the same global batch of 8; the loss is normalised by all ranks' tokens"
    # Validation loss is gathered across ranks: the 8 rows split 4 + 4, each rank's batch mean weighted by rows
    # (Trainer's way), so it matches one process's token-weighted mean only approximately.
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=0.05)
    diagnosis = [[(e["eval_diagnosis_top1"], e["eval_diagnosis_n"]) for e in s["log_history"] if "eval_loss" in e]
                 for s in (one, two)]
    assert len(diagnosis[0]) == 2 and diagnosis[1] == diagnosis[0] and diagnosis[0][0][1] == 7, \
        "the 7 validation cases split 4 + 3 across ranks and the hits are gathered: the same top-1 over all 7"
    assert (tmp_path / "two" / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "two" / ".adapter.staging").exists()
    a, b = (load_file(tmp_path / run / "adapter" / "adapter_model.safetensors") for run in ("one", "two"))
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max() < 1e-6 for k in a), \
        "the same updates: the two ranks' gradients average to one process's"
    assert max(a[k].abs().max() for k in a if "lora_B" in k) > 1e-4, "the adapter moved (the comparison can fail)"
    steps = [[r.split(",")[0] for r in (tmp_path / run / "logs" / "metrics.csv").read_text().splitlines()[1:]]
             for run in ("one", "two")]
    assert steps[1] == steps[0], "rank 0 alone logs: each event once"

    # Resume the 2-rank run from its step-2 checkpoint (as if killed after it): the same steps 3-4.
    shutil.rmtree(tmp_path / "two" / "checkpoints" / "checkpoint-4")
    shutil.rmtree(tmp_path / "two" / "adapter")
    (tmp_path / "two" / "train_summary.json").unlink()
    resumed = run_train(tiny_dataset, tmp_path / "two", per_device=2, processes=2, resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-2")
    assert [e["loss"] for e in resumed["log_history"] if "loss" in e] == pytest.approx(losses[1], rel=1e-5), \
        "each rank's data order and RNG state come back from the checkpoint"
    c = load_file(tmp_path / "two" / "adapter" / "adapter_model.safetensors")
    assert all((b[k] - c[k]).abs().max() < 1e-6 for k in b)
