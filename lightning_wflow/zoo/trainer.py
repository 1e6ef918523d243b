"""Training many base networks at once and recording their trajectories.

``R`` runs are one ``(R, P)`` parameter tensor. Each iteration gathers one minibatch per run,
``x (R, b, d_0)``, runs :meth:`MLPSpec.forward` (one batched matmul per layer) and minimises
``sum_r mean_loss_r``: run ``r``'s gradient is that of its own mean loss, since the other
terms do not depend on its parameters. Adam and SGD (momentum, weight decay) act elementwise,
so a single ``torch.optim`` optimiser over the ``(R, P)`` tensor updates every run exactly as
an optimiser of its own would (Adam's step counter is the same for all runs, which train in
lockstep). This is why one optimiser replaces ``R`` of them without a hand-written update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..tasks import Task, TaskData
from ..weights import MLPSpec
from .config import ZooConfig

__all__ = ["RunRandomness", "Trajectories", "make_optimizer", "run_seed", "train_trajectories"]


def run_seed(seed: int, run: int) -> int:
    """Seed of run ``run``'s random stream: independent of which runs train together."""
    return int(np.random.SeedSequence([seed, run]).generate_state(1)[0])


class RunRandomness:
    """Per-run random streams: initialisation first, then one data order per epoch.

    A run's draws depend only on ``(seed, run)``, so chunking or resuming a zoo, or training one
    run alone in a plain loop, reproduces the same trajectory. Drawing the ``R`` permutations
    loops over runs once per epoch (not per iteration), which costs little next to training.

    Args:
        seed: zoo seed.
        runs: run indices.
    """

    def __init__(self, seed: int, runs: Sequence[int]) -> None:
        self.generators = [torch.Generator().manual_seed(run_seed(seed, r)) for r in runs]

    def initial(self, n_params: int, mean: float, std: float) -> Tensor:
        """``(R, P)`` draws from ``N(mean, std^2)``."""
        z = torch.stack([torch.randn(n_params, generator=g) for g in self.generators])
        return z.mul_(std).add_(mean)

    def permutations(self, n: int) -> Tensor:
        """``(R, n)`` one fresh permutation of the training examples per run."""
        return torch.stack([torch.randperm(n, generator=g) for g in self.generators])


def make_optimizer(params: list[Tensor], cfg: ZooConfig) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` or ``SGD`` with the config's lr, momentum and weight decay."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {cfg.optimizer!r}")


@dataclass(frozen=True)
class Trajectories:
    """Recorded training trajectories of ``R`` runs (CPU tensors).

    Attributes:
        weights: ``(R, T, P)`` the weights after each recorded step.
        final: ``(R, P)`` the weights after the last step.
        steps: ``(T,)`` optimiser step of each recorded checkpoint (see ``Schedule``).
    """

    weights: Tensor
    final: Tensor
    steps: Tensor


def train_trajectories(
    cfg: ZooConfig,
    task: Task,
    runs: Sequence[int],
    data: TaskData | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "zoo",
) -> Trajectories:
    """Train runs ``runs`` of the zoo ``cfg`` at once and record their trajectories.

    Args:
        cfg: validated zoo configuration.
        task: the task (supplies the data unless ``data`` is given, and the loss).
        runs: run indices to train (each has its own initialisation and data order).
        data: preprocessed data; ``task.data()`` when ``None``.
        device: where to train (default CPU).
        progress: show a tqdm bar over iterations.
        desc: progress bar label.

    Returns:
        :class:`Trajectories` with ``R = len(runs)``.
    """
    spec: MLPSpec = cfg.spec
    data = task.data() if data is None else data
    device = torch.device(device or "cpu")
    n = data.x_train.shape[0]
    sched = cfg.schedule(n)
    x_train = data.x_train.to(device)
    y_train = data.y_train.to(device)
    n_runs, bs = len(runs), cfg.batch_size

    rng = RunRandomness(cfg.seed, runs)
    params = torch.nn.Parameter(rng.initial(spec.n_params, cfg.init_mean, cfg.init_std).to(device))
    opt = make_optimizer([params], cfg)
    recorded = torch.empty(n_runs, len(sched.recorded_steps), spec.n_params)
    record_at = iter(sched.recorded_steps)
    next_record, j, step = next(record_at), 0, 0

    with tqdm(total=sched.n_iterations, desc=desc, disable=not progress, leave=False) as bar:
        for _ in range(cfg.epochs):
            perms = rng.permutations(n).to(device)  # (R, n)
            for start in range(0, n, bs):
                idx = perms[:, start : start + bs]  # (R, b)
                # Row gather (R, b, d_0); F.embedding is about 2x faster than x_train[idx] on CPU.
                logits = spec.forward(params, F.embedding(idx, x_train))  # (R, b, C)
                loss = task.loss(logits, y_train[idx]).sum()  # sum over runs of mean losses
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if step == next_record:
                    recorded[:, j].copy_(params.detach())
                    j += 1
                    next_record = next(record_at, -1)
                bar.update(1)
    return Trajectories(
        weights=recorded,
        final=params.detach().cpu().clone(),
        steps=torch.tensor(sched.recorded_steps, dtype=torch.int64),
    )
