"""The geometry a flow lives in, over the flat ``(B, P)`` layout: abstract base and Euclidean.

A :class:`Geometry` bundles the manifold maps (``projx``, ``proju``, ``expmap``, ``logmap``)
with the pieces of flow matching that depend on them (path, target velocity, x1-prediction,
loss, OT cost). The three variants of the reference (Section 6.2):

* :class:`EuclideanGeometry`: raw weights, straight paths ``x_t = (1-t) x0 + t x1``, ``u = x1 - x0``.
* :class:`NormalizedGeometry`: the same straight paths and Euclidean velocity, but data and prior
  on the product of spheres (canonical weights); ``projx`` projects onto that product.
* :class:`~lightning_wflow.geometry.product.GeometricGeometry`: Riemannian flow matching on the
  product of spheres (geodesic paths on the spheres, straight lines on the biases).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ..weights import MLPSpec
from .layout import ProductLayout

__all__ = ["Geometry", "EuclideanGeometry", "NormalizedGeometry", "DEFAULT_MIN_GAP"]

#: Default lower clamp on ``1 - t`` where a velocity divides by it (x1-prediction near t = 1).
DEFAULT_MIN_GAP = 1e-3


def time_like(t: Tensor | float, x: Tensor) -> Tensor:
    """Broadcast a time ``t`` (scalar or ``(B,)``) against ``x (B, ...)``: returns ``(B, 1, ...)``."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        return t
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


