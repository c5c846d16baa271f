import pytest

from medllm.errors import MedllmError
from medllm.run import RunDir, is_adapter, require_adapter


def _checkpoint(run: RunDir, step: int, complete: bool = True):
    folder = run.checkpoints / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if complete:
        (folder / "trainer_state.json").write_text("{}")
    return folder


def test_latest_checkpoint_is_the_newest_complete_one_by_step_number(tmp_path):
    run = RunDir(tmp_path)
    assert run.latest_checkpoint() is None
    _checkpoint(run, 9)
    ten = _checkpoint(run, 10)  # sorts before 9 as text
    _checkpoint(run, 11, complete=False)  # killed before its trainer state was written
    (run.checkpoints / "checkpoint-x").mkdir()
    assert run.latest_checkpoint() == ten
    assert [p.name for p in run.complete_checkpoints()] == ["checkpoint-9", "checkpoint-10"]


def test_adapter_checks_and_default(tmp_path):
    run = RunDir(tmp_path)
    assert run.adapter_or_default(None) == tmp_path / "adapter"
    assert run.adapter_or_default(tmp_path / "other") == tmp_path / "other"
    assert not is_adapter(run.adapter)
    with pytest.raises(MedllmError, match=r"no LoRA adapter at .*adapter \(adapter_config.json missing\): train"):
        require_adapter(run.adapter, ": train")
    run.adapter.mkdir()
    (run.adapter / "adapter_config.json").write_text("{}")
    assert require_adapter(run.adapter) == run.adapter


def test_clear_training_removes_what_training_and_eval_wrote(tmp_path):
    run = RunDir(tmp_path)
    _checkpoint(run, 1)
    for folder in (run.logs, run.adapter, run.eval, run.data):
        folder.mkdir(parents=True)
    run.train_summary.write_text("{}")
    run.clear_training()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
