"""Functional diversity: Jensen-Shannon divergence between the predictions of networks.

For predictive distributions ``p, q`` over ``C`` classes and ``m = (p + q) / 2``,

    JSD(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m),   0 <= JSD <= log 2   (natural log),

computed with ``xlogy`` so ``0 log 0 = 0``. Identical distributions give ``m == p`` exactly
in floating point, hence a divergence of exactly zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["jensen_shannon", "pairwise_jsd", "mean_pairwise_jsd"]

#: Elements of the ``(rows, B, N, C)`` intermediate computed at once by :func:`pairwise_jsd`.
_CHUNK_ELEMENTS = 1 << 22


def jensen_shannon(p: Tensor, q: Tensor) -> Tensor:
    """Jensen-Shannon divergence (natural log) along the last dimension.

    Args:
        p: ``(..., C)`` probabilities.
        q: ``(..., C)`` probabilities, broadcastable with ``p``.

    Returns:
        ``(...)`` divergences (float64), clamped at 0 against round-off.
    """
    # float64: with float32 softmax outputs, m = (p + q) / 2 of a subnormal p underflows to 0
    # and xlogy(p, 0) is -inf (an infinite divergence between two confident networks).
    dtype = torch.promote_types(torch.promote_types(p.dtype, q.dtype), torch.float64)
    p, q = p.to(dtype), q.to(dtype)
    m = 0.5 * (p + q)
    kl_p = torch.xlogy(p, p) - torch.xlogy(p, m)
    kl_q = torch.xlogy(q, q) - torch.xlogy(q, m)
    return (0.5 * (kl_p + kl_q)).sum(-1).clamp_min(0.0)


def _check_probs(probs: Tensor) -> None:
    if probs.ndim != 3:
        raise ValueError(f"probs must have shape (B, N, C), got {tuple(probs.shape)}")
    if not probs.is_floating_point():
        raise ValueError(f"probs must be a floating tensor of probabilities, got dtype {probs.dtype}")


def pairwise_jsd(probs: Tensor, chunk_elements: int = _CHUNK_ELEMENTS) -> Tensor:
    """Matrix of Jensen-Shannon divergences between networks, averaged over inputs.

    ``D[i, j] = 1/N sum_n JSD(probs[i, n], probs[j, n])``; symmetric with a zero diagonal.
    Rows are computed in blocks so at most about ``chunk_elements`` elements of the
    ``(rows, B, N, C)`` intermediate live at once.

    Args:
        probs: ``(B, N, C)`` predictive distributions of ``B`` networks on ``N`` inputs.
        chunk_elements: memory bound of one block, in tensor elements.

    Returns:
        ``(B, B)`` divergences in ``probs``'s dtype.
    """
    _check_probs(probs)
    if chunk_elements < 1:
        raise ValueError(f"chunk_elements must be >= 1, got {chunk_elements}")
    b, n, c = probs.shape
    rows = max(1, chunk_elements // max(1, b * n * c))
    blocks = [
        jensen_shannon(probs[s : s + rows, None], probs[None]).mean(-1)  # (rows, B)
        for s in range(0, b, rows)
    ]
    return (torch.cat(blocks, dim=0) if blocks else probs.new_zeros(0, 0)).to(probs.dtype)


def mean_pairwise_jsd(probs: Tensor, chunk_elements: int = _CHUNK_ELEMENTS) -> Tensor:
    """Functional diversity: mean over pairs ``i < j`` of :func:`pairwise_jsd`.

    Args:
        probs: ``(B, N, C)`` predictive distributions, ``B >= 2``.
        chunk_elements: memory bound passed to :func:`pairwise_jsd`.

    Returns:
        Scalar tensor in ``[0, log 2]``; exactly 0 when all networks predict identically.
    """
    _check_probs(probs)
    b = probs.shape[0]
    if b < 2:
        raise ValueError(f"mean_pairwise_jsd needs at least 2 networks (probs.shape[0]), got {b}")
    d = pairwise_jsd(probs, chunk_elements)
    i, j = torch.triu_indices(b, b, offset=1, device=d.device)
    return d[i, j].mean()
