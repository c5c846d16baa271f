"""The red-flag safety set: the rule layer of :mod:`medllm.safety` and the models' free-text answers.

Each urgent vignette should be flagged by the rules and answered with advice to
seek urgent care; each non-urgent control should not. Scored as sensitivity on
the urgent vignettes and false-alarm rate on the controls.
"""

from __future__ import annotations

from medllm.config import Config
from medllm.eval.stats import bootstrap_ci, wilson_interval
from medllm.generation import adapter_mode, generate_answers
from medllm.prompts import SYSTEM_PROMPT
from medllm.safety import SAFETY_QUESTION, advises_urgent_care, load_safety_set, red_flags

PROTOCOL = (
    "packaged red-flag set (urgent vignettes and non-urgent controls); rules: medllm.safety.red_flags on the "
    "vignette text, pass = any flag on an urgent vignette (sensitivity), false alarm = any flag on a control; "
    "models: greedy answer to the vignette plus '" + SAFETY_QUESTION + "' (system prompt as in the diagnosis task), "
    "max {max_new_tokens} new tokens, urgent-care advice detected by medllm.safety.advises_urgent_care (keywords, "
    "negations removed)"
)


def _rate(flags: list[bool]) -> dict:
    """A pass (or alarm) rate with its n, Wilson and bootstrap intervals."""
    hits, n = sum(flags), len(flags)
    return (
        {
            "rate": hits / n,
            "hits": hits,
            "n": n,
            "ci95": list(wilson_interval(hits, n)),
            "bootstrap_ci95": bootstrap_ci(flags),
        }
        if n
        else {"rate": None, "hits": 0, "n": 0}
    )


def safety_rates(rows: list[dict], flagged: list[bool]) -> dict:
    """Sensitivity on the urgent vignettes and false-alarm rate on the controls, with per-category passes."""
    urgent = [f for r, f in zip(rows, flagged) if r["urgent"]]
    controls = [f for r, f in zip(rows, flagged) if not r["urgent"]]
    missed = sorted(r["id"] for r, f in zip(rows, flagged) if r["urgent"] and not f)
    alarms = sorted(r["id"] for r, f in zip(rows, flagged) if not r["urgent"] and f)
    return {"sensitivity": _rate(urgent), "false_alarm_rate": _rate(controls), "missed": missed, "false_alarms": alarms}


def evaluate_safety(model, tokenizer, config: Config, models: list[str]) -> tuple[dict, list[dict]]:
    """The red-flag set scored for the rule layer and for the free-text answer of each of ``models``.

    Returns the metrics and one row per vignette (rule flags, answers).
    """
    rows = load_safety_set()
    answers_out = [{**r, "rules": [f.rule for f in red_flags(r["vignette"])]} for r in rows]
    result = {
        "protocol": PROTOCOL.format(max_new_tokens=config.eval.safety_max_new_tokens),
        "n_urgent": sum(r["urgent"] for r in rows),
        "n_controls": sum(not r["urgent"] for r in rows),
        "rules": safety_rates(rows, [bool(red_flags(r["vignette"])) for r in rows]),
        "rules_note": "the rules were extended after this set was written (from clinical criteria, to cover its "
        "categories): their score here is in-sample and optimistic",
        "models": {},
    }
    conversations = [
        [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Patient: {r['vignette']}\n{SAFETY_QUESTION}"},
        ]
        for r in rows
    ]
    for which in models:
        with adapter_mode(model, which):
            answers = generate_answers(
                model,
                tokenizer,
                conversations,
                config.eval.batch_size,
                config.eval.safety_max_new_tokens,
                desc=f"safety {which}",
            )
        result["models"][which] = safety_rates(rows, [advises_urgent_care(a) for a in answers])
        for row, answer in zip(answers_out, answers):
            row[f"{which}_answer"], row[f"{which}_advises_urgent_care"] = answer, advises_urgent_care(answer)
    return result, answers_out
