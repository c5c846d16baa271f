"""Cloze loaders: BioRead / BioReadLite shards and CliCR case-report queries."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from medllm.data.loaders.reading import (
    MAX_BAD_FRACTION,
    Bad,
    ident,
    ident_or_none,
    json_array,
    load_records,
    numbered_lines,
    required_text,
    shards,
    source_record,
)
from medllm.data.sources import LoadStats

BLANK = "____"  # the cloze blank shown to the model (CliCR's @placeholder, BioRead's XXXXXX)


# ----------------------------------------------------------------------------- BioRead

_DASHES = "-" * 30


def _bioread_units(files: list[Path]) -> Iterator[tuple[str, object]]:
    """(``shard:line``, (shard, line, parts)) per record; parts are split at the 30-dash lines.

    A record ends at a line of ``=`` signs, or at a blank line once its fourth
    part (the one-line answer) has text, so blank-line-separated shards load too.
    """
    for shard in files:
        parts: list[list[str]] = [[]]
        start = 0
        for number, line in numbered_lines(shard):
            stripped = line.strip()
            answered = len(parts) == 4 and any(p.strip() for p in parts[3])
            ends = (stripped and set(stripped) == {"="}) or (not stripped and answered)
            if ends:
                if start:
                    yield f"{shard}:{start}", (shard, start, parts)
                parts, start = [[]], 0
            elif stripped == _DASHES:
                parts.append([])
                start = start or number
            elif stripped or start:
                parts[-1].append(line)
                start = start or number
        if start:
            yield f"{shard}:{start}", (shard, start, parts)


def _bioread_parse(raw) -> tuple[list[dict], int]:
    shard, start, parts = raw
    if len(parts) != 4:
        raise Bad(f"expected 4 parts separated by lines of 30 dashes, got {len(parts)}")
    context, question, candidate_lines, answer_lines = ("\n".join(p).strip() for p in parts)
    if not context:
        raise Bad("empty context")
    if "XXXXXX" not in question:
        raise Bad("the question has no XXXXXX blank")
    candidates = {}
    for line in candidate_lines.splitlines():
        entity, _, name = line.partition(":")
        if not re.fullmatch(r"@entity\d+", entity.strip()) or not name.strip():
            raise Bad(f"candidate line {line!r:.60} is not '@entityN:name'")
        candidates[entity.strip()] = name.strip()
    answer = answer_lines.partition(":")[0].strip()
    if "\n" in answer_lines or answer not in candidates:
        raise Bad(f"answer {answer_lines!r:.60} is not one '@entityN:name' line naming a candidate")
    listed = "".join(f"{entity}: {name}\n" for entity, name in candidates.items())
    prompt = (
        f"Text:\n{context}\n\nSentence: {question.replace('XXXXXX', BLANK)}\n"
        f"Candidates (entity: name):\n{listed}Fill in the blank ({BLANK}) with one candidate; answer with its name."
    )
    group = hashlib.sha1(context.encode()).hexdigest()[:16]
    return [
        source_record(
            "bioread",
            f"{shard.parent.name}/{shard.stem}:{start}",
            group,
            prompt,
            candidates[answer],
            {"candidates": list(candidates.values())},
        )
    ], 0


def iter_bioread(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """BioRead / BioReadLite cloze shards (a ``.txt`` file, a folder of them or a glob).

    The context keeps the ``@entityN`` ids, so the answer must be read, not
    recalled; the prompt lists the candidates with their surface names and the
    reference is the answer's surface name (``meta.candidates``: all names).
    The blank ``XXXXXX`` is shown as ``____``. Grouped by a hash of the context:
    instances cut from the same passage stay together.
    """
    files = shards("bioread", path, "*.txt")
    return load_records("bioread", path, _bioread_units(files), _bioread_parse, stats, max_bad_fraction)


# ----------------------------------------------------------------------------- CliCR


def _clicr_plain(text: str) -> str:
    """``BEG__w1 w2__END`` entity marks → ``w1 w2``."""
    return re.sub(r"BEG__(.+?)__END", r"\1", text).strip()


def _clicr_parse(item) -> tuple[list[dict], int]:
    """One record per query of a document; a document with a malformed query is skipped whole."""
    document = item.get("document") if isinstance(item, dict) else None
    if not isinstance(document, dict) or not isinstance(document.get("qas"), list):
        raise Bad("expected {source, document: {title, context, qas: [...]}}")
    context = _clicr_plain(required_text(document, "context"))
    title = _clicr_plain(document["title"]) if isinstance(document.get("title"), str) else ""
    group = ident_or_none(item.get("source")) or title or hashlib.sha1(context.encode()).hexdigest()[:16]
    records = []
    for j, qa in enumerate(document["qas"]):
        if not isinstance(qa, dict):
            raise Bad(f"qas[{j}] is not an object")
        query = _clicr_plain(required_text(qa, "query", f"qas[{j}]."))
        if "@placeholder" not in query:
            raise Bad(f"qas[{j}].query has no @placeholder")
        answers = qa.get("answers")
        if (
            not isinstance(answers, list)
            or not answers
            or not all(isinstance(a, dict) and isinstance(a.get("text"), str) and a["text"].strip() for a in answers)
        ):
            raise Bad(f"qas[{j}].answers must be a non-empty list of {{text, origin}}")
        first = next((a for a in answers if a.get("origin") == "dataset"), answers[0])
        reference = _clicr_plain(first["text"])
        alternatives = list(dict.fromkeys(_clicr_plain(a["text"]) for a in answers if a is not first))
        heading = f"Case report: {title}\n" if title else ""
        prompt = (
            f"{heading}{context}\n\nQuery: {query.replace('@placeholder', BLANK)}\n"
            f"Fill in the blank ({BLANK}) with a word or phrase."
        )
        records.append(
            source_record(
                "clicr",
                ident(qa, "id"),
                group,
                prompt,
                reference,
                {"alternatives": [a for a in alternatives if a != reference]},
            )
        )
    return records, 0


def iter_clicr(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """CliCR cloze queries (a ``*1.0.json`` file, a folder of them or a glob).

    Entity marks are removed and ``@placeholder`` is shown as ``____``. The
    reference is the answer of origin ``dataset`` (the first);
    ``meta.alternatives`` are the UMLS synonyms, for lenient scoring. Grouped by
    the document's ``source`` (its case report).
    """
    files = shards("clicr", path, "*.json")
    units = (unit for file in files for unit in json_array("clicr", file, "data.item"))
    return load_records("clicr", path, units, _clicr_parse, stats, max_bad_fraction)
