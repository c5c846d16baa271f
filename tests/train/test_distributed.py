"""Scale-out with the configs in configs/accelerate/, launched by ``accelerate launch`` as the README says, on
two CPU ranks (gloo): each trains like one process at the same global batch, and resumes from its checkpoints."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import REPO
from medllm.config import DEFAULT_RECIPE

ACCELERATE = REPO / "configs" / "accelerate"
CPU_FSDP = Path(__file__).parent / "cpu_fsdp"  # lets Accelerate pick FSDP on CPU ranks (see its docstring)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_train(
    model: Path,
    data: Path,
    output_dir: Path,
    per_device: int,
    config_file: str | None = None,
    resume: bool = False,
    **settings,
) -> tuple[int, str]:
    """``medllm train`` for 4 steps of a global batch of 8; ``config_file`` names a configs/accelerate file (2 ranks).

    Returns the first non-zero exit status of its launches (0 when all succeed) and their standard error.
    """
    overrides = {
        "model.name": model,
        "model.dtype": "float32",
        "data.dir": data,
        "output_dir": output_dir,
        "train.max_steps": 4,
        "train.gradient_accumulation_steps": 2,
        "train.per_device_train_batch_size": per_device,
        "train.eval_steps": 2,
        "train.save_steps": 2,
        "train.eval_max_samples": 8,
        "train.eval_accuracy_samples": 7,
        "train.logging_steps": 1,
        "train.warmup_steps": 0,
        "train.group_by_length": "false",  # same order for any number of ranks
        **settings,
    }
    train = [
        "-m",
        "medllm",
        "train",
        "--config",
        DEFAULT_RECIPE,
        *[a for key, value in overrides.items() for a in (f"--{key}", str(value))],
        *["--resume"] * resume,
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    if config_file == "fsdp.yaml":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CPU_FSDP), os.environ.get("PYTHONPATH")]))
    if config_file is None:
        commands = [[sys.executable, *train]]
    else:  # both ranks on this machine; multi-node.yaml: one launch per machine rank, rendezvous on 127.0.0.1
        accelerate = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(ACCELERATE / config_file),
            "--num_processes",
            "2",
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            str(free_port()),
            "--mixed_precision",
            "no",
        ]
        machines = [["--machine_rank", "0"], ["--machine_rank", "1"]] if config_file == "multi-node.yaml" else [[]]
        commands = [[*accelerate, *machine, *train] for machine in machines]
    # files, not pipes: an undrained pipe blocks its rank; closed below
    errs = [tempfile.TemporaryFile("w+") for _ in commands]  # noqa: SIM115
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        for c, err in zip(commands, errs)
    ]
    try:
        statuses = [proc.wait(timeout=600) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:  # timed out: stop the launcher and its ranks
                os.killpg(proc.pid, signal.SIGKILL)
    text = ""
    for err in errs:
        with err:
            err.seek(0)
            text += err.read()
    return next((s for s in statuses if s), 0), text


def run_train(
    model: Path, data: Path, output_dir: Path, per_device: int, config_file: str | None = None, resume: bool = False
) -> dict:
    """A training run that must succeed; its ``train_summary.json``."""
    status, err = launch_train(model, data, output_dir, per_device, config_file, resume)
    assert status == 0, err[-3000:]
    return json.loads((output_dir / "train_summary.json").read_text())


def losses(summary: dict) -> list[float]:
    return [e["loss"] for e in summary["log_history"] if "loss" in e]


def adapter(run: Path) -> dict:
    return load_file(run / "adapter" / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_llama_dir, tiny_dataset_dir):
    """The reference: one process, per-device batch 4, 2 accumulation steps."""
    run = tmp_path_factory.mktemp("one") / "run"
    return run_train(tiny_llama_dir, tiny_dataset_dir, run, per_device=4), run


@pytest.mark.parametrize("config_file", ["ddp.yaml", "fsdp.yaml", "multi-node.yaml"])
def test_two_ranks_train_like_one_process_at_the_same_global_batch(
    config_file, one_process, tiny_llama_dir, tiny_dataset_dir, tmp_path
):
    one, one_run = one_process
    run = tmp_path / "run"
    two = run_train(tiny_llama_dir, tiny_dataset_dir, run, per_device=2, config_file=config_file)
    assert len(losses(one)) == 4 and losses(two) == pytest.approx(losses(one), rel=1e-5), (
        "each rank takes its shard of the same global batch of 8; the loss is normalised by all ranks' tokens"
    )
    # Validation loss is gathered across ranks: the 8 rows split 4 + 4, each rank's batch mean weighted by rows
    # (Trainer's way), so it matches one process's token-weighted mean only approximately.
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=0.05)
    diagnosis = [
        [(e["eval_diagnosis_top1"], e["eval_diagnosis_n"]) for e in s["log_history"] if "eval_loss" in e]
        for s in (one, two)
    ]
    assert len(diagnosis[0]) == 2 and diagnosis[1] == diagnosis[0] and diagnosis[0][0][1] == 7, (
        "all 7 validation cases count once (split 4 + 3 across DDP ranks; under FSDP every rank scores all 7)"
    )
    assert not (run / ".adapter.staging").exists()
    a, b = adapter(one_run), adapter(run)
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max() < 1e-6 for k in a), (
        "the same updates: the two ranks' gradients average to one process's"
    )
    assert max(a[k].abs().max() for k in a if "lora_B" in k) > 1e-4, "the adapter moved (the comparison can fail)"
    steps = [
        [r.split(",")[0] for r in (folder / "logs" / "metrics.csv").read_text().splitlines()[1:]]
        for folder in (one_run, run)
    ]
    assert steps[1] == steps[0], "rank 0 alone logs: each event once"
    checkpoint = run / "checkpoints" / "checkpoint-2"
    if config_file == "fsdp.yaml":
        from torch.distributed.checkpoint import FileSystemReader

        assert two["memory"]["skipped"], "the memory guard stands aside when the weights are sharded"
        saved = FileSystemReader(checkpoint / "pytorch_model_fsdp_0").read_metadata().state_dict_metadata
        assert len(saved) == len(a) and all(
            "lora_" in name and [c.sizes[0] for c in tensor.chunks] == [tensor.size[0] // 2] * 2
            for name, tensor in saved.items()
        ), "the LoRA weights alone, each saved as two shards of half its rows"
    else:
        assert "estimate_gib" in two["memory"] and (checkpoint / "adapter_model.safetensors").is_file()
    if config_file == "multi-node.yaml":
        return

    # Resume from the step-2 checkpoint (as if killed after it): the same steps 3-4, the same adapter.
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")
    shutil.rmtree(run / "adapter")
    (run / "train_summary.json").unlink()
    resumed = run_train(tiny_llama_dir, tiny_dataset_dir, run, per_device=2, config_file=config_file, resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-2")
    assert losses(resumed) == pytest.approx(losses(two), rel=1e-5), (
        "each rank's data order, RNG state and (FSDP: sharded) weights and optimizer come back from the checkpoint"
    )
    c = adapter(run)
    assert all((b[k] - c[k]).abs().max() < 1e-6 for k in b)


@pytest.mark.parametrize("config_file", ["ddp.yaml", "fsdp.yaml"])
def test_a_non_finite_loss_stops_every_rank_and_keeps_the_last_good_checkpoint(
    config_file, tiny_llama_dir, tiny_dataset_dir, tmp_path
):
    run = tmp_path / "run"
    # One AdamW step of about the learning rate makes the weights ~1e30: step 2's forward overflows.
    status, err = launch_train(
        tiny_llama_dir,
        tiny_dataset_dir,
        run,
        per_device=2,
        config_file=config_file,
        **{
            "train.learning_rate": 1e30,
            "train.lr_scheduler_type": "constant",
            "train.save_steps": 1,
            "train.eval_accuracy_samples": "null",
        },
    )
    assert status != 0
    assert err.count("error: non-finite loss or gradient at step 2") == 2, (
        "every rank stops at step 2, none left waiting in a collective"
    )
    assert "last good checkpoint is " + str(run / "checkpoints" / "checkpoint-1") in err
    assert [p.name for p in (run / "checkpoints").glob("checkpoint-*")] == ["checkpoint-1"]
    assert not (run / "adapter").exists() and not (run / "train_summary.json").exists()
