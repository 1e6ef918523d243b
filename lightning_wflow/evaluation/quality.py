"""Sample quality: accuracy and cross entropy of many networks at once, and their predictions.

Every function evaluates ``B`` networks with one batched forward (:meth:`MLPSpec.forward`),
optionally in chunks of examples to bound memory at ``B * batch_size * max width``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..weights import MLPSpec

__all__ = ["SampleQuality", "sample_quality", "predictive_probs", "check_labels"]


@dataclass(frozen=True)
class SampleQuality:
    """Per-network classification metrics on one set of examples.

    Attributes:
        accuracy: ``(B,)`` fraction of examples whose argmax logit is the label.
        loss: ``(B,)`` mean cross entropy ``-log softmax(f(x))_y``.
        scaled_loss: ``(B,)`` mean cross entropy of the logits multiplied by ``logit_scale``
            (``softmax(s_b f_b(x))``), or ``None`` when no scale was given. For canonical
            weights whose last layer lies on a sphere, ``s_b`` restores the loss of the
            original network; the accuracy does not depend on a positive scale.
    """

    accuracy: Tensor
    loss: Tensor
    scaled_loss: Tensor | None = None

    @property
    def n_networks(self) -> int:
        return int(self.accuracy.shape[0])

    @property
    def accuracy_mean(self) -> float:
        return float(self.accuracy.double().mean())

    @property
    def accuracy_std(self) -> float:
        """Population standard deviation (``correction=0``), so one network gives 0."""
        return float(self.accuracy.double().std(correction=0))

    @property
    def loss_mean(self) -> float:
        return float(self.loss.double().mean())

    @property
    def loss_std(self) -> float:
        return float(self.loss.double().std(correction=0))

    def summary(self) -> dict[str, float]:
        """``{"accuracy_mean", "accuracy_std", "loss_mean", "loss_std", "n_networks"}`` as
        Python numbers, plus ``"scaled_loss_mean"``/``"scaled_loss_std"`` when available."""
        out: dict[str, float] = {
            "accuracy_mean": self.accuracy_mean,
            "accuracy_std": self.accuracy_std,
            "loss_mean": self.loss_mean,
            "loss_std": self.loss_std,
            "n_networks": float(self.n_networks),
        }
        if self.scaled_loss is not None:
            out["scaled_loss_mean"] = float(self.scaled_loss.double().mean())
            out["scaled_loss_std"] = float(self.scaled_loss.double().std(correction=0))
        return out


def check_labels(x: Tensor, y: Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(N, d)`` and ``y`` is ``(N,)`` integer labels."""
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, d), got {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex():
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")


def _check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be None (all examples at once) or >= 1, got {batch_size}")


def _chunks(n: int, batch_size: int | None) -> list[slice]:
    step = n if batch_size is None else batch_size
    return [slice(s, min(s + step, n)) for s in range(0, n, max(step, 1))]


def sample_quality(
    spec: MLPSpec,
    flat: Tensor,
    x: Tensor,
    y: Tensor,
    batch_size: int | None = None,
    logit_scale: Tensor | None = None,
) -> SampleQuality:
    """Accuracy and mean cross entropy of ``B`` networks on ``(x, y)``.

    Args:
        spec: architecture of the rows of ``flat``.
        flat: ``(B, P)`` parameters.
        x: ``(N, d_0)`` inputs shared by all networks (moved to ``flat``'s device and dtype).
        y: ``(N,)`` integer labels.
        batch_size: examples per forward pass; ``None`` evaluates all ``N`` at once.
        logit_scale: optional ``(B,)`` positive factors ``s_b``; :attr:`SampleQuality.scaled_loss`
            is then the cross entropy of ``s_b * logits_b``.

    Returns:
        :class:`SampleQuality` with ``(B,)`` float32 tensors on ``flat``'s device (sums are
        accumulated in float64).
    """
    spec.check_flat(flat)
    check_labels(x, y)
    _check_batch_size(batch_size)
    if x.shape[1] != spec.n_inputs:
        raise ValueError(
            f"x has {x.shape[1]} features but layer_sizes {list(spec.layer_sizes)} expect {spec.n_inputs}"
        )
    n_net, n = flat.shape[0], x.shape[0]
    if n == 0:
        raise ValueError("x and y must hold at least one example, got N=0")
    scale = None
    if logit_scale is not None:
        if logit_scale.shape != (n_net,):
            raise ValueError(
                f"logit_scale must have shape ({n_net},) (one factor per network), "
                f"got {tuple(logit_scale.shape)}"
            )
        scale = logit_scale.to(flat.device, flat.dtype).view(n_net, 1, 1)
    correct = torch.zeros(n_net, dtype=torch.float64, device=flat.device)
    loss_sum = torch.zeros_like(correct)
    scaled_sum = torch.zeros_like(correct)
    with torch.no_grad():
        for sl in _chunks(n, batch_size):
            xb = x[sl].to(flat.device, flat.dtype)
            yb = y[sl].to(flat.device)
            logits = spec.forward(flat, xb)  # (B, n, C)
            target = yb.expand(n_net, -1)
            correct += (logits.argmax(-1) == target).sum(-1, dtype=torch.float64)
            loss_sum += _ce_sum(logits, target)
            if scale is not None:
                scaled_sum += _ce_sum(logits * scale, target)
    return SampleQuality(
        accuracy=(correct / n).float(),
        loss=(loss_sum / n).float(),
        scaled_loss=None if scale is None else (scaled_sum / n).float(),
    )


def _ce_sum(logits: Tensor, target: Tensor) -> Tensor:
    """``(B, n, C)``, ``(B, n)`` -> ``(B,)`` float64 sum of per-example cross entropy."""
    per_example = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    return per_example.view(target.shape).sum(-1, dtype=torch.float64)


def predictive_probs(
    spec: MLPSpec, flat: Tensor, x: Tensor, batch_size: int | None = None
) -> Tensor:
    """Predictive distributions ``softmax(f_b(x_n))`` of ``B`` networks.

    Args:
        spec: architecture of the rows of ``flat``.
        flat: ``(B, P)`` parameters.
        x: ``(N, d_0)`` inputs shared by all networks.
        batch_size: examples per forward pass; ``None`` for all at once.

    Returns:
        ``(B, N, C)`` probabilities in ``flat``'s dtype and device (no gradient).
    """
    spec.check_flat(flat)
    if x.ndim != 2 or x.shape[1] != spec.n_inputs:
        raise ValueError(f"x must have shape (N, {spec.n_inputs}), got {tuple(x.shape)}")
    _check_batch_size(batch_size)
    with torch.no_grad():
        parts = [
            torch.softmax(spec.forward(flat, x[sl].to(flat.device, flat.dtype)), dim=-1)
            for sl in _chunks(x.shape[0], batch_size)
        ]
    if not parts:
        return flat.new_zeros(flat.shape[0], 0, spec.n_outputs)
    return torch.cat(parts, dim=1)
