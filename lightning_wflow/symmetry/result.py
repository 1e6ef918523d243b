"""Shared pieces of the alignment methods: the result type, reference checks, exact assignment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..weights import MLPSpec
from .permutation import apply_permutations

__all__ = ["AlignmentResult", "check_reference", "make_result", "solve_assignment"]


@dataclass
class AlignmentResult:
    """Networks permuted towards one reference.

    Attributes:
        aligned: ``(B, P)`` permuted parameters (same functions as the input).
        perms: one ``(B, h_k)`` LongTensor per hidden layer; ``aligned ==
            apply_permutations(spec, flat, perms)``.
        method: the alignment method's name.
        distance_before: ``(B,)`` Euclidean distance ``||reference - flat||``.
        distance_after: ``(B,)`` Euclidean distance ``||reference - aligned||``.
        n_iterations: coordinate-descent sweeps (weight matching) or optimizer steps
            (Sinkhorn), 0 for ``"none"``.
        seconds: wall-clock time of the alignment.
    """

    aligned: Tensor
    perms: list[Tensor]
    method: str
    distance_before: Tensor
    distance_after: Tensor
    n_iterations: int
    seconds: float


def check_reference(
    spec: MLPSpec, flat: Tensor, reference: Tensor, reference_spec: MLPSpec | None = None
) -> Tensor:
    """Validate a reference network against the zoo and return it as ``(P,)``.

    Args:
        spec: the zoo's architecture.
        flat: ``(B, P)`` the zoo (checked against ``spec`` too).
        reference: ``(P,)`` or ``(1, P)`` flat reference parameters.
        reference_spec: the reference's architecture when known; must equal ``spec``.

    Raises:
        ValueError: naming both architectures or both shapes when they differ.
    """
    spec.check_flat(flat)
    if reference_spec is not None and reference_spec != spec:
        raise ValueError(
            f"reference architecture {list(reference_spec.layer_sizes)} "
            f"({reference_spec.activation}) differs from the zoo's architecture "
            f"{list(spec.layer_sizes)} ({spec.activation})"
        )
    ref = reference.reshape(-1) if reference.ndim == 2 and reference.shape[0] == 1 else reference
    if ref.ndim != 1 or ref.shape[0] != spec.n_params:
        raise ValueError(
            f"reference has shape {tuple(reference.shape)} but the zoo's architecture "
            f"{list(spec.layer_sizes)} has {spec.n_params} parameters (expected ({spec.n_params},) "
            f"or (1, {spec.n_params}))"
        )
    return ref.to(device=flat.device, dtype=flat.dtype)


def solve_assignment(score: Tensor) -> Tensor:
    """Exact maximum-score assignment of each ``(h, h)`` matrix of a batch.

    ``perm[b, i] = k`` assigns column ``k`` to row ``i`` so that ``sum_i score[b, i, perm[b, i]]``
    is maximal (Hungarian / Jonker-Volgenant via ``scipy.optimize.linear_sum_assignment``).
    scipy has no batched solver, so this is a loop over the ``B`` matrices on the CPU; each
    problem is ``h x h`` with ``h`` a hidden width, a few microseconds apiece.

    Args:
        score: ``(B, h, h)`` scores on any device.

    Returns:
        ``(B, h)`` LongTensor on ``score``'s device.
    """
    s = score.detach().to("cpu", torch.float64).numpy()
    out = np.empty(s.shape[:2], dtype=np.int64)
    for b in range(s.shape[0]):
        out[b] = linear_sum_assignment(s[b], maximize=True)[1]
    return torch.from_numpy(out).to(score.device)


def make_result(
    spec: MLPSpec,
    flat: Tensor,
    reference: Tensor,
    perms: list[Tensor],
    method: str,
    n_iterations: int,
    seconds: float,
) -> AlignmentResult:
    """Apply ``perms`` and package an :class:`AlignmentResult` with the distances."""
    with torch.no_grad():
        aligned = apply_permutations(spec, flat.detach(), perms)
        ref = reference.unsqueeze(0) if reference.ndim == 1 else reference
        before = (flat.detach() - ref).norm(dim=1)
        after = (aligned - ref).norm(dim=1)
    return AlignmentResult(aligned, perms, method, before, after, n_iterations, seconds)
