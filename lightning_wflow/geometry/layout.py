"""Where the spheres are in the flat ``(B, P)`` layout of an :class:`~lightning_wflow.weights.MLPSpec`.

The product geometry of canonical weights (reference Section 6.2.2): for every hidden layer
``k`` (all Linear layers but the last) each row of ``W_k`` is a point on the unit sphere
``S^{in_k - 1}``; for classification (``last_layer_sphere=True``) the whole last weight matrix
is one point on the sphere of radius ``sqrt(C)`` (``C`` outputs); biases, and the last layer
when it is not a sphere, are Euclidean. The structure comes from the layer sizes alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..weights import MLPSpec
from . import sphere

__all__ = ["SphereBlock", "Segment", "ProductLayout"]


@dataclass(frozen=True)
class SphereBlock:
    """``n_spheres`` spheres of ambient dimension ``dim`` stored contiguously (row-major).

    Attributes:
        layer: Linear layer index ``k``.
        n_spheres: number of spheres (``out_k`` neurons, or 1 for the last layer).
        dim: ambient dimension ``n`` of each sphere ``S^{n-1}``.
        radius: sphere radius.
    """

    layer: int
    n_spheres: int
    dim: int
    radius: float


@dataclass(frozen=True)
class Segment:
    """A contiguous range ``[start, stop)`` of the flat vector; ``block`` is None if Euclidean."""

    start: int
    stop: int
    block: SphereBlock | None

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


class ProductLayout:
    """The flat vector as an ordered list of sphere blocks and Euclidean segments.

    Args:
        spec: the MLP architecture.
        last_layer_sphere: whether the last weight matrix is one sphere of radius ``sqrt(C)``.
    """

    def __init__(self, spec: MLPSpec, last_layer_sphere: bool = True) -> None:
        self.spec = spec
        self.last_layer_sphere = bool(last_layer_sphere)
        raw: list[Segment] = []
        last = spec.n_layers - 1
        for k, s in enumerate(spec.slices):
            if k < last:
                block = SphereBlock(k, s.n_out, s.n_in, 1.0)
            elif self.last_layer_sphere:
                block = SphereBlock(k, 1, s.n_out * s.n_in, math.sqrt(s.n_out))
            else:
                block = None
            raw.append(Segment(s.weight.start, s.weight.stop, block))
            raw.append(Segment(s.bias.start, s.bias.stop, None))
        merged: list[Segment] = []
        for seg in raw:  # merge neighbouring Euclidean segments
            if merged and seg.block is None and merged[-1].block is None:
                merged[-1] = Segment(merged[-1].start, seg.stop, None)
            else:
                merged.append(seg)
        self.segments: tuple[Segment, ...] = tuple(merged)

    # ------------------------------------------------------------- sizes
    @property
    def n_params(self) -> int:
        return self.spec.n_params

    @property
    def blocks(self) -> tuple[SphereBlock, ...]:
        return tuple(s.block for s in self.segments if s.block is not None)

    @property
    def n_spheres(self) -> int:
        return sum(b.n_spheres for b in self.blocks)

    @property
    def manifold_dim(self) -> int:
        """Intrinsic dimension of the product manifold: ``P - (number of spheres)``."""
        return self.n_params - self.n_spheres

    @property
    def n_euclidean(self) -> int:
        return sum(s.stop - s.start for s in self.segments if s.block is None)

    def log_area(self) -> float:
        """``sum over spheres of log |S^{n-1}_r|`` (log volume of the sphere part)."""
        return sum(b.n_spheres * sphere.log_area(b.dim, b.radius) for b in self.blocks)

    # ---------------------------------------------------------- mapping
    def split(self, x: Tensor) -> list[Tensor]:
        """``(..., P)`` -> per segment ``(..., k, n)`` (spheres) or ``(..., m)`` (Euclidean) views."""
        lead = x.shape[:-1]
        return [
            x[..., s.slice].reshape(*lead, s.block.n_spheres, s.block.dim)
            if s.block is not None
            else x[..., s.slice]
            for s in self.segments
        ]

    def map(
        self,
        sphere_fn: Callable[..., Tensor],
        euclid_fn: Callable[..., Tensor],
        *xs: Tensor,
    ) -> Tensor:
        """Apply ``sphere_fn(block, *parts)`` to each sphere block (parts ``(..., k, n)``) and
        ``euclid_fn(*parts)`` to each Euclidean segment, and reassemble the flat ``(..., P)``."""
        lead = xs[0].shape[:-1]
        parts = [self.split(x) for x in xs]
        out = []
        for i, seg in enumerate(self.segments):
            args = [p[i] for p in parts]
            if seg.block is None:
                out.append(euclid_fn(*args))
            else:
                out.append(sphere_fn(seg.block, *args).reshape(*lead, seg.stop - seg.start))
        return torch.cat(out, dim=-1)

    def reduce(
        self,
        sphere_fn: Callable[..., Tensor],
        euclid_fn: Callable[..., Tensor],
        *xs: Tensor,
    ) -> Tensor:
        """Sum over segments of ``sphere_fn(block, *parts) -> (..., k)`` (summed over ``k``) and
        ``euclid_fn(*parts) -> (...)``: a per-sample scalar ``(...)``."""
        parts = [self.split(x) for x in xs]
        total = None
        for i, seg in enumerate(self.segments):
            args = [p[i] for p in parts]
            val = euclid_fn(*args) if seg.block is None else sphere_fn(seg.block, *args).sum(-1)
            total = val if total is None else total + val
        return total

    # ------------------------------------------------------ manifold ops
    def projx(self, x: Tensor) -> Tensor:
        """Project every sphere block onto its sphere; Euclidean parts unchanged."""
        return self.map(lambda b, p: sphere.projx(p, b.radius), lambda p: p, x)

    def check(self, x: Tensor, atol: float | None = None) -> tuple[bool, str]:
        """Is ``x (B, P)`` finite and on the product manifold (norms within ``atol``)?"""
        if x.ndim != 2 or x.shape[-1] != self.n_params:
            return False, f"expected shape (B, {self.n_params}), got {tuple(x.shape)}"
        if not bool(torch.isfinite(x).all()):
            return False, "contains NaN or Inf"
        tol = sphere.default_atol(x.dtype) if atol is None else float(atol)
        for part, seg in zip(self.split(x), self.segments):
            if seg.block is None:
                continue
            b = seg.block
            err = (part.norm(dim=-1) - b.radius).abs()
            worst = float(err.max()) if err.numel() else 0.0
            if worst > tol:
                return False, (
                    f"layer {b.layer}: sphere norms deviate from radius {b.radius:.6g} by up to "
                    f"{worst:.3g} > atol {tol:.3g}"
                )
        return True, ""
