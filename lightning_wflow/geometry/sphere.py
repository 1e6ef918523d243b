"""Math kernels of the sphere ``S^{n-1}_r = {x in R^n : ||x|| = r}`` (plain functions).

Every function works on the last dimension and broadcasts over all leading ones, so a layer's
neurons are handled as one ``(..., n_out, fan_in)`` batch of spheres. The radius is handled by
scaling: a map on the sphere of radius ``r`` is ``r`` times the map on the unit sphere applied
to ``x / r``.

Numerical safety: the angle between two points is always computed as an ``atan2`` of a sine
and a cosine part (never ``acos`` of an inner product), and the ratios ``sin(a)/a`` and
``atan2(s, c)/s`` switch to Taylor series below a dtype-dependent threshold
(:func:`small_angle`), with the "double where" pattern so that gradients, ``jvp`` and
``jacrev`` stay finite at zero distance as well.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "small_angle",
    "default_atol",
    "inner",
    "projx",
    "proju",
    "expmap",
    "logmap",
    "dlogmap",
    "dist",
    "sq_dist",
    "random_uniform",
    "log_area",
]

_SMALL_ANGLE = {
    torch.float16: 3e-2,
    torch.bfloat16: 3e-2,
    torch.float32: 1e-3,
    torch.float64: 1e-5,
}
_ATOL = {torch.float16: 1e-2, torch.bfloat16: 1e-2, torch.float32: 1e-4, torch.float64: 1e-10}


def small_angle(dtype: torch.dtype) -> float:
    """Angle below which ``sin(a)/a`` and ``atan(a)/a`` use their Taylor series.

    The series are kept to the ``a^4`` term, so the truncation error ``~a^6`` is far
    below the dtype's resolution at the threshold.
    """
    return _SMALL_ANGLE.get(dtype, 1e-3)


def default_atol(dtype: torch.dtype) -> float:
    """Tolerance on ``| ||x|| - r |`` used by manifold checks, keyed by dtype."""
    return _ATOL.get(dtype, 1e-4)


def inner(x: Tensor, y: Tensor) -> Tensor:
    """``<x, y>`` over the last dimension, keepdim: ``(..., n) -> (..., 1)``."""
    return (x * y).sum(-1, keepdim=True)


def _tiny(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).tiny


def _unit(x: Tensor) -> Tensor:
    return x / inner(x, x).clamp_min(_tiny(x.dtype)).sqrt()


def projx(x: Tensor, radius: float = 1.0) -> Tensor:
    """Closest point on the sphere: ``r x / ||x||`` (``(..., n) -> (..., n)``)."""
    return radius * _unit(x)


def proju(x: Tensor, u: Tensor) -> Tensor:
    """Orthogonal projection onto the tangent space at ``x``: ``u - <x,u> x / ||x||^2``.

    Written with ``||x||^2`` rather than ``r^2`` so that it is a smooth field on a
    neighbourhood of the sphere (needed for divergences computed in ambient coordinates).
    """
    return u - inner(x, u) / inner(x, x).clamp_min(_tiny(x.dtype)) * x


def _sinc(n2: Tensor) -> Tensor:
    """``sin(n)/n`` as a function of ``n^2``, smooth at 0."""
    thr = small_angle(n2.dtype)
    small = n2 < thr * thr
    n_safe = torch.where(small, torch.ones_like(n2), n2).sqrt()
    series = 1.0 - n2 / 6.0 + n2 * n2 / 120.0
    return torch.where(small, series, torch.sin(n_safe) / n_safe)


def _cos(n2: Tensor) -> Tensor:
    """``cos(n)`` as a function of ``n^2``, smooth at 0."""
    thr = small_angle(n2.dtype)
    small = n2 < thr * thr
    n_safe = torch.where(small, torch.ones_like(n2), n2).sqrt()
    series = 1.0 - n2 / 2.0 + n2 * n2 / 24.0
    return torch.where(small, series, torch.cos(n_safe))


def _atan_ratio(s2: Tensor, c: Tensor) -> Tensor:
    """``atan2(s, c) / s`` as a function of ``s^2`` and ``c``, smooth at ``s = 0`` for ``c > 0``.

    For ``c <= 0`` and ``s -> 0`` (antipodal points) the ratio grows like ``pi / s`` and stays
    finite at ``s = 0`` (where :func:`logmap` uses its own fallback direction).
    """
    thr = small_angle(s2.dtype)
    small = (s2 < (thr * thr) * c * c) & (c > 0)
    c_safe = torch.where(small, c, torch.ones_like(c))
    z2 = s2 / (c_safe * c_safe)
    series = (1.0 - z2 / 3.0 + z2 * z2 / 5.0) / c_safe
    s_safe = torch.where(small, torch.ones_like(s2), s2.clamp_min(_tiny(s2.dtype))).sqrt()
    return torch.where(small, series, torch.atan2(s_safe, c) / s_safe)


def expmap(x: Tensor, u: Tensor, radius: float = 1.0) -> Tensor:
    """Exponential map ``exp_x(u) = cos(||u||/r) x + r sin(||u||/r) u / ||u||``.

    Args:
        x: ``(..., n)`` points on the sphere of radius ``r``.
        u: ``(..., n)`` tangent vectors at ``x``.
        radius: ``r``.

    Returns:
        ``(..., n)`` points, re-projected onto the sphere to stop round-off drift.
    """
    xs, us = x / radius, u / radius
    n2 = inner(us, us)
    y = _cos(n2) * xs + _sinc(n2) * us
    return projx(y, radius)


def logmap(x: Tensor, y: Tensor, radius: float = 1.0) -> Tensor:
    """Logarithm map ``log_x(y) = theta * w / ||w||`` with ``w = y - <x, y> x / r^2``.

    ``theta = r * atan2(||w|| / r, <x, y> / r^2)`` is the geodesic distance; this form is
    accurate both for nearly equal points (``theta -> 0``, series branch) and for nearly
    antipodal ones (``theta -> pi r``, where ``acos`` would lose all precision). For an exactly
    antipodal pair, where every direction is a shortest geodesic, it returns a fixed tangent
    direction of length ``pi r``.

    Args:
        x: ``(..., n)`` base points on the sphere.
        y: ``(..., n)`` target points on the sphere.
        radius: ``r``.

    Returns:
        ``(..., n)`` tangent vectors at ``x`` with ``exp_x(log_x(y)) = y``.
    """
    xs, ys = _unit(x), _unit(y)
    c = inner(xs, ys)
    w = ys - c * xs
    w = w - inner(xs, w) * xs  # second Gram-Schmidt pass: no normal round-off left near y = -x
    s2 = inner(w, w)
    # exactly antipodal (no direction left): every tangent direction is a geodesic; take the
    # projection of the basis vector where |x| is smallest, so that exp_x(log_x(-x)) = -x.
    k = xs.abs().argmin(-1, keepdim=True)
    xk = xs.gather(-1, k)  # e_k - x_k x has squared norm 1 - x_k^2 >= 1 - 1/n
    fallback = torch.zeros_like(xs).scatter(-1, k, 1.0) - xk * xs
    fallback = fallback * (math.pi / (1.0 - xk * xk).clamp_min(_tiny(xs.dtype)).sqrt())
    degenerate = (s2 <= _tiny(s2.dtype)) & (c < 0)
    return radius * torch.where(degenerate, fallback, _atan_ratio(s2, c) * w)


def dlogmap(x: Tensor, y: Tensor, v: Tensor, radius: float = 1.0) -> Tensor:
    """Differential of ``log_x`` at ``y`` applied to a tangent vector ``v`` at ``y``: ``d(log_x)_y[v]``.

    With unit-scaled ``c = <x, y>``, ``w = y - c x``, ``s^2 = ||w||^2`` and
    ``log_x(y) = r f(s^2, c) w``, ``f = atan2(s, c) / s``:
    ``d log = r (f_{s^2} ds^2 + f_c dc) w + r f dw`` with ``dc = <x, v>/r``, ``dw = (v - dc x)/r``,
    ``ds^2 = 2 <w, v>/r``, ``f_c = -1`` and ``f_{s^2} = (c - f) / (2 s^2)`` (series
    ``-1/3 - s^2/10`` at small ``s``), using ``s^2 + c^2 = 1``. Closed form, so it is cheap
    enough to call at every Runge-Kutta stage.

    Args:
        x: ``(..., n)`` base points.
        y: ``(..., n)`` points where ``v`` is tangent.
        v: ``(..., n)`` tangent vectors at ``y``.
        radius: ``r``.

    Returns:
        ``(..., n)`` tangent vectors at ``x``.
    """
    xs, ys, vs = _unit(x), _unit(y), v / radius
    c = inner(xs, ys)
    w = ys - c * xs
    s2 = inner(w, w)
    f = _atan_ratio(s2, c)
    thr = small_angle(s2.dtype)
    small = (s2 < thr * thr) & (c > 0)
    s2_safe = torch.where(small, torch.ones_like(s2), s2.clamp_min(_tiny(s2.dtype)))
    f_s2 = torch.where(small, -1.0 / 3.0 - s2 / 10.0, (c - f) / (2.0 * s2_safe))
    dc = inner(xs, vs)
    ds2 = 2.0 * inner(w, vs)
    dw = vs - dc * xs
    return radius * ((f_s2 * ds2 - dc) * w + f * dw)


def dist(x: Tensor, y: Tensor, radius: float = 1.0) -> Tensor:
    """Geodesic distance ``r * 2 atan2(||x - y||, ||x + y||)`` on unit-scaled points: ``(..., n) -> (...)``."""
    xs, ys = _unit(x), _unit(y)
    return radius * 2.0 * torch.atan2((xs - ys).norm(dim=-1), (xs + ys).norm(dim=-1))


def sq_dist(x: Tensor, y: Tensor, radius: float = 1.0) -> Tensor:
    """Squared geodesic distance ``d(x, y)^2`` with a finite gradient at ``x = y``.

    Uses ``d = 2 r atan2(a, b)`` with ``a = ||x - y||``, ``b = ||x + y||`` (unit-scaled),
    written as ``a^2 * (2 atan(a/b) / a)^2`` with a series for small ``a``.

    Returns:
        ``(...)`` squared distances.
    """
    xs, ys = _unit(x), _unit(y)
    a2 = ((xs - ys) ** 2).sum(-1)
    b2 = ((xs + ys) ** 2).sum(-1).clamp_min(_tiny(x.dtype))
    b = b2.sqrt()
    ratio = _atan_ratio(a2, b)  # atan2(a, b) / a
    return (radius * radius) * 4.0 * a2 * ratio * ratio


def random_uniform(
    shape: tuple[int, ...],
    radius: float = 1.0,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniform points on the sphere: normalised standard Gaussians, ``shape = (..., n)``."""
    g = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    return projx(g, radius)


def log_area(n: int, radius: float = 1.0) -> float:
    """``log |S^{n-1}_r| = log(2 pi^{n/2} / Gamma(n/2)) + (n - 1) log r`` (ambient dimension ``n``)."""
    if n < 1:
        raise ValueError(f"ambient dimension n must be >= 1, got {n}")
    return math.log(2.0) + 0.5 * n * math.log(math.pi) - math.lgamma(0.5 * n) + (n - 1) * math.log(radius)
