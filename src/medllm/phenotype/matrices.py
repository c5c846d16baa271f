"""Sparse-matrix helpers shared by the rankers: disease subsets, max-propagation up the HPO graph, ancestor levels."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from medllm.errors import MedllmError
from medllm.phenotype.kb import PHENOTYPIC_ABNORMALITY, ROOT, KnowledgeBase


def select_diseases(kb: KnowledgeBase, prefixes: tuple[str, ...] | None) -> np.ndarray:
    """Row indices of the diseases with an id (their own or another) that starts with one of ``prefixes`` (all
    when None)."""
    if prefixes is None:
        return np.arange(kb.n_diseases)
    prefixes = tuple(prefixes)
    rows = np.array([r for r in range(kb.n_diseases) if any(i.startswith(prefixes) for i in kb.ids_of(r))], dtype=int)
    if not len(rows):
        raise MedllmError(f"no diseases with prefix {', '.join(prefixes)} in the knowledge base")
    return rows


def propagate_max(matrix: sp.csr_matrix, closure: sp.csr_matrix) -> sp.csr_matrix:
    """``out[d, t]`` = the largest ``matrix[d, a]`` over the terms ``a`` that are ``t`` or below it."""
    coo = matrix.tocoo()
    if coo.nnz == 0:
        return sp.csr_matrix(matrix.shape)
    below = closure[coo.col]
    counts = np.diff(below.indptr)
    n_terms = matrix.shape[1]
    key = np.repeat(coo.row.astype(np.int64), counts) * n_terms + below.indices
    values = np.repeat(coo.data, counts)
    order = np.lexsort((-values, key))
    key, values = key[order], values[order]
    first = np.r_[True, key[1:] != key[:-1]]
    key, values = key[first], values[first]
    return sp.csr_matrix((values, (key // n_terms, key % n_terms)), shape=matrix.shape)


def pattern(matrix: sp.spmatrix) -> sp.csr_matrix:
    """The non-zero pattern as a 0/1 float matrix (NaN entries count as present)."""
    out = sp.csr_matrix(matrix, copy=True)
    out.data = np.ones_like(out.data, dtype=np.float64)
    return out


def ancestor_levels(kb: KnowledgeBase, term: int) -> list[np.ndarray]:
    """Strict ancestors of ``term`` by distance (1, 2, ...), without the root and Phenotypic abnormality."""
    stop = {kb.term_index(ROOT), kb.term_index(PHENOTYPIC_ABNORMALITY)}
    seen, frontier, levels = {term}, [term], []
    while frontier:
        nxt = []
        for node in frontier:
            for parent in kb.parents.indices[kb.parents.indptr[node] : kb.parents.indptr[node + 1]]:
                if parent not in seen:
                    seen.add(parent)
                    nxt.append(int(parent))
        frontier = nxt
        kept = [t for t in nxt if t not in stop]
        if kept:
            levels.append(np.array(kept, dtype=np.int64))
    return levels


def row(matrix: sp.csr_matrix, i: int) -> np.ndarray:
    """Column indices of row ``i``'s non-zeros."""
    return matrix.indices[matrix.indptr[i] : matrix.indptr[i + 1]]


def column(matrix: sp.csc_matrix, j: int) -> np.ndarray:
    """Column ``j`` as a dense vector."""
    out = np.zeros(matrix.shape[0])
    start, end = matrix.indptr[j], matrix.indptr[j + 1]
    out[matrix.indices[start:end]] = matrix.data[start:end]
    return out
