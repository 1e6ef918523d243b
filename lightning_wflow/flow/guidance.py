"""Loss guidance during sampling (reference eq. 6.1, with the sign that descends the loss)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..geometry import Geometry

__all__ = ["LossGuidance", "check_window"]


def check_window(t_start: float, t_end: float, owner: str) -> None:
    """Validate a time window ``0 <= t_start <= t_end <= 1``; messages name the fields."""
    if not 0.0 <= t_start <= 1.0:
        raise ValueError(f"{owner}.t_start must be in [0, 1], got {t_start}")
    if not 0.0 <= t_end <= 1.0:
        raise ValueError(f"{owner}.t_end must be in [0, 1], got {t_end}")
    if t_start > t_end:
        raise ValueError(f"{owner}.t_start ({t_start}) must be <= {owner}.t_end ({t_end})")


class LossGuidance:
    """Guide the flow down the base task's loss inside a time window.

    Inside ``[t_start, t_end)`` the velocity becomes
    ``v(x_t, t) - scale * grad_M L(x_t)``, with ``L(x) = loss_fn(x).sum()`` (one loss per network,
    so each network gets the gradient of its own loss) and ``grad_M`` the Riemannian gradient
    (the Euclidean gradient projected onto the tangent space with ``proju``; the identity in flat
    geometries). The thesis prints ``+ lambda grad L`` (eq. 6.1); descent needs the minus sign.
    A ``loss_fn`` that draws a fresh minibatch per call adds the implicit stochasticity the
    reference describes.

    Args:
        loss_fn: ``(B, P) -> (B,)`` differentiable loss per network (e.g. ``Task.loss_fn(spec, ...)``).
        scale: ``lambda >= 0``.
        t_start: start of the window.
        t_end: end of the window.
    """

    def __init__(
        self,
        loss_fn: Callable[[Tensor], Tensor],
        scale: float,
        t_start: float = 0.0,
        t_end: float = 1.0,
    ) -> None:
        if scale < 0:
            raise ValueError(f"LossGuidance.scale must be >= 0, got {scale}")
        check_window(t_start, t_end, "LossGuidance")
        self.loss_fn, self.scale = loss_fn, float(scale)
        self.t_start, self.t_end = float(t_start), float(t_end)

    def __repr__(self) -> str:
        return f"LossGuidance(scale={self.scale}, t_start={self.t_start}, t_end={self.t_end})"

    def active(self, t: float) -> bool:
        """Whether guidance applies at time ``t`` (``t_start <= t < t_end``, or ``t = 1 = t_end``)."""
        return self.scale > 0 and (self.t_start <= t < self.t_end or t == self.t_end == 1.0)

    def gradient(self, x: Tensor, geometry: Geometry) -> Tensor:
        """Riemannian gradient ``proju(x, d/dx sum_b loss_fn(x)_b)``, ``(B, P)``."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            loss = self.loss_fn(xg)
            (grad,) = torch.autograd.grad(loss.sum(), xg)
        return geometry.proju(x.detach(), grad)

    def __call__(self, x: Tensor, t: float, geometry: Geometry) -> Tensor:
        """The guidance term ``-scale * grad_M L(x)`` (zeros outside the window)."""
        if not self.active(t):
            return torch.zeros_like(x)
        return -self.scale * self.gradient(x, geometry)
