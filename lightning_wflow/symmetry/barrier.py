"""Loss barriers along linear paths between networks (reference Figure 7.2).

For a pair ``(theta_a, theta_b)`` and points ``t_0 = 0 < t_1 < ... < t_{n-1} = 1`` the barrier
is the largest excess of the loss on the path over the linear interpolation of the
endpoint losses:

    B = max_{0 < j < n-1}  L((1 - t_j) theta_a + t_j theta_b)
                           - ((1 - t_j) L(theta_a) + t_j L(theta_b)).

With ``n_points = 3`` this is the midpoint barrier of the reference:
``L((theta_a + theta_b) / 2) - (L(theta_a) + L(theta_b)) / 2``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..weights import MLPSpec

__all__ = ["BarrierResult", "loss_barrier", "random_pairs"]


@dataclass
class BarrierResult:
    """Loss barriers of ``M`` pairs.

    Attributes:
        barrier: ``(M,)`` barrier per pair.
        t: ``(n_points,)`` positions on the segment (0 and 1 included).
        curve: ``(M, n_points)`` loss along each path; ``curve[:, 0]`` and ``curve[:, -1]``
            are the endpoint losses.
    """

    barrier: Tensor
    t: Tensor
    curve: Tensor

    @property
    def loss_a(self) -> Tensor:
        """``(M,)`` loss of the first networks."""
        return self.curve[:, 0]

    @property
    def loss_b(self) -> Tensor:
        """``(M,)`` loss of the second networks."""
        return self.curve[:, -1]

    @property
    def mean(self) -> float:
        """Mean barrier over the pairs."""
        return float(self.barrier.mean())

    @property
    def std(self) -> float:
        """Standard deviation of the barrier over the pairs (0 for a single pair)."""
        return float(self.barrier.std()) if self.barrier.numel() > 1 else 0.0


def loss_barrier(
    spec: MLPSpec,
    flat_a: Tensor,
    flat_b: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    n_points: int = 3,
) -> BarrierResult:
    """Loss barriers of ``M`` pairs, one ``loss_fn`` call of ``M`` networks per path point.

    Args:
        spec: the architecture of both sides.
        flat_a: ``(M, P)`` first networks of the pairs.
        flat_b: ``(M, P)`` second networks.
        loss_fn: ``flat (M, P) -> (M,)`` task loss per network (use a deterministic, full
            batch loss for comparable numbers).
        n_points: points on each segment, endpoints included (>= 3; 3 is the midpoint).

    Returns:
        :class:`BarrierResult`.
    """
    spec.check_flat(flat_a)
    spec.check_flat(flat_b)
    if flat_a.shape != flat_b.shape:
        raise ValueError(
            f"flat_a and flat_b must have the same shape, got {tuple(flat_a.shape)} and "
            f"{tuple(flat_b.shape)}"
        )
    if n_points < 3:
        raise ValueError(f"n_points must be >= 3 (endpoints and the midpoint), got {n_points}")
    t = torch.linspace(0, 1, n_points, dtype=flat_a.dtype, device=flat_a.device)
    with torch.no_grad():
        curve = torch.stack(
            [loss_fn(torch.lerp(flat_a, flat_b, float(tj))) for tj in t.tolist()], dim=1
        )
        linear = torch.lerp(curve[:, :1], curve[:, -1:], t.unsqueeze(0))
        barrier = (curve - linear)[:, 1:-1].amax(dim=1)
    return BarrierResult(barrier, t, curve)


def random_pairs(n: int, m: int, generator: torch.Generator | None = None) -> Tensor:
    """``m`` distinct unordered pairs ``(i, j)``, ``i < j < n``, drawn without replacement.

    Args:
        n: number of networks.
        m: number of pairs, at most ``n (n - 1) / 2``.
        generator: CPU generator.

    Returns:
        ``(m, 2)`` LongTensor.
    """
    total = n * (n - 1) // 2
    if n < 2:
        raise ValueError(f"n must be >= 2 to form a pair, got {n}")
    if not 1 <= m <= total:
        raise ValueError(f"m must be between 1 and n (n - 1) / 2 = {total} for n = {n}, got {m}")
    pairs = torch.triu_indices(n, n, offset=1).T
    return pairs[torch.randperm(total, generator=generator)[:m]]
