"""ODE solvers for flows on the flat layout: Euler, midpoint, RK4, Euclidean and Riemannian.

All three solvers are explicit Runge-Kutta schemes written once against the geometry's maps:
stage points ``x_i = step(x, sum_j a_ij k_j, h)`` and the update
``x' = step(x, sum_i b_i k_i, h)``, where ``step(x, v, h) = exp_x(proju(x, v) h)``. In a flat
geometry (``proju = id``, ``exp_x(u) = x + u``) this is the textbook scheme. On the spheres the
scheme is classical Runge-Kutta in normal coordinates centred at the step's base point ``x``
(in the spirit of Runge-Kutta-Munthe-Kaas): the stage velocity ``v(x_i)``, tangent at ``x_i``, is
carried to ``T_x`` by the differential of ``log_x`` (``geometry.pullback``, a closed form on the
sphere) rather than by parallel transport or projection, so the
ODE solved is the exact chart pullback of the flow and every solver keeps its order (Euler 1,
midpoint 2, RK4 4). A plain projection onto ``T_x`` would be exact only to first order and would
reduce RK4 to second order on a curved sphere.

Stochastic sampling (reference Section 6.5, Karras et al.): at each step starting inside the
noise window, before the update, ``x <- exp_x(s xi)`` with ``xi`` standard noise projected to
the tangent space and ``s = epsilon`` (``scaling="step"``, the reference's "noise before each
Euler update": the added variance grows with the number of steps) or ``s = epsilon sqrt(h)``
(``scaling="sqrt_dt"``, Brownian increments: the added variance is ``epsilon^2`` times the
window's length whatever the number of steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..geometry import Geometry
from .guidance import LossGuidance, check_window

__all__ = [
    "SOLVERS",
    "NoiseConfig",
    "Trajectory",
    "make_time_grid",
    "rk_step",
    "integrate",
    "integrate_trajectory",
]

VelocityFn = Callable[[Tensor, Tensor], Tensor]

#: Butcher tableaus ``(a, b, c)`` of the explicit solvers.
_TABLEAUS: dict[str, tuple[tuple[tuple[float, ...], ...], tuple[float, ...], tuple[float, ...]]] = {
    "euler": ((), (1.0,), (0.0,)),
    "midpoint": (((0.5,),), (0.0, 1.0), (0.0, 0.5)),
    "rk4": (((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6), (0.0, 0.5, 0.5, 1.0)),
}
#: Solver names.
SOLVERS = tuple(_TABLEAUS)


#: How the noise scale relates to the step size (see the module docstring).
NOISE_SCALINGS = ("step", "sqrt_dt")


@dataclass(frozen=True)
class NoiseConfig:
    """Stochastic sampling: noise scale ``epsilon`` inside ``[t_start, t_end)``; 0 = deterministic."""

    epsilon: float = 0.0
    t_start: float = 0.0
    t_end: float = 1.0
    scaling: str = "step"

    def __post_init__(self) -> None:
        if not self.epsilon >= 0:
            raise ValueError(f"NoiseConfig.epsilon must be >= 0, got {self.epsilon}")
        if self.scaling not in NOISE_SCALINGS:
            raise ValueError(f"NoiseConfig.scaling must be one of {list(NOISE_SCALINGS)}, got {self.scaling!r}")
        check_window(self.t_start, self.t_end, "NoiseConfig")

    def std(self, h: float) -> float:
        """Noise scale of a step of length ``h``."""
        return self.epsilon * (math.sqrt(h) if self.scaling == "sqrt_dt" else 1.0)

    def active(self, t: float) -> bool:
        """Whether a step starting at ``t`` gets noise."""
        return self.epsilon > 0 and self.t_start <= t < self.t_end


@dataclass
class Trajectory:
    """A solved trajectory.

    Attributes:
        x: ``(B, P)`` final state (after the final projection).
        ts: ``(S + 1,)`` time grid.
        xs: ``(S + 1, B, P)`` states on the grid (``xs[-1]`` before the final projection), or
            None when not recorded.
    """

    x: Tensor
    ts: Tensor
    xs: Tensor | None = None


def make_time_grid(
    steps: int,
    time_grid: Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``linspace(0, 1, steps + 1)``, or a validated explicit increasing grid inside ``[0, 1]``."""
    if time_grid is None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64).to(device=device, dtype=dtype)
    grid = torch.as_tensor(time_grid, dtype=torch.float64)
    if grid.ndim != 1 or grid.numel() < 2:
        raise ValueError(f"time_grid must be a 1-D tensor with at least 2 times, got shape {tuple(grid.shape)}")
    if not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError("time_grid must be strictly increasing")
    if float(grid[0]) < 0.0 or float(grid[-1]) > 1.0:
        raise ValueError(f"time_grid must lie in [0, 1], got [{float(grid[0])}, {float(grid[-1])}]")
    return grid.to(device=device, dtype=dtype)


