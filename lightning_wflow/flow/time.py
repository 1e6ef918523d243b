"""Training-time samplers ``t in [0, 1)`` (reference Section 6.4: ``t ~ Beta(1, 2)`` by default)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = ["TimeSampler", "UniformTimeSampler", "BetaTimeSampler", "sample_gamma"]


class TimeSampler(ABC):
    """Draws flow-matching times."""

    @abstractmethod
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """``(n,)`` times in ``[0, 1)``."""


class UniformTimeSampler(TimeSampler):
    """``t ~ U[0, 1)``."""

    def __repr__(self) -> str:
        return "UniformTimeSampler()"

    def sample(self, n, generator=None, device=None, dtype=torch.float32) -> Tensor:
        return torch.rand(n, generator=generator, device=device, dtype=dtype)


def sample_gamma(
    shape: tuple[int, ...],
    alpha: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Gamma(alpha, 1) samples with an explicit generator (Marsaglia & Tsang 2000).

    Vectorised rejection: each round redraws only the rejected entries (a loop over rounds,
    which ends after a few iterations, never over samples). ``alpha < 1`` uses the boost
    ``G(alpha) = G(alpha + 1) * U^(1/alpha)``.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    a = alpha + 1.0 if alpha < 1.0 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(shape, device=device, dtype=torch.float64)
    todo = torch.ones(shape, dtype=torch.bool, device=device)
    while bool(todo.any()):
        k = int(todo.sum())
        z = torch.randn(k, generator=generator, device=device, dtype=torch.float64)
        u = torch.rand(k, generator=generator, device=device, dtype=torch.float64)
        v = (1.0 + c * z) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        idx = todo.nonzero(as_tuple=True)
        sel = tuple(i[ok] for i in idx)
        out[sel] = (d * v)[ok]
        todo[sel] = False
    if alpha < 1.0:
        u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
        out = out * u.pow(1.0 / alpha)
    return out.to(dtype)


class BetaTimeSampler(TimeSampler):
    """``t ~ Beta(a, b)``; the default ``Beta(1, 2)`` puts more updates at small ``t``.

    ``a = 1`` (the default) uses the inverse CDF ``t = 1 - (1 - u)^(1/b)``; other shapes use
    ``G_a / (G_a + G_b)`` with generator-driven Gamma draws (:func:`sample_gamma`).

    Args:
        a: first shape parameter (> 0).
        b: second shape parameter (> 0).
    """

    def __init__(self, a: float = 1.0, b: float = 2.0) -> None:
        if a <= 0:
            raise ValueError(f"a must be > 0, got {a}")
        if b <= 0:
            raise ValueError(f"b must be > 0, got {b}")
        self.a, self.b = float(a), float(b)

    def __repr__(self) -> str:
        return f"BetaTimeSampler(a={self.a}, b={self.b})"

    def sample(self, n, generator=None, device=None, dtype=torch.float32) -> Tensor:
        if self.a == 1.0:
            u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
            t = 1.0 - (1.0 - u).pow(1.0 / self.b)
        else:
            ga = sample_gamma((n,), self.a, generator, device, torch.float64)
            gb = sample_gamma((n,), self.b, generator, device, torch.float64)
            t = ga / (ga + gb)
        # stay inside [0, 1) after the cast
        return t.clamp(0.0, 1.0 - torch.finfo(dtype).eps).to(dtype)
