import csv
import json

import pytest
from transformers import TrainerCallback

from medllm.errors import MedllmError
from medllm.run import RunDir
from medllm.train.recipe import build_trainer, train


def test_loss_is_on_the_answer_only(tiny_dataset):
    trainer = build_trainer(tiny_dataset)
    example = trainer.train_dataset[0]
    batch = trainer.data_collator([example])
    labels = batch["labels"][0]
    answer_ids = labels[labels != -100]
    tokenizer = trainer.processing_class
    answer = tokenizer.decode(answer_ids)
    expected = load_completion(tiny_dataset, 0)
    assert answer.startswith(expected)
    assert answer[len(expected) :].strip() in ("<|im_end|>", "")
    prompt_len = (labels == -100).sum().item()
    assert prompt_len > 20, "the system and user turns carry no loss"
    assert "Patient:" in tokenizer.decode(batch["input_ids"][0][:prompt_len])


def load_completion(config, index):
    from medllm.data.dataset import load_split

    return load_split(config.data_dir, "train")[index]["completion"][0]["content"]


class KillAt(TrainerCallback):
    """Simulates a killed process: raises once training reaches ``step``."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_resume_after_a_kill_and_guard_finished_runs(tiny_dataset):
    config = tiny_dataset
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[KillAt(3)])
    checkpoints = config.run.complete_checkpoints()
    assert [c.name for c in checkpoints] == ["checkpoint-2"]
    assert not (config.output_dir / "train_summary.json").exists()

    with pytest.raises(MedllmError, match="pass --resume"):
        train(config)
    summary = train(config, resume=True)
    assert summary["global_step"] == 4
    assert summary["resumed_from"].endswith("checkpoint-2")
    steps = [e["step"] for e in summary["log_history"] if "loss" in e]
    assert steps == [1, 2, 3, 4], "steps 1-2 from the checkpoint, 3-4 after resuming"
    straight = train(
        config.model_copy(
            update={
                "output_dir": config.output_dir.parent / "straight",
                "data": config.data.model_copy(update={"dir": config.data_dir}),
            }
        )
    )
    losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
    assert losses == pytest.approx([e["loss"] for e in straight["log_history"] if "loss" in e], rel=1e-5), (
        "a killed and resumed run follows the uninterrupted run's loss trajectory (data order and RNG restored)"
    )
    assert (config.output_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert "eval_loss" in (config.output_dir / "logs" / "metrics.csv").read_text().splitlines()[0]
    evals = [e for e in summary["log_history"] if "eval_loss" in e]
    assert [e["step"] for e in evals] == [2, 4]
    assert all(
        0 <= e["eval_diagnosis_top1"] <= 1 and e["eval_diagnosis_n"] == config.train.eval_accuracy_samples
        for e in evals
    ), "validation diagnosis accuracy beside every validation loss, the one from before the kill included"
    with open(config.output_dir / "logs" / "metrics.csv", newline="") as fh:
        logged = [row for row in csv.DictReader(fh) if row["eval_loss"]]
    assert [row["step"] for row in logged] == ["2", "4"] and all(row["eval_diagnosis_top1"] for row in logged)
    assert json.loads((config.output_dir / "train_summary.json").read_text())["eval_loss"] > 0

    with pytest.raises(MedllmError, match="finished run"):
        train(config)
    with pytest.raises(MedllmError, match="no complete checkpoint"):
        train(config.model_copy(update={"output_dir": config.output_dir.parent / "fresh"}), resume=True)


def test_incomplete_checkpoint_is_not_resumed_from(tmp_path):
    run = RunDir(tmp_path)
    (run.checkpoints / "checkpoint-2").mkdir(parents=True)
    (run.checkpoints / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (run.checkpoints / "checkpoint-4").mkdir()  # killed while saving: no trainer state yet
    assert [c.name for c in run.complete_checkpoints()] == ["checkpoint-2"]
    assert run.latest_checkpoint().name == "checkpoint-2"


def test_rows_too_long_for_their_answer_are_counted_in_a_warning(tiny_dataset, caplog):
    from medllm.data.dataset import load_split

    short = tiny_dataset.model_copy(update={"train": tiny_dataset.train.model_copy(update={"max_length": 40})})
    with caplog.at_level("WARNING", logger="medllm.train.recipe"):
        kept = build_trainer(short).train_dataset.num_rows
    rows = load_split(tiny_dataset.data_dir, "train").num_rows
    assert kept < rows  # prompts longer than 40 tokens: TRL dropped the rows left without an answer
    assert f"{rows - kept} of {rows} training rows are longer than train.max_length=40" in caplog.text
