"""Learned initialisation: train many networks at once from given starting weights.

All ``B`` networks are one ``(B, P)`` leaf parameter with one torch optimizer. The objective
is ``sum_b L_b(theta_b)`` with ``L_b`` network ``b``'s mean cross entropy on its own
minibatch; its gradient with respect to ``theta_b`` is ``grad L_b``, and Adam and SGD act
elementwise, so this is exactly ``B`` independent training runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..weights import MLPSpec
from .quality import check_labels, sample_quality

__all__ = ["InitCurve", "OPTIMIZERS", "minibatch_indices", "train_from_init"]

#: Optimizers accepted by :func:`train_from_init`.
OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class InitCurve:
    """Test metrics of networks trained from given initial weights.

    Attributes:
        steps: ``(S,)`` optimizer steps at which the networks were evaluated (starts at 0).
        accuracy: ``(S, B)`` test accuracy per evaluation and network.
        loss: ``(S, B)`` test mean cross entropy.
        final: ``(B, P)`` weights after the last step.
    """

    steps: Tensor
    accuracy: Tensor
    loss: Tensor
    final: Tensor

    @property
    def accuracy_mean(self) -> Tensor:
        """``(S,)`` mean test accuracy over networks."""
        return self.accuracy.double().mean(1)

    @property
    def accuracy_std(self) -> Tensor:
        """``(S,)`` population standard deviation of the test accuracy over networks."""
        return self.accuracy.double().std(1, correction=0)

    @property
    def loss_mean(self) -> Tensor:
        """``(S,)`` mean test loss over networks."""
        return self.loss.double().mean(1)


def minibatch_indices(
    n_networks: int,
    n_examples: int,
    batch_size: int | None,
    generator: torch.Generator | None = None,
) -> Iterator[Tensor]:
    """Endless per-network minibatch indices, epoch by epoch without replacement.

    Each network draws its own permutation of the ``n_examples`` indices per epoch and walks
    through it in blocks of ``batch_size`` (a last partial block is dropped). With
    ``batch_size`` ``None`` or ``>= n_examples`` every step is the full batch, in order.

    Args:
        n_networks: ``B``.
        n_examples: ``N``.
        batch_size: examples per network per step.
        generator: CPU generator for the permutations.

    Returns:
        An endless iterator of ``(B, min(batch_size, N))`` CPU LongTensors.
    """
    if n_networks < 1 or n_examples < 1:
        raise ValueError(f"n_networks and n_examples must be >= 1, got {n_networks}, {n_examples}")
    if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be None (full batch) or >= 1, got {batch_size}")
    return _index_stream(n_networks, n_examples, batch_size, generator)


def _index_stream(
    n_networks: int, n_examples: int, batch_size: int | None, generator: torch.Generator | None
) -> Iterator[Tensor]:
    if batch_size is None or batch_size >= n_examples:
        full = torch.arange(n_examples).expand(n_networks, -1)
        while True:
            yield full
    per_epoch = n_examples // batch_size
    while True:
        perm = torch.rand(n_networks, n_examples, generator=generator).argsort(dim=1)
        for s in range(per_epoch):
            yield perm[:, s * batch_size : (s + 1) * batch_size]


def _validate(steps: int, lr: float, batch_size: int | None, optimizer: str, eval_every: int) -> None:
    if isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be None (full batch) or >= 1, got {batch_size}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if isinstance(eval_every, bool) or eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")


def train_from_init(
    spec: MLPSpec,
    init_flat: Tensor,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    steps: int,
    lr: float = 1e-3,
    batch_size: int | None = 128,
    optimizer: str = "adam",
    eval_every: int = 10,
    generator: torch.Generator | None = None,
    eval_batch_size: int | None = None,
) -> InitCurve:
    """Train ``B`` networks from ``init_flat`` and record test metrics along the way.

    Args:
        spec: architecture of the rows of ``init_flat``.
        init_flat: ``(B, P)`` starting weights (not modified).
        x_train: ``(N, d_0)`` training inputs.
        y_train: ``(N,)`` training labels.
        x_test: ``(M, d_0)`` test inputs.
        y_test: ``(M,)`` test labels.
        steps: optimizer steps.
        lr: learning rate.
        batch_size: training examples per network per step (each network its own
            minibatches, see :func:`minibatch_indices`); ``None`` for full batch.
        optimizer: one of :data:`OPTIMIZERS` (``torch.optim.Adam`` / plain ``torch.optim.SGD``).
        eval_every: evaluate after every ``eval_every`` steps; step 0 and the last step are
            always evaluated.
        generator: CPU generator for the minibatch permutations (the only randomness).
        eval_batch_size: test examples per forward pass, ``None`` for all at once.

    Returns:
        :class:`InitCurve`; ``steps`` on the CPU, the rest on ``init_flat``'s device.
    """
    spec.check_flat(init_flat)
    check_labels(x_train, y_train)
    check_labels(x_test, y_test)
    _validate(steps, lr, batch_size, optimizer, eval_every)
    if x_train.shape[0] == 0:
        raise ValueError("x_train must hold at least one example, got N=0")
    device, dtype = init_flat.device, init_flat.dtype
    x_tr, y_tr = x_train.to(device, dtype), y_train.to(device)
    theta = init_flat.detach().clone().requires_grad_(True)
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([theta], lr=lr)
    full_batch = batch_size is None or batch_size >= x_tr.shape[0]
    batches = minibatch_indices(theta.shape[0], x_tr.shape[0], batch_size, generator)

    record_at = set(range(0, steps + 1, eval_every)) | {steps}
    recorded, accs, losses = [], [], []
    for step in range(steps + 1):
        if step in record_at:
            q = sample_quality(spec, theta.detach(), x_test, y_test, batch_size=eval_batch_size)
            recorded.append(step)
            accs.append(q.accuracy)
            losses.append(q.loss)
        if step == steps:
            break
        if full_batch:  # one shared input batch: no (B, N, d) gather
            logits = spec.forward(theta, x_tr)  # (B, N, C)
            target = y_tr.expand(theta.shape[0], -1)
        else:
            idx = next(batches).to(device)  # (B, b)
            logits = spec.forward(theta, x_tr[idx])  # (B, b, C)
            target = y_tr[idx]
        per_example = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
        objective = per_example.view(target.shape).mean(1).sum()
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
    return InitCurve(
        steps=torch.as_tensor(recorded, dtype=torch.long),
        accuracy=torch.stack(accs),
        loss=torch.stack(losses),
        final=theta.detach(),
    )
