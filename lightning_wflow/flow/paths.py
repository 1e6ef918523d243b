"""Conditional paths and the x1-prediction parametrisation (reference Sections 3.2, 3.3, 6.4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..geometry import Geometry

__all__ = ["PathSample", "sample_path", "x1_prediction_velocity"]


@dataclass
class PathSample:
    """One conditional-path draw.

    Attributes:
        x0: ``(B, P)`` source points.
        x1: ``(B, P)`` target points.
        t: ``(B,)`` times.
        x_t: ``(B, P)`` points on the (noised) path.
        u_t: ``(B, P)`` conditional target velocity at ``x_t``.
    """

    x0: Tensor
    x1: Tensor
    t: Tensor
    x_t: Tensor
    u_t: Tensor


def sample_path(
    geometry: Geometry,
    x0: Tensor,
    x1: Tensor,
    t: Tensor,
    sigma: float = 0.0,
    generator: torch.Generator | None = None,
) -> PathSample:
    """Draw ``x_t ~ p_t(x | x0, x1)`` and its target velocity.

    ``x_t = interpolate(x0, x1, t)``, then for ``sigma > 0`` perturbed by ``sigma * xi`` with
    ``xi`` standard Gaussian noise in the tangent space (through ``expmap``, so it stays on the
    manifold for the Geometric flow): the Gaussian conditional path ``N((1-t) x0 + t x1, sigma^2)``
    of eq. 3.11 in the Euclidean case. ``u_t = geometry.target_velocity(x0, x1, x_t, t)``.

    Args:
        geometry: the geometry.
        x0: ``(B, P)`` source points.
        x1: ``(B, P)`` target points.
        t: ``(B,)`` times.
        sigma: path width (>= 0).
        generator: random generator for the path noise.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    x_t = geometry.interpolate(x0, x1, t)
    if sigma > 0:
        x_t = geometry.expmap(x_t, sigma * geometry.random_tangent(x_t, generator))
    return PathSample(x0, x1, t, x_t, geometry.target_velocity(x0, x1, x_t, t))


def x1_prediction_velocity(
    model: Callable[[Tensor, Tensor], Tensor], geometry: Geometry
) -> Callable[[Tensor, Tensor], Tensor]:
    """Turn an x1-predicting network into a velocity field for the solvers.

    ``v(x_t, t) = geometry.velocity_from_x1(x_t, model(x_t, t), t)``: ``(x1_hat - x_t) / (1 - t)``
    in flat geometries, ``log_{x_t}(projx(x1_hat)) / (1 - t)`` on the spheres (``1 - t`` clamped
    below by ``geometry.min_gap``).
    """

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        return geometry.velocity_from_x1(x, model(x, t), t)

    return velocity
