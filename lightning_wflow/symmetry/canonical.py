"""Scale canonicalization of positively homogeneous MLPs (reference Section 4.4).

For ``sigma(a x) = a sigma(x)`` (``a > 0``; ReLU, LeakyReLU) each hidden neuron ``i`` of
layer ``k`` can be rescaled freely: ``(w_i, b_i) -> (w_i, b_i) / a`` with its outgoing column
``W_{k+1}[:, i] -> a W_{k+1}[:, i]`` computes the same function. Canonicalization picks
``a = ||w_i||`` (layer by layer, first to last, since the outgoing multiplication changes the
next layer's incoming norms), so every hidden neuron's incoming weight vector lies on the
unit sphere.

For classification (``last_layer_sphere=True``) the last layer ``(W_L, b_L)`` is then
multiplied by ``c = sqrt(C) / ||W_L||_F`` (``C`` outputs). The logits become ``c`` times the
original ones: every predicted class is kept, but the cross-entropy changes (``c`` acts
as an inverse softmax temperature). :func:`canonical_scale` returns ``c`` so that callers
can report both the original loss (logits divided by ``c``) and the canonical one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..weights import POSITIVELY_HOMOGENEOUS, MLPSpec

__all__ = [
    "CanonicalResult",
    "canonical_scale",
    "canonicalize",
    "check_scale_symmetry",
    "is_canonical",
]

#: What symmetry each non positively homogeneous activation has instead.
_OTHER_SYMMETRY = {
    "tanh": (
        "tanh is odd (tanh(-x) = -tanh(x)): its symmetry is a sign flip of a neuron (negating "
        "its incoming weights, bias and outgoing weights), not a positive rescaling"
    ),
    "sigmoid": (
        "sigmoid has no positive-scaling symmetry; its only one is sigmoid(-x) = 1 - sigmoid(x), "
        "an affine sign flip that also shifts the next layer's bias"
    ),
    "gelu": "GELU has no exact scaling (nor sign-flip) symmetry, only the permutation symmetry",
}

_ATOL = {torch.float16: 1e-2, torch.bfloat16: 1e-2, torch.float32: 1e-4, torch.float64: 1e-10}


def check_scale_symmetry(spec: MLPSpec) -> None:
    """Raise ``ValueError`` unless ``spec.activation`` is positively homogeneous."""
    if spec.activation not in POSITIVELY_HOMOGENEOUS:
        reason = _OTHER_SYMMETRY.get(spec.activation, "it has no positive scaling symmetry")
        raise ValueError(
            f"scale canonicalization needs a positively homogeneous activation "
            f"({sorted(POSITIVELY_HOMOGENEOUS)}), got activation={spec.activation!r}: {reason}"
        )


def _eps(dtype: torch.dtype) -> float:
    """Norm below which a neuron (or last layer) counts as zero and is left unscaled."""
    return float(torch.finfo(dtype).eps)


@dataclass
class CanonicalResult:
    """Canonical parameters and the factors that produced them.

    Attributes:
        flat: ``(B, P)`` canonical parameters.
        neuron_scales: one ``(B, h_k)`` tensor per hidden layer: the incoming norm each
            neuron was divided by (1 for zero-norm neurons, which are left as they are).
        last_layer_factor: ``(B,)`` factor ``c`` the last layer was multiplied by (all ones
            when ``last_layer_sphere`` is False); canonical logits = ``c`` x original logits.
    """

    flat: Tensor
    neuron_scales: list[Tensor]
    last_layer_factor: Tensor


def canonical_scale(spec: MLPSpec, flat: Tensor, last_layer_sphere: bool = True) -> CanonicalResult:
    """Canonicalize the scale of ``B`` networks at once (vectorized over networks and neurons).

    Args:
        spec: the architecture; its activation must be positively homogeneous.
        flat: ``(B, P)`` parameters.
        last_layer_sphere: also scale the last layer to Frobenius norm ``sqrt(C)``
            (classification); this keeps predicted classes but changes the loss.

    Returns:
        :class:`CanonicalResult`.
    """
    check_scale_symmetry(spec)
    layers = [(w, b) for w, b in spec.unflatten(flat)]
    eps = _eps(flat.dtype)
    scales = []
    for k in range(spec.n_layers - 1):
        w, b = layers[k]
        norm = w.norm(dim=2)  # (B, h)
        scale = torch.where(norm > eps, norm, torch.ones_like(norm))
        layers[k] = (w / scale.unsqueeze(2), b / scale)
        w_next, b_next = layers[k + 1]
        layers[k + 1] = (w_next * scale.unsqueeze(1), b_next)
        scales.append(scale)
    w, b = layers[-1]
    if last_layer_sphere:
        norm = w.flatten(1).norm(dim=1)  # (B,)
        target = math.sqrt(spec.n_outputs)
        factor = torch.where(norm > eps, target / norm.clamp_min(eps), torch.ones_like(norm))
        layers[-1] = (w * factor[:, None, None], b * factor[:, None])
    else:
        factor = torch.ones(flat.shape[0], dtype=flat.dtype, device=flat.device)
    return CanonicalResult(spec.flatten(layers), scales, factor)


def canonicalize(spec: MLPSpec, flat: Tensor, last_layer_sphere: bool = True) -> Tensor:
    """``(B, P)`` -> ``(B, P)`` canonical parameters; see :func:`canonical_scale`."""
    return canonical_scale(spec, flat, last_layer_sphere).flat


def is_canonical(
    spec: MLPSpec, flat: Tensor, atol: float | None = None, last_layer_sphere: bool = True
) -> tuple[bool, str]:
    """Whether every network of ``flat`` is in canonical scale form.

    Every hidden neuron's incoming weight norm must be 1 (or below the zero threshold,
    as canonicalization leaves zero neurons alone) and, with ``last_layer_sphere``, the last
    weight matrix must have Frobenius norm ``sqrt(C)``.

    Args:
        spec: the architecture.
        flat: ``(B, P)`` parameters.
        atol: tolerance on the norms; by default keyed by dtype (1e-4 for float32,
            1e-10 for float64).
        last_layer_sphere: check the last layer's norm too.

    Returns:
        ``(ok, reason)``; ``reason`` names the first offending layer, network and norm.
    """
    check_scale_symmetry(spec)
    tol = _ATOL.get(flat.dtype, 1e-4) if atol is None else atol
    eps = _eps(flat.dtype)
    layers = spec.unflatten(flat)
    for k in range(spec.n_layers - 1):
        norm = layers[k][0].norm(dim=2)
        bad = ((norm - 1).abs() > tol) & (norm > eps)
        if bad.any():
            b, i = (int(v) for v in bad.nonzero()[0])
            return False, (
                f"hidden layer {k} neuron {i} of network {b} has incoming norm "
                f"{float(norm[b, i]):.6g}, expected 1 (atol {tol:g})"
            )
    if last_layer_sphere:
        norm = layers[-1][0].flatten(1).norm(dim=1)
        target = math.sqrt(spec.n_outputs)
        bad = (norm - target).abs() > tol * max(target, 1.0)
        if bad.any():
            b = int(bad.nonzero()[0, 0])
            return False, (
                f"last layer of network {b} has Frobenius norm {float(norm[b]):.6g}, "
                f"expected sqrt({spec.n_outputs}) = {target:.6g} (atol {tol:g})"
            )
    return True, ""
