"""Log-likelihoods of a flow by the instantaneous change of variables (reference Section 3.5).

``log p1(x1) = log p0(x0) - int_0^1 div v_t(x_t) dt``, with ``x_t`` solved backward from ``x1``
at ``t = 1`` to ``x0`` at ``t = 0`` together with the divergence integral.

Divergence on the product manifold. For a tangent field ``f`` on the embedded sphere ``S`` with
any smooth ambient extension, the Riemannian divergence is
``div_S f = sum_i <e_i, D f e_i> = tr(P J P) = tr(J P)`` over an orthonormal tangent basis ``e_i``
(``P = I - n n^T`` the tangent projector, ``J`` the ambient Jacobian): the tangential derivatives
do not depend on the extension, and the ambient trace ``tr J`` differs from it by the normal term
``n^T J n``. The velocity network's output is not tangent, so the field used is
``f(x) = proju(x, v(x))``, differentiated in ambient coordinates through ``proju`` (extended off
the sphere by ``u - <x, u> x / ||x||^2``). (With this extension ``n^T J n = 0``, as ``f`` is
tangent and ``P`` is constant along rays, so ``tr J`` happens to agree; the ambient trace of the
raw, non-tangent network output does not.) On the product manifold ``P`` is block-diagonal
(identity on the Euclidean parts), so ``div f = tr(J P) = sum_j <J^T e_j, P e_j>`` is computed
from vector-Jacobian products of the basis vectors (exact) or ``E_z[z^T J z]`` with probes
``z = P xi`` (Hutchinson: ``E[z z^T] = P`` for Gaussian or Rademacher ``xi``).
Densities are with respect to the Riemannian volume; the dimension is the manifold's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..geometry import Geometry
from .priors import Prior, SpherePrior
from .solvers import rk_step

__all__ = ["ESTIMATORS", "PROBES", "LikelihoodResult", "divergence", "log_likelihood"]

VelocityFn = Callable[[Tensor, Tensor], Tensor]
ESTIMATORS = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")
_LIKELIHOOD_SOLVERS = ("euler", "midpoint", "rk4")


@dataclass
class LikelihoodResult:
    """Log-likelihood of a batch under a flow.

    Attributes:
        log_prob: ``(B,)`` ``log p1(x1)`` in nats.
        log_prob_per_dim: ``(B,)`` ``log_prob / dim`` (nats per dimension).
        log_prob_base: ``(B,)`` ``log p0(x0)``.
        divergence_integral: ``(B,)`` ``int_0^1 div v_t(x_t) dt``.
        x0: ``(B, P)`` the backward-integrated source points.
        dim: dimension used for ``log_prob_per_dim`` (``P``, or ``P - #spheres`` on the product manifold).
    """

    log_prob: Tensor
    log_prob_per_dim: Tensor
    log_prob_base: Tensor
    divergence_integral: Tensor
    x0: Tensor
    dim: int

    @property
    def per_dim(self) -> Tensor:
        """Alias of :attr:`log_prob_per_dim`."""
        return self.log_prob_per_dim


def _probes(
    shape: tuple[int, ...], probe: str, like: Tensor, generator: torch.Generator | None
) -> Tensor:
    if probe == "gaussian":
        return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)
    r = torch.randint(0, 2, shape, generator=generator, device=like.device)
    return (2 * r - 1).to(like.dtype)


def divergence(
    velocity_fn: VelocityFn,
    x: Tensor,
    t: Tensor,
    geometry: Geometry,
    estimator: str = "exact",
    n_probes: int = 1,
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    chunk_size: int = 128,
) -> tuple[Tensor, Tensor]:
    """Velocity and its divergence in the geometry's tangent spaces.

    Samples are assumed independent (the network mixes nothing across the batch), so one
    vector-Jacobian product with the same basis vector in every row gives every sample's
    Jacobian row at once.

    Args:
        velocity_fn: ``v(x (B, P), t (B,)) -> (B, P)``.
        x: ``(B, P)`` points.
        t: ``(B,)`` times.
        geometry: Euclidean (trace of ``J``) or Riemannian (trace of ``J P``).
        estimator: ``"exact"`` (``P`` VJPs, vmapped in chunks) or ``"hutchinson"``.
        n_probes: Hutchinson probes per call.
        probe: ``"rademacher"`` or ``"gaussian"``.
        generator: random generator for the probes.
        chunk_size: basis vectors per vmapped chunk (exact estimator).

    Returns:
        ``(v (B, P), div (B,))`` with ``v = proju(x, velocity_fn(x, t))``, both detached.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {list(ESTIMATORS)}, got {estimator!r}")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {list(PROBES)}, got {probe!r}")
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")

    def field(y: Tensor) -> Tensor:
        return geometry.proju(y, velocity_fn(y, t))

    batch, p = x.shape
    x = x.detach()
    with torch.enable_grad():
        v, vjp_fn = torch.func.vjp(field, x)
        batched_vjp = torch.func.vmap(lambda e: vjp_fn(e)[0])
        if estimator == "exact":
            div = torch.zeros(batch, dtype=x.dtype, device=x.device)
            eye = torch.eye(p, dtype=x.dtype, device=x.device)
            for j0 in range(0, p, chunk_size):
                e = eye[j0 : j0 + chunk_size, None, :].expand(-1, batch, p)
                rows = batched_vjp(e)  # rows[j, b] = e_j^T J_b
                proj = geometry.proju(x.expand(e.shape[0], batch, p), e)  # P e_j
                div = div + (rows * proj).sum(dim=(0, 2))
        else:
            z = _probes((n_probes, batch, p), probe, x, generator)
            z = geometry.proju(x.expand(n_probes, batch, p), z)
            div = (batched_vjp(z) * z).sum(-1).mean(0)
    return v.detach(), div.detach()


