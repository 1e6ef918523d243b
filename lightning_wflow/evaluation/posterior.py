"""Posterior predictive: Bayesian model averaging over sampled networks, and calibration.

The BMA predictive of the first ``k`` networks is ``p_k(y | x) = 1/k sum_{b<k} p_b(y | x)``;
all prefixes come from one cumulative sum over networks. Calibration is the expected
calibration error of torchmetrics (equal-width confidence bins, L1 norm):

    ECE = sum_bins |bin| / N * |accuracy(bin) - confidence(bin)|.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    binary_calibration_error,
    multiclass_calibration_error,
)

__all__ = ["BMAPoint", "bma_curve", "default_ks", "expected_calibration_error", "ECE_NORMS"]

#: Norms accepted by :func:`expected_calibration_error` (torchmetrics' names).
ECE_NORMS = ("l1", "l2", "max")


@dataclass(frozen=True)
class BMAPoint:
    """Metrics of the model average of the first ``k`` networks.

    Attributes:
        k: number of networks averaged.
        accuracy: fraction of inputs whose most probable averaged class is the label.
        nll: mean ``-log p_k(y | x)``.
        ece: expected calibration error of the averaged predictive.
    """

    k: int
    accuracy: float
    nll: float
    ece: float


def default_ks(n_networks: int) -> list[int]:
    """``1, 2, 4, ...`` up to ``n_networks``, with ``n_networks`` itself always last."""
    if n_networks < 1:
        raise ValueError(f"n_networks must be >= 1, got {n_networks}")
    ks, k = [], 1
    while k < n_networks:
        ks.append(k)
        k *= 2
    return ks + [n_networks]


def _check_probs_labels(probs: Tensor, y: Tensor, probs_shape: str) -> None:
    if not probs.is_floating_point():
        raise ValueError(f"probs must be a floating tensor of probabilities, got dtype {probs.dtype}")
    if y.ndim != 1 or y.shape[0] != probs.shape[-2 if probs.ndim > 1 else 0]:
        raise ValueError(
            f"y must have shape (N,) matching probs {probs_shape} = {tuple(probs.shape)}, "
            f"got {tuple(y.shape)}"
        )
    if y.is_floating_point() or y.is_complex():
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")


def expected_calibration_error(
    probs: Tensor, y: Tensor, n_bins: int = 15, norm: str = "l1"
) -> float:
    """Expected calibration error with torchmetrics.

    Args:
        probs: ``(N, C)`` class probabilities (top-label calibration,
            ``multiclass_calibration_error``), or ``(N,)`` probabilities of class 1 of a
            binary problem (``binary_calibration_error``).
        y: ``(N,)`` integer labels (``0``/``1`` in the binary case).
        n_bins: number of equal-width confidence bins.
        norm: one of :data:`ECE_NORMS`.

    Returns:
        The error as a Python float in ``[0, 1]``.
    """
    if probs.ndim not in (1, 2):
        raise ValueError(f"probs must have shape (N, C) or (N,), got {tuple(probs.shape)}")
    _check_probs_labels(probs, y, "(N, C) or (N,)")
    if isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if norm not in ECE_NORMS:
        raise ValueError(f"norm must be one of {list(ECE_NORMS)}, got {norm!r}")
    target = y.to(probs.device)
    if probs.ndim == 1:
        value = binary_calibration_error(probs, target, n_bins=n_bins, norm=norm)
    else:
        value = multiclass_calibration_error(
            probs, target, num_classes=probs.shape[1], n_bins=n_bins, norm=norm
        )
    return float(value)


def bma_curve(
    probs: Tensor, y: Tensor, ks: Sequence[int] | None = None, n_bins: int = 15
) -> list[BMAPoint]:
    """Accuracy, NLL and ECE of the model average of the first ``k`` networks, for each ``k``.

    Args:
        probs: ``(B, N, C)`` predictive distributions of ``B`` networks on ``N`` inputs.
        y: ``(N,)`` integer labels.
        ks: prefix sizes in ``[1, B]``; ``None`` for :func:`default_ks` ``(B)``.
        n_bins: confidence bins of the ECE.

    Returns:
        One :class:`BMAPoint` per entry of ``ks``, in the given order.
    """
    if probs.ndim != 3:
        raise ValueError(f"probs must have shape (B, N, C), got {tuple(probs.shape)}")
    _check_probs_labels(probs, y, "(B, N, C)")
    b = probs.shape[0]
    if b < 1 or probs.shape[1] < 1:
        raise ValueError(f"probs needs at least one network and one input, got {tuple(probs.shape)}")
    ks = default_ks(b) if ks is None else [int(k) for k in ks]
    bad = [k for k in ks if not 1 <= k <= b]
    if not ks or bad:
        raise ValueError(f"ks must be a non-empty list of prefix sizes in [1, {b}], got {ks}")
    target = y.to(probs.device)
    # Prefix means in float64, so k copies of one network average back to it.
    cum = probs.double().cumsum(dim=0)  # (B, N, C)
    idx = torch.as_tensor([k - 1 for k in ks], device=probs.device)
    counts = torch.as_tensor(ks, dtype=torch.float64, device=probs.device).view(-1, 1, 1)
    # Clamped so round-off above 1 is not mistaken for logits by torchmetrics.
    avg = (cum[idx] / counts).clamp(0.0, 1.0)  # (K, N, C)
    accuracy = (avg.argmax(-1) == target).double().mean(-1)
    p_true = avg.gather(-1, target.view(1, -1, 1).expand(len(ks), -1, 1)).squeeze(-1)
    nll = -p_true.clamp_min(torch.finfo(torch.float64).tiny).log().mean(-1)
    return [
        BMAPoint(
            k=k,
            accuracy=float(accuracy[i]),
            nll=float(nll[i]),
            ece=expected_calibration_error(avg[i], target, n_bins=n_bins),
        )
        for i, k in enumerate(ks)
    ]