class Geometry(ABC):
    """Abstract geometry over flat network parameters ``(B, P)``.

    Args:
        spec: the MLP architecture (defines the flat layout).
        last_layer_sphere: for the product geometries, whether the last weight matrix is one
            sphere of radius ``sqrt(C)`` (classification) or Euclidean (regression).
        min_gap: lower clamp on ``1 - t`` in :meth:`velocity_from_x1` and the switching point of
            :meth:`target_velocity` near ``t = 1``.

    Attributes:
        name: ``"euclidean"``, ``"normalized"`` or ``"geometric"``.
        riemannian: whether velocities are tangent vectors (projected with ``proju``) and steps
            go through ``expmap``; False means plain ``x + v dt``.
        needs_canonical: whether data and prior must lie on the product of spheres.
    """

    name: str = ""
    riemannian: bool = False
    needs_canonical: bool = False

    def __init__(
        self, spec: MLPSpec, last_layer_sphere: bool = True, min_gap: float = DEFAULT_MIN_GAP
    ) -> None:
        if not 0.0 < min_gap < 1.0:
            raise ValueError(f"min_gap must be in (0, 1), got {min_gap}")
        self.spec = spec
        self.last_layer_sphere = bool(last_layer_sphere)
        self.min_gap = float(min_gap)
        self.layout = ProductLayout(spec, last_layer_sphere)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(layer_sizes={list(self.spec.layer_sizes)}, "
            f"last_layer_sphere={self.last_layer_sphere})"
        )

    @property
    def n_params(self) -> int:
        return self.spec.n_params

    @property
    def dim(self) -> int:
        """Dimension of the space the flow moves in (``P`` for ambient flows)."""
        return self.n_params

    def gap(self, t: Tensor | float, x: Tensor) -> Tensor:
        """``max(1 - t, min_gap)`` broadcast against ``x``."""
        return (1.0 - time_like(t, x)).clamp_min(self.min_gap)

    # ------------------------------------------------------------ manifold maps
    @abstractmethod
    def projx(self, x: Tensor) -> Tensor:
        """Project ambient points ``(..., P)`` onto the geometry's state space."""

    @abstractmethod
    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        """Project ambient vectors ``u`` onto the tangent space at ``x``."""

    @abstractmethod
    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        """``exp_x(u)``."""

    @abstractmethod
    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        """``log_x(y)``."""

    @abstractmethod
    def sq_dist(self, x: Tensor, y: Tensor) -> Tensor:
        """Squared distance ``(..., P), (..., P) -> (...)``."""

    def step(self, x: Tensor, v: Tensor, dt: Tensor | float) -> Tensor:
        """One explicit step ``x <- exp_x(proju(x, v) dt)`` (``x + v dt`` in flat geometries)."""
        return self.expmap(x, self.proju(x, v) * dt)

    def pullback(self, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """Carry a tangent vector ``v`` at ``y`` to ``T_x`` through the differential of ``log_x``.

        ``d(log_x)_y[v]``: the velocity, in normal coordinates centred at ``x``, of a curve through
        ``y`` with velocity ``v``. Runge-Kutta stages combined in these coordinates keep the
        solver's full order on curved manifolds. Identity in flat geometries.
        """
        return v

    def random_tangent(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Standard Gaussian noise in ambient space projected to the tangent space at ``x``."""
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return self.proju(x, z)

    def as_riemannian(self) -> "Geometry":
        """The geometry whose tangent spaces define divergences and densities (see likelihood)."""
        return self

    # --------------------------------------------------------- flow matching
    @abstractmethod
    def interpolate(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """Conditional path ``x_t`` between ``x0`` and ``x1`` at times ``t (B,)``."""

    @abstractmethod
    def target_velocity(self, x0: Tensor, x1: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Conditional target velocity ``u_t(x_t | x0, x1)``."""

    @abstractmethod
    def velocity_from_x1(self, x_t: Tensor, x1_hat: Tensor, t: Tensor) -> Tensor:
        """Velocity implied by an x1-prediction at ``(x_t, t)``; safe near ``t = 1``."""

    @abstractmethod
    def loss(self, x1_hat: Tensor, x1: Tensor) -> Tensor:
        """Per-sample x1-prediction loss ``(B, P), (B, P) -> (B,)`` in the geometry's metric."""

    @abstractmethod
    def cost_matrix(self, x0: Tensor, x1: Tensor) -> Tensor:
        """Pairwise squared distances ``(n, P), (m, P) -> (n, m)`` (float64, for OT couplings)."""

    @abstractmethod
    def check(self, x: Tensor, atol: float | None = None) -> tuple[bool, str]:
        """``(ok, reason)``: is ``x (B, P)`` a finite batch of points of this geometry?"""


def _sq_euclid_cost(x0: Tensor, x1: Tensor) -> Tensor:
    """``||x0_i - x1_j||^2`` in float64, ``(n, d), (m, d) -> (n, m)``."""
    a, b = x0.double(), x1.double()
    return ((a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)


class EuclideanGeometry(Geometry):
    """Flat ``R^P``: straight paths and constant conditional velocity.

    ``x_t = (1 - t) x0 + t x1``, ``u_t = x1 - x0``, x1-prediction velocity
    ``v = (x1_hat - x_t) / max(1 - t, min_gap)``, loss ``mean_j (x1_hat - x1)_j^2``.
    """

    name = "euclidean"

    def projx(self, x: Tensor) -> Tensor:
        return x

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        return u

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        return x + u

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        return y - x

    def sq_dist(self, x: Tensor, y: Tensor) -> Tensor:
        return ((x - y) ** 2).sum(-1)

    def step(self, x: Tensor, v: Tensor, dt: Tensor | float) -> Tensor:
        return x + v * dt

    def random_tangent(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)

    def interpolate(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        t = time_like(t, x0)
        return (1.0 - t) * x0 + t * x1

    def target_velocity(self, x0: Tensor, x1: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        return x1 - x0

    def velocity_from_x1(self, x_t: Tensor, x1_hat: Tensor, t: Tensor) -> Tensor:
        return (x1_hat - x_t) / self.gap(t, x_t)

    def loss(self, x1_hat: Tensor, x1: Tensor) -> Tensor:
        return ((x1_hat - x1) ** 2).mean(-1)

    def cost_matrix(self, x0: Tensor, x1: Tensor) -> Tensor:
        return _sq_euclid_cost(x0, x1)

    def check(self, x: Tensor, atol: float | None = None) -> tuple[bool, str]:
        if x.ndim != 2 or x.shape[-1] != self.n_params:
            return False, f"expected shape (B, {self.n_params}), got {tuple(x.shape)}"
        if not bool(torch.isfinite(x).all()):
            return False, "contains NaN or Inf"
        return True, ""


class NormalizedGeometry(EuclideanGeometry):
    """Canonical weights on the product of spheres, but a Euclidean flow (reference 6.2.2).

    Data and prior lie on the product manifold (each hidden neuron's incoming weights on the
    unit sphere, the last layer on the sphere of radius ``sqrt(C)`` if ``last_layer_sphere``);
    paths, velocities, loss and steps are those of :class:`EuclideanGeometry`. :meth:`projx`
    projects onto the product manifold (apply it to final samples) and :meth:`check` tests
    membership. For likelihoods the flow is treated through its tangential part on the product
    manifold (:meth:`as_riemannian`).
    """

    name = "normalized"
    needs_canonical = True

    def projx(self, x: Tensor) -> Tensor:
        return self.layout.projx(x)

    def check(self, x: Tensor, atol: float | None = None) -> tuple[bool, str]:
        return self.layout.check(x, atol)

    def as_riemannian(self) -> Geometry:
        from .product import GeometricGeometry

        return GeometricGeometry(self.spec, self.last_layer_sphere, self.min_gap)