def rk_step(
    f: Callable[[Tensor, float], tuple[Tensor, Tensor | None]],
    x: Tensor,
    t: float,
    h: float,
    geometry: Geometry,
    solver: str,
) -> tuple[Tensor, Tensor | None]:
    """One explicit Runge-Kutta step on the geometry.

    Args:
        f: ``f(x, t) -> (k, aux)``, ``k`` a velocity at ``x`` and ``aux`` an optional extra
            Euclidean quantity integrated along (e.g. a divergence), or None.
        x: ``(B, P)`` state.
        t: time of the step start.
        h: step size (negative to integrate backward).
        geometry: the geometry (``step`` = ``exp_x(proju(x, v) h)``).
        solver: ``"euler"``, ``"midpoint"`` or ``"rk4"``.

    Returns:
        ``(x_next, sum_i b_i aux_i)`` (the second item None when ``f`` gives no aux).
    """
    if solver not in _TABLEAUS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
    a, b, c = _TABLEAUS[solver]
    ks: list[Tensor] = []
    auxs: list[Tensor | None] = []
    for i, ci in enumerate(c):
        if i == 0:
            xi = x
        else:
            xi = geometry.step(x, sum(aij * kj for aij, kj in zip(a[i - 1], ks) if aij != 0.0), h)
        k, aux = f(xi, t + ci * h)
        if i > 0:
            k = geometry.pullback(x, xi, k)
        ks.append(k)
        auxs.append(aux)
    x_next = geometry.step(x, sum(bi * ki for bi, ki in zip(b, ks) if bi != 0.0), h)
    if auxs[0] is None:
        return x_next, None
    return x_next, sum(bi * ai for bi, ai in zip(b, auxs) if bi != 0.0)


def _check_finite(x: Tensor, what: str, step: int, n_steps: int, t: float, t_next: float) -> None:
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError(
            f"non-finite {what} (NaN or Inf) at step {step} of {n_steps}, t = {t:.6g} -> {t_next:.6g}"
        )


def integrate_trajectory(
    velocity_fn: VelocityFn,
    x0: Tensor,
    geometry: Geometry,
    solver: str = "euler",
    steps: int = 100,
    time_grid: Tensor | None = None,
    noise: NoiseConfig | None = None,
    guidance: LossGuidance | None = None,
    generator: torch.Generator | None = None,
    project_final: bool = True,
    record: bool = False,
) -> Trajectory:
    """Solve ``dx/dt = v(x, t)`` from the grid's first time to its last (see :func:`integrate`).

    Args:
        record: keep every state on the grid in ``Trajectory.xs``.
    """
    if solver not in _TABLEAUS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
    noise = NoiseConfig() if noise is None else noise
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (B, P), got {tuple(x0.shape)}")
    grid = make_time_grid(steps, time_grid, device=x0.device, dtype=torch.float64)
    times = grid.tolist()
    n = len(times) - 1
    batch = x0.shape[0]

    def f(x: Tensor, t: float) -> tuple[Tensor, None]:
        tt = torch.full((batch,), t, dtype=x.dtype, device=x.device)
        v = velocity_fn(x, tt)
        if guidance is not None and guidance.active(t):
            v = v + guidance(x, t, geometry)
        return geometry.proju(x, v), None

    x = x0
    _check_finite(x, "initial state", 0, n, times[0], times[0])
    xs = [x] if record else None
    for i in range(n):
        t, t_next = times[i], times[i + 1]
        h = t_next - t
        if noise.active(t):
            xi = geometry.random_tangent(x, generator)
            x = geometry.expmap(x, noise.std(h) * xi)
        x, _ = rk_step(f, x, t, h, geometry, solver)
        _check_finite(x, "state", i, n, t, t_next)
        if xs is not None:
            xs.append(x)
    final = geometry.projx(x) if project_final else x
    return Trajectory(final, grid.to(x0.dtype), torch.stack(xs) if xs is not None else None)


def integrate(
    velocity_fn: VelocityFn,
    x0: Tensor,
    geometry: Geometry,
    solver: str = "euler",
    steps: int = 100,
    time_grid: Tensor | None = None,
    noise: NoiseConfig | None = None,
    guidance: LossGuidance | None = None,
    generator: torch.Generator | None = None,
    project_final: bool = True,
) -> Tensor:
    """Sample by solving ``dx/dt = v(x, t)`` from ``t = 0`` to ``t = 1``.

    Each step (``h = t_{i+1} - t_i``): optional noise ``x <- exp_x(noise.std(h) xi)`` if ``t_i``
    is in the noise window, then one Runge-Kutta step of ``v + guidance`` with velocities
    projected to the tangent space and steps through ``expmap`` (``x + v h`` in flat geometries).
    The gradient mode of the caller is kept (wrap in ``torch.no_grad()`` for sampling).

    Args:
        velocity_fn: ``v(x (B, P), t (B,)) -> (B, P)``.
        x0: ``(B, P)`` prior samples.
        geometry: the geometry (Euclidean steps, or Riemannian for the Geometric flow).
        solver: ``"euler"``, ``"midpoint"`` or ``"rk4"``.
        steps: number of uniform steps (>= 1), used when ``time_grid`` is None.
        time_grid: optional strictly increasing 1-D tensor of times in ``[0, 1]``.
        noise: stochastic sampling config; None or ``epsilon = 0`` is deterministic.
        guidance: optional :class:`LossGuidance`.
        generator: random generator for the sampling noise.
        project_final: apply ``geometry.projx`` to the result (projects Normalized samples onto
            the product of spheres; identity for Euclidean).

    Returns:
        ``(B, P)`` samples.

    Raises:
        FloatingPointError: a state became NaN/Inf (the message names the step and the time).
    """
    return integrate_trajectory(
        velocity_fn, x0, geometry, solver, steps, time_grid, noise, guidance, generator, project_final
    ).x
