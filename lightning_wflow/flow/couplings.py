"""Couplings ``q(x0, x1)`` of a prior batch with a data batch (reference Section 3.2.3).

A coupling re-pairs the two batches; it never changes the set of data points. The OT coupling
solves the minibatch assignment problem exactly (uniform weights on equal-size batches give a
permutation), so no pair is duplicated, unlike sampling a plan with replacement.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..geometry import Geometry
from ..symmetry import weight_matching

__all__ = ["COUPLINGS", "Coupling", "EquivariantCoupling", "IndependentCoupling", "OTCoupling", "make_coupling"]


class Coupling(ABC):
    """``coupling(x0 (B, P), x1 (B, P), geometry) -> (x0, x1)`` re-paired."""

    @abstractmethod
    def __call__(self, x0: Tensor, x1: Tensor, geometry: Geometry) -> tuple[Tensor, Tensor]:
        """Return the batches re-paired (row ``i`` of both outputs is one pair)."""


class IndependentCoupling(Coupling):
    """``q(x0, x1) = p0(x0) p1(x1)``: the batches are returned as drawn."""

    def __repr__(self) -> str:
        return "IndependentCoupling()"

    def __call__(self, x0: Tensor, x1: Tensor, geometry: Geometry) -> tuple[Tensor, Tensor]:
        return x0, x1


class OTCoupling(Coupling):
    """Exact minibatch optimal transport with cost ``geometry.cost_matrix`` (squared distance).

    With uniform weights on two batches of equal size ``B`` the optimal plan is a permutation
    ``sigma`` (Birkhoff), found with the Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``): ``min_sigma sum_i c(x0_sigma(i), x1_i)``.
    The data batch keeps its order and the prior batch is permuted, so anything attached to
    ``x1`` rows stays aligned.
    """

    def __repr__(self) -> str:
        return "OTCoupling()"

    def assignment(self, x0: Tensor, x1: Tensor, geometry: Geometry) -> Tensor:
        """``(B,)`` long tensor ``sigma`` such that ``x0[sigma]`` is optimally paired with ``x1``."""
        if x0.shape != x1.shape:
            raise ValueError(
                f"OTCoupling needs batches of equal shape, got x0 {tuple(x0.shape)} and x1 {tuple(x1.shape)}"
            )
        cost = geometry.cost_matrix(x0.detach(), x1.detach()).cpu().numpy()
        if not np.isfinite(cost).all():
            raise FloatingPointError("OTCoupling: the cost matrix contains NaN or Inf")
        rows, cols = linear_sum_assignment(cost)  # rows = arange(B)
        sigma = np.empty_like(cols)
        sigma[cols] = rows  # x1[j] is paired with x0[rows[i]] where cols[i] = j
        return torch.as_tensor(sigma, dtype=torch.long, device=x0.device)

    def __call__(self, x0: Tensor, x1: Tensor, geometry: Geometry) -> tuple[Tensor, Tensor]:
        return x0[self.assignment(x0, x1, geometry)], x1


class EquivariantCoupling(Coupling):
    """Independent pairs, then each data network permuted towards its prior draw.

    Equivariant flow matching (Klein, Kramer & Noe, NeurIPS 2023) for the hidden-neuron
    permutations: for every pair, weight matching (:func:`~lightning_wflow.symmetry.weight_matching`
    with one reference per network) finds the permutation ``pi`` of ``x1``'s hidden neurons
    closest to ``x0`` and the pair becomes ``(x0, pi x1)``. ``pi x1`` computes the same
    function as ``x1``, so the flow still learns the data up to the symmetry, but paths are
    shorter and, above all, learnable by an equivariant velocity field: with data aligned to
    one reference, ``E[x1 | x_t]`` near ``t = 0`` is that reference's neuron order, which no
    permutation-equivariant field can output from symmetric noise (its best guess gives
    every hidden neuron the same weights); aligned to ``x0``, which neuron becomes which
    feature is decided by ``x0`` itself. Permutations keep every neuron's sphere, so the
    canonical geometries are preserved.

    Args:
        max_sweeps: weight-matching sweeps over the hidden layers per pair (one descent,
            layers in a fixed order: a deterministic coupling).
    """

    def __init__(self, max_sweeps: int = 10):
        if max_sweeps < 1:
            raise ValueError(f"max_sweeps must be >= 1, got {max_sweeps}")
        self.max_sweeps = max_sweeps

    def __repr__(self) -> str:
        return f"EquivariantCoupling(max_sweeps={self.max_sweeps})"

    def __call__(self, x0: Tensor, x1: Tensor, geometry: Geometry) -> tuple[Tensor, Tensor]:
        if x0.shape != x1.shape:
            raise ValueError(
                f"EquivariantCoupling needs batches of equal shape, got x0 {tuple(x0.shape)} and x1 {tuple(x1.shape)}"
            )
        # (B, P) references pair row b with row b (for B = 1 shared and paired coincide)
        res = weight_matching(geometry.spec, x1, x0, self.max_sweeps, "fixed", 1)
        return x0, res.aligned.to(x1.dtype)


#: Coupling classes by name.
COUPLINGS: dict[str, type[Coupling]] = {
    "independent": IndependentCoupling,
    "ot": OTCoupling,
    "equivariant": EquivariantCoupling,
}


def make_coupling(name: str) -> Coupling:
    """A coupling by name (a key of :data:`COUPLINGS`); raises ``ValueError`` for anything else."""
    if name not in COUPLINGS:
        raise ValueError(f"coupling must be one of {sorted(COUPLINGS)}, got {name!r}")
    return COUPLINGS[name]()
