"""What determines a zoo: task, architecture, initialisation, optimiser, schedule and seeds."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

from ..tasks import task_class
from ..weights import MLPSpec

__all__ = ["OPTIMIZERS", "ZOO_FORMAT", "Schedule", "ZooConfig"]

#: Optimisers the trainer implements.
OPTIMIZERS = ("adam", "sgd")

#: Version of the trajectory recipe and on-disk layout; part of every cache key.
ZOO_FORMAT = 1

#: Fields that say where things are, not what the zoo is: left out of the cache key.
_NOT_IN_KEY = ("data_root",)


@dataclass(frozen=True)
class Schedule:
    """Iteration bookkeeping of one run, derived from a config and the training-set size.

    Iterations are counted as optimiser steps ``t = 1, ..., n_iterations``. The first
    ``burn_in_iterations = burn_in_epochs * iters_per_epoch`` steps are dropped; afterwards the
    weights after step ``t`` are recorded when ``(t - burn_in_iterations) % record_every == 0``.

    Attributes:
        iters_per_epoch: ``ceil(n_train / batch_size)`` (the last minibatch may be smaller).
        n_iterations: ``epochs * iters_per_epoch``.
        burn_in_iterations: steps dropped before recording starts.
        recorded_steps: the steps ``t`` whose weights are recorded, increasing.
    """

    iters_per_epoch: int
    n_iterations: int
    burn_in_iterations: int
    recorded_steps: tuple[int, ...]


@dataclass(frozen=True)
class ZooConfig:
    """Everything that determines a zoo of training trajectories.

    Args:
        task: task name (see :func:`lightning_wflow.tasks.available_tasks`); must have data.
        layer_sizes: MLP sizes ``(d_0, ..., d_L)``, matching the task's inputs and classes.
        activation: hidden activation of the MLP.
        n_runs: independent training runs (trajectories).
        epochs: training epochs per run.
        batch_size: minibatch size of the base-network training.
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``).
        lr: learning rate.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty coefficient added to the gradient (both optimisers).
        init_mean: mean of the prior initialisation ``N(init_mean, init_std^2)`` per parameter.
        init_std: standard deviation of the prior initialisation.
        burn_in_epochs: leading epochs whose iterates are not recorded.
        record_every: record every k-th iteration after the burn-in.
        seed: seed of the runs; run ``r`` depends on ``(seed, r)`` only.
        split_seed: seed of the task's train/test split (UCI) or pixel permutation.
        data_root: where torchvision datasets live (not part of the cache key).
    """

    task: str = "uci_breast_cancer"
    layer_sizes: tuple[int, ...] = (30, 16, 16, 2)
    activation: str = "relu"
    n_runs: int = 100
    epochs: int = 50
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    init_mean: float = 0.0
    init_std: float = math.sqrt(0.1)
    burn_in_epochs: int = 10
    record_every: int = 4
    seed: int = 0
    split_seed: int = 0
    data_root: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_sizes", tuple(self.layer_sizes))
        # 0 and 0.0 must give the same cache key.
        for name in ("lr", "momentum", "weight_decay", "init_mean", "init_std"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))

    @property
    def spec(self) -> MLPSpec:
        return MLPSpec(self.layer_sizes, self.activation)

    def validate(self) -> "ZooConfig":
        """Refuse inconsistent settings before any work starts; returns ``self``.

        Raises:
            ValueError: naming the field, its value and what is allowed.
        """
        cls = task_class(self.task)
        if not cls.has_data:
            raise ValueError(
                f"task {self.task!r} has no data to train a zoo on; its zoo is drawn directly in "
                "weight space (lightning_wflow.zoo.sample_gaussian_zoo)"
            )
        spec = self.spec  # validates layer_sizes and activation
        cls().check_spec(spec)
        _check_int("n_runs", self.n_runs, 1)
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("burn_in_epochs", self.burn_in_epochs, 0)
        _check_int("record_every", self.record_every, 1)
        _check_int("seed", self.seed, 0)
        _check_int("split_seed", self.split_seed, 0)
        if self.burn_in_epochs >= self.epochs:
            raise ValueError(
                f"burn_in_epochs ({self.burn_in_epochs}) must be smaller than epochs "
                f"({self.epochs}): nothing would be recorded"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not (self.init_std > 0 and math.isfinite(self.init_std)):
            raise ValueError(f"init_std must be a positive finite number, got {self.init_std}")
        if not math.isfinite(self.init_mean):
            raise ValueError(f"init_mean must be finite, got {self.init_mean}")
        return self

    def schedule(self, n_train: int) -> Schedule:
        """The :class:`Schedule` for ``n_train`` training examples.

        Raises:
            ValueError: when the recording interval leaves no checkpoint after the burn-in.
        """
        ipe = -(-n_train // self.batch_size)
        total = self.epochs * ipe
        burn = self.burn_in_epochs * ipe
        steps = tuple(range(burn + self.record_every, total + 1, self.record_every))
        if not steps:
            raise ValueError(
                f"record_every ({self.record_every}) is longer than the {total - burn} iterations "
                f"after the burn-in ({self.epochs - self.burn_in_epochs} epochs x {ipe} "
                f"iterations): nothing would be recorded"
            )
        return Schedule(ipe, total, burn, steps)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layer_sizes"] = list(self.layer_sizes)
        return d

    def key_dict(self) -> dict:
        """The fields that determine the zoo's content, plus the format version."""
        d = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_KEY}
        d["format"] = ZOO_FORMAT
        return d

    def key(self) -> str:
        """16 hex digits of the sha256 of :meth:`key_dict` (canonical JSON)."""
        blob = json.dumps(self.key_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def dirname(self) -> str:
        """Readable cache folder name: ``<task>_<sizes>_<optimizer>_<key>``."""
        sizes = "-".join(str(s) for s in self.layer_sizes)
        return f"{self.task}_{sizes}_{self.optimizer}_{self.key()}"


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
