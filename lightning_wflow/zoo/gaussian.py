"""The Gaussian toy's zoo: draws from ``N(mean, std^2 I)`` in weight space, fixed by a seed."""

from __future__ import annotations

import math

import torch

from ..weights import MLPSpec
from .build import Zoo

__all__ = ["sample_gaussian_zoo"]


def sample_gaussian_zoo(spec: MLPSpec, n_samples: int, mean: float, std: float, seed: int) -> Zoo:
    """``n_samples`` flat parameter vectors ``~ N(mean, std^2 I)`` as a zoo of one-checkpoint runs.

    Args:
        spec: architecture giving ``P``.
        n_samples: number of draws ``R``.
        mean: mean of every coordinate.
        std: standard deviation of every coordinate.
        seed: seed of a dedicated CPU generator (the draws do not depend on global state).

    Returns:
        :class:`Zoo` with ``weights (R, 1, P)``, no targets and no cache folder.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    if not (std > 0 and math.isfinite(std)):
        raise ValueError(f"gaussian_std must be a positive finite number, got {std}")
    if not math.isfinite(mean):
        raise ValueError(f"gaussian_mean must be finite, got {mean}")
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randn(n_samples, spec.n_params, generator=gen).mul_(std).add_(mean)
    manifest = {
        "task": {"name": "gaussian", "has_data": False},
        "spec": spec.to_dict(),
        "gaussian": {"n_samples": n_samples, "mean": mean, "std": std, "seed": seed},
    }
    return Zoo(
        spec=spec,
        weights=draws.unsqueeze(1),
        final=draws,
        target_accuracy=None,
        target_loss=None,
        steps=torch.zeros(1, dtype=torch.int64),
        manifest=manifest,
    )
