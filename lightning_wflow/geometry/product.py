"""Riemannian flow matching on the product of spheres and Euclidean biases (reference 3.3, 6.2.3)."""

from __future__ import annotations

import torch
from torch import Tensor

from . import sphere
from .base import Geometry, _sq_euclid_cost, time_like

__all__ = ["GeometricGeometry"]


def _pairwise_sphere_sq_dist(a: Tensor, b: Tensor, radius: float) -> Tensor:
    """``(n, k, d), (m, k, d) -> (n, m)``: sum over the ``k`` spheres of squared geodesic distances.

    Uses ``theta = 2 atan2(||x - y||, ||x + y||)`` with ``||x -+ y||^2 = 2 -+ 2 <x, y>`` on unit
    vectors, computed in float64.
    """
    a = sphere.projx(a.double())
    b = sphere.projx(b.double())
    g = torch.einsum("ikd,jkd->ijk", a, b)
    theta = 2.0 * torch.atan2((2.0 - 2.0 * g).clamp_min(0.0).sqrt(), (2.0 + 2.0 * g).clamp_min(0.0).sqrt())
    return (radius * radius) * (theta * theta).sum(-1)


class GeometricGeometry(Geometry):
    """Product of spheres (canonical weights) times Euclidean biases, with Riemannian paths.

    On each sphere (a hidden neuron's incoming weights, or the whole last layer of radius
    ``sqrt(C)``) the path is the geodesic ``x_t = exp_{x0}(t log_{x0} x1)`` (eq. 3.15) and the
    target velocity ``u_t = log_{x_t}(x1) / (1 - t)`` (eq. 3.16); on the Euclidean parts both are
    the straight-line ones. Velocities are tangent vectors and steps go through ``expmap``.
    """

    name = "geometric"
    riemannian = True
    needs_canonical = True

    @property
    def dim(self) -> int:
        """Intrinsic dimension ``P - (number of spheres)``."""
        return self.layout.manifold_dim

    # ------------------------------------------------------------ manifold maps
    def projx(self, x: Tensor) -> Tensor:
        return self.layout.projx(x)

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        return self.layout.map(lambda b, p, q: sphere.proju(p, q), lambda p, q: q, x, u)

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        return self.layout.map(lambda b, p, q: sphere.expmap(p, q, b.radius), lambda p, q: p + q, x, u)

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        return self.layout.map(lambda b, p, q: sphere.logmap(p, q, b.radius), lambda p, q: q - p, x, y)

    def pullback(self, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """``d(log_x)_y[v]`` on the spheres (closed form, :func:`sphere.dlogmap`), ``v`` elsewhere."""
        return self.layout.map(
            lambda b, p, q, w: sphere.dlogmap(p, q, w, b.radius), lambda p, q, w: w, x, y, v
        )

    def sq_dist(self, x: Tensor, y: Tensor) -> Tensor:
        return self.layout.reduce(
            lambda b, p, q: sphere.sq_dist(p, q, b.radius), lambda p, q: ((p - q) ** 2).sum(-1), x, y
        )

    # --------------------------------------------------------- flow matching
    def interpolate(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """``exp_{x0}(t log_{x0} x1)`` on the spheres, ``(1 - t) x0 + t x1`` on the rest."""

        def on_sphere(b, p, q):
            return sphere.expmap(p, time_like(t, p) * sphere.logmap(p, q, b.radius), b.radius)

        def on_euclid(p, q):
            tt = time_like(t, p)
            return (1.0 - tt) * p + tt * q

        return self.layout.map(on_sphere, on_euclid, x0, x1)

    def target_velocity(self, x0: Tensor, x1: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """``log_{x_t}(x1) / (1 - t)`` on the spheres, ``x1 - x0`` on the rest.

        For ``1 - t < min_gap`` the sphere part switches to ``-log_{x_t}(x0) / t``, which equals
        the same geodesic velocity when ``x_t`` lies on the geodesic and has no ``1/(1-t)`` blow-up.
        """

        def on_sphere(b, p0, p1, pt):
            tt = time_like(t, pt)
            near_end = (1.0 - tt) < self.min_gap
            forward = sphere.logmap(pt, p1, b.radius) / (1.0 - tt).clamp_min(self.min_gap)
            backward = -sphere.logmap(pt, p0, b.radius) / tt.clamp_min(self.min_gap)
            return torch.where(near_end, backward, forward)

        return self.layout.map(on_sphere, lambda p0, p1, pt: p1 - p0, x0, x1, x_t)

    def velocity_from_x1(self, x_t: Tensor, x1_hat: Tensor, t: Tensor) -> Tensor:
        """``log_{x_t}(projx(x1_hat)) / max(1 - t, min_gap)`` on spheres, ``(x1_hat - x_t) / max(1 - t, min_gap)`` elsewhere.

        This is the geometric velocity of reference eq. 3.16 with the prediction in place of
        ``x1`` (not ``x1_hat - x0``, the public reference code's bug).
        """

        def on_sphere(b, pt, p1):
            return sphere.logmap(pt, sphere.projx(p1, b.radius), b.radius) / self.gap(t, pt)

        return self.layout.map(on_sphere, lambda pt, p1: (p1 - pt) / self.gap(t, pt), x_t, x1_hat)

    def loss(self, x1_hat: Tensor, x1: Tensor) -> Tensor:
        """``(sum_spheres d(projx(x1_hat), x1)^2 + ||bias diff||^2) / P`` per sample (smooth at 0)."""
        return self.sq_dist(x1_hat, x1) / self.n_params

    def cost_matrix(self, x0: Tensor, x1: Tensor) -> Tensor:
        """Pairwise squared geodesic distances on the product manifold, float64 ``(n, m)``."""
        parts0, parts1 = self.layout.split(x0), self.layout.split(x1)
        total = torch.zeros(x0.shape[0], x1.shape[0], dtype=torch.float64, device=x0.device)
        for a, b, seg in zip(parts0, parts1, self.layout.segments):
            if seg.block is None:
                total = total + _sq_euclid_cost(a, b)
            else:
                total = total + _pairwise_sphere_sq_dist(a, b, seg.block.radius)
        return total

    def check(self, x: Tensor, atol: float | None = None) -> tuple[bool, str]:
        return self.layout.check(x, atol)
