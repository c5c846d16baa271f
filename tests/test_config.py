from pathlib import Path

import pytest

from medllm.cli import main
from medllm.config import RECIPES, load_config, parse_overrides
from medllm.errors import MedllmError

CONFIGS = sorted(RECIPES.glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_recipe_validates(path):
    config = load_config(path)
    assert config.model.name


def test_llama2_recipe_targets_the_hub_model_in_bf16():
    config = load_config(Path(CONFIGS[0]).parent / "llama2-7b-lora.yaml")
    assert config.model.name == "meta-llama/Llama-2-7b-chat-hf"
    assert config.model.dtype == "bfloat16" and config.train.bf16


def test_overrides_are_typed_and_nested():
    config = load_config(
        CONFIGS[0],
        {
            "train.max_steps": "7",
            "eval.max_cases": "null",
            "data.simulation.cases_per_disease": "{train: 2, validation: 1, test: 1}",
        },
    )
    assert config.train.max_steps == 7
    assert config.eval.max_cases is None
    assert config.data.simulation.cases_per_disease["train"] == 2


def test_unknown_field_is_named():
    with pytest.raises(MedllmError, match=r"unknown config field 'train.max_stepz'"):
        load_config(CONFIGS[0], {"train.max_stepz": "3"})


def test_wrong_type_is_named():
    with pytest.raises(MedllmError, match=r"'train.learning_rate'"):
        load_config(CONFIGS[0], {"train.learning_rate": "fast"})


def test_unknown_field_in_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lora:\n  rank: 8\n")
    with pytest.raises(MedllmError, match=rf"{path}: unknown config field 'lora.rank'"):
        load_config(path)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  max_steps: [1\n")
    with pytest.raises(MedllmError, match=rf"{path}:\d+: invalid YAML"):
        load_config(path)


def test_parse_overrides_both_forms():
    assert parse_overrides(["--a.b", "1", "--c=x"]) == {"a.b": "1", "c": "x"}
    with pytest.raises(MedllmError):
        parse_overrides(["--a.b"])
    with pytest.raises(MedllmError):
        parse_overrides(["stray"])


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--config", "/no/such.yaml"], "config file not found: /no/such.yaml"),
        (["data", "--lora.rank", "8"], "unknown config field 'lora.rank'"),
        (["eval", "--output_dir", "/nonexistent/run"], "no dataset at /nonexistent/run/data"),
    ],
)
def test_cli_errors_are_one_line_and_exit_nonzero(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