def log_likelihood(
    velocity_fn: VelocityFn,
    x1: Tensor,
    geometry: Geometry,
    prior: Prior,
    steps: int = 100,
    solver: str = "euler",
    estimator: str = "exact",
    n_probes: int = 1,
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    chunk_size: int = 128,
) -> LikelihoodResult:
    """``log p1(x1) = log p0(x0) - int_0^1 div v_t(x_t) dt`` by a backward ODE solve.

    The state and the divergence integral are integrated together from ``t = 1`` to ``t = 0``
    on a uniform grid with the chosen solver (Riemannian steps on the product manifold). The
    Normalized geometry is handled through :meth:`Geometry.as_riemannian`: its (ambient) field
    is replaced by its tangential part on the product manifold, the flow that keeps samples on
    the manifold, so its likelihood is a density on the same manifold as the Geometric one.

    Args:
        velocity_fn: ``v(x (B, P), t (B,)) -> (B, P)`` (e.g. :func:`x1_prediction_velocity`).
        x1: ``(B, P)`` points to evaluate.
        geometry: the flow's geometry.
        prior: ``p0``: a :class:`GaussianPrior` in Euclidean space, a :class:`SpherePrior` on the
            product manifold.
        steps: number of uniform steps (>= 1).
        solver: ``"euler"``, ``"midpoint"`` or ``"rk4"``.
        estimator: ``"exact"`` or ``"hutchinson"``.
        n_probes: Hutchinson probes per velocity evaluation.
        probe: ``"rademacher"`` or ``"gaussian"``.
        generator: random generator for the probes.
        chunk_size: basis vectors per vmapped chunk (exact estimator).

    Raises:
        ValueError: bad arguments, or a prior that does not match the geometry.
        FloatingPointError: NaN/Inf in the state or the divergence (names the step and time).
    """
    if solver not in _LIKELIHOOD_SOLVERS:
        raise ValueError(f"solver must be one of {list(_LIKELIHOOD_SOLVERS)}, got {solver!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {list(ESTIMATORS)}, got {estimator!r}")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {list(PROBES)}, got {probe!r}")
    geo = geometry.as_riemannian()
    if geo.riemannian and not isinstance(prior, SpherePrior):
        raise ValueError(
            f"the {geometry.name} geometry needs a SpherePrior (density on the product manifold), "
            f"got {type(prior).__name__}"
        )
    if not geo.riemannian and isinstance(prior, SpherePrior):
        raise ValueError("a SpherePrior has no density in the Euclidean geometry; use GaussianPrior")
    if isinstance(prior, SpherePrior) and prior.last_layer_sphere != geo.last_layer_sphere:
        raise ValueError(
            f"prior.last_layer_sphere ({prior.last_layer_sphere}) does not match the geometry's "
            f"({geo.last_layer_sphere})"
        )
    batch = x1.shape[0]

    def f(x: Tensor, t: float) -> tuple[Tensor, Tensor]:
        tt = torch.full((batch,), t, dtype=x.dtype, device=x.device)
        return divergence(
            velocity_fn, x, tt, geo, estimator, n_probes, probe, generator, chunk_size
        )

    times = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()
    x = x1.detach()
    integral = torch.zeros(batch, dtype=x1.dtype, device=x1.device)
    for i in range(steps):
        t, t_next = times[i], times[i + 1]
        h = t_next - t
        x, div = rk_step(f, x, t, h, geo, solver)
        integral = integral - h * div  # h < 0: adds int_{t_next}^{t} div dt
        for what, val in (("state", x), ("divergence", integral)):
            if not bool(torch.isfinite(val).all()):
                raise FloatingPointError(
                    f"non-finite {what} (NaN or Inf) in the likelihood at step {i} of {steps}, "
                    f"t = {t:.6g} -> {t_next:.6g}"
                )
    x0 = geo.projx(x)
    base = prior.log_prob(x0)
    log_prob = base - integral
    return LikelihoodResult(log_prob, log_prob / geo.dim, base, integral, x0, geo.dim)
