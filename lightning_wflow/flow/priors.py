"""Source distributions ``p0`` over flat parameters ``(n, P)`` with matching ``log_prob``.

Each prior keeps its parameters in one place (the reference code sampled with standard
deviation 0.1 but evaluated likelihoods with variance 0.1; here ``sample`` and ``log_prob``
read the same ``std``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ..geometry import sphere
from ..geometry.layout import ProductLayout
from ..weights import MLPSpec

__all__ = ["Prior", "GaussianPrior", "SpherePrior"]

_LOG_2PI = math.log(2.0 * math.pi)


class Prior(ABC):
    """A distribution over flat parameters with ``sample`` and ``log_prob``."""

    spec: MLPSpec

    @abstractmethod
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """``(n, P)`` samples."""

    @abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        """``(n, P) -> (n,)`` log-density."""


class GaussianPrior(Prior):
    """Isotropic Gaussian ``N(mean, std^2 I)`` on ``R^P``.

    ``log p(x) = -1/2 sum_j ((x_j - mean)/std)^2 - P log std - P/2 log(2 pi)``.

    Args:
        spec: the architecture (fixes ``P``).
        mean: mean of every coordinate.
        std: standard deviation of every coordinate (> 0), not the variance.
    """

    def __init__(self, spec: MLPSpec, mean: float = 0.0, std: float = 1.0) -> None:
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.spec, self.mean, self.std = spec, float(mean), float(std)

    def __repr__(self) -> str:
        return f"GaussianPrior(P={self.spec.n_params}, mean={self.mean}, std={self.std})"

    def sample(self, n, generator=None, device=None, dtype=torch.float32) -> Tensor:
        z = torch.randn(n, self.spec.n_params, generator=generator, device=device, dtype=dtype)
        return self.mean + self.std * z

    def log_prob(self, x: Tensor) -> Tensor:
        p = x.shape[-1]
        z = (x - self.mean) / self.std
        return -0.5 * (z * z).sum(-1) - p * (math.log(self.std) + 0.5 * _LOG_2PI)


class SpherePrior(Prior):
    """Prior on the product manifold: uniform on every sphere, Gaussian on the Euclidean parts.

    This is an isotropic Gaussian prior pushed through canonicalization on the sphere parts
    (the direction of an isotropic Gaussian vector is uniform on its sphere, and so is the
    whole last layer scaled to radius ``sqrt(C)``), with the Euclidean part (biases, and the
    last layer when it is not a sphere) modelled directly as a Gaussian ``N(0, bias_std^2)``
    (canonicalized biases are ratios ``b / ||w||``, approximately Gaussian).

    ``log p(x) = -sum_spheres log |S^{n-1}_r| + sum_euclid log N(x_j; 0, std_j^2)``, a density
    with respect to the Riemannian volume of the product manifold (intrinsic dimension
    ``P - #spheres``).

    Args:
        spec: the architecture.
        bias_std: standard deviation of the biases.
        last_layer_sphere: whether the last weight matrix is one sphere of radius ``sqrt(C)``.
        weight_std: standard deviation of the last weight matrix when it is Euclidean
            (``last_layer_sphere=False``); defaults to ``bias_std``.
    """

    def __init__(
        self,
        spec: MLPSpec,
        bias_std: float = 1.0,
        last_layer_sphere: bool = True,
        weight_std: float | None = None,
    ) -> None:
        if not bias_std > 0:
            raise ValueError(f"bias_std must be > 0, got {bias_std}")
        if weight_std is not None and not weight_std > 0:
            raise ValueError(f"weight_std must be > 0 or None, got {weight_std}")
        self.spec = spec
        self.bias_std = float(bias_std)
        self.weight_std = self.bias_std if weight_std is None else float(weight_std)
        self.last_layer_sphere = bool(last_layer_sphere)
        self.layout = ProductLayout(spec, last_layer_sphere)
        std = torch.full((spec.n_params,), self.bias_std, dtype=torch.float64)
        if not self.last_layer_sphere:
            std[spec.slices[-1].weight] = self.weight_std
        self._std = std  # per-coordinate std of the Euclidean parts (sphere entries unused)
        self._euclid = torch.cat(
            [torch.arange(s.start, s.stop) for s in self.layout.segments if s.block is None]
        )
        self._log_area = self.layout.log_area()

    def __repr__(self) -> str:
        return (
            f"SpherePrior(layer_sizes={list(self.spec.layer_sizes)}, bias_std={self.bias_std}, "
            f"last_layer_sphere={self.last_layer_sphere}, weight_std={self.weight_std})"
        )

    def sample(self, n, generator=None, device=None, dtype=torch.float32) -> Tensor:
        z = torch.randn(n, self.spec.n_params, generator=generator, device=device, dtype=dtype)
        std = self._std.to(device=z.device, dtype=dtype)
        return self.layout.map(
            lambda b, p, s: sphere.projx(p, b.radius), lambda p, s: p * s, z, std.expand_as(z)
        )

    def log_prob(self, x: Tensor) -> Tensor:
        idx = self._euclid.to(x.device)
        e = x[..., idx]
        std = self._std.to(device=x.device, dtype=x.dtype)[idx]
        z = e / std
        gauss = -0.5 * (z * z).sum(-1) - torch.log(std).sum() - 0.5 * idx.numel() * _LOG_2PI
        return gauss - self._log_area
