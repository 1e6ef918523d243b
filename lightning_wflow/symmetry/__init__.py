"""Symmetries of MLP weights: permutations, alignment (weight matching, Sinkhorn re-basin),
scale canonicalization and loss barriers. Plain torch on flat ``(B, P)`` parameters."""

from .align import METHODS, align, select_reference
from .barrier import BarrierResult, loss_barrier, random_pairs
from .canonical import (
    CanonicalResult,
    canonical_scale,
    canonicalize,
    check_scale_symmetry,
    is_canonical,
)
from .permutation import (
    apply_permutation_matrices,
    apply_permutations,
    compose_permutations,
    identity_permutations,
    invert_permutations,
    permutation_matrices,
    random_permutations,
)
from .result import AlignmentResult, check_reference, solve_assignment
from .sinkhorn import OBJECTIVES, sinkhorn, sinkhorn_rebasin
from .weight_matching import weight_matching, weight_matching_scores

__all__ = [
    "METHODS",
    "OBJECTIVES",
    "AlignmentResult",
    "BarrierResult",
    "CanonicalResult",
    "align",
    "apply_permutation_matrices",
    "apply_permutations",
    "canonical_scale",
    "canonicalize",
    "check_reference",
    "check_scale_symmetry",
    "compose_permutations",
    "identity_permutations",
    "invert_permutations",
    "is_canonical",
    "loss_barrier",
    "permutation_matrices",
    "random_pairs",
    "random_permutations",
    "select_reference",
    "sinkhorn",
    "sinkhorn_rebasin",
    "solve_assignment",
    "weight_matching",
    "weight_matching_scores",
]
