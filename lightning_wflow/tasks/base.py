"""What a base task is: data, preprocessing, split, loss and metrics of the networks in a zoo.

A task knows nothing of flows or zoos. It hands out preprocessed tensors and evaluates many
networks at once through :meth:`MLPSpec.forward` (one batched matmul per layer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..weights import MLPSpec

__all__ = ["EvalResult", "Task", "TaskData", "ClassificationTask", "SPLITS"]

#: Splits every task with data provides.
SPLITS = ("train", "test")


@dataclass(frozen=True)
class TaskData:
    """Preprocessed tensors of a task (CPU, float32 inputs, int64 labels).

    Attributes:
        x_train: ``(N_train, d_0)`` inputs.
        y_train: ``(N_train,)`` class labels.
        x_test: ``(N_test, d_0)`` inputs.
        y_test: ``(N_test,)`` class labels.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of split ``name`` (``"train"`` or ``"test"``)."""
        if name == "train":
            return self.x_train, self.y_train
        if name == "test":
            return self.x_test, self.y_test
        raise ValueError(f"split must be one of {list(SPLITS)}, got {name!r}")


@dataclass(frozen=True)
class EvalResult:
    """Per-network metrics on one split.

    Attributes:
        accuracy: ``(B,)`` fraction of correctly classified examples.
        loss: ``(B,)`` mean cross entropy.
    """

    accuracy: Tensor
    loss: Tensor


class Task(ABC):
    """A base task. Subclasses set the class attributes and implement :meth:`data`.

    Attributes:
        name: registry name.
        n_inputs: input size ``d_0`` of the networks (``None`` for tasks without data).
        n_classes: number of classes ``d_L`` (``None`` for tasks without data).
        has_data: whether :meth:`data`, :meth:`evaluate` and :meth:`loss_fn` are available.
    """

    name: str = ""
    n_inputs: int | None = None
    n_classes: int | None = None
    has_data: bool = True

    def __init__(self, data_root: str | None = None, seed: int = 0) -> None:
        self.data_root = data_root
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, seed={self.seed})"

    # ------------------------------------------------------------------ data
    @abstractmethod
    def data(self) -> TaskData:
        """Preprocessed train and test tensors (loaded once per process)."""

    @abstractmethod
    def metadata(self) -> dict:
        """JSON-able description from which the preprocessed data can be rebuilt without
        this package (source, split, preprocessing constants)."""

    def check_spec(self, spec: MLPSpec) -> None:
        """Raise ``ValueError`` when the architecture does not fit the task's inputs and classes."""
        if self.n_inputs is not None and spec.n_inputs != self.n_inputs:
            raise ValueError(
                f"layer_sizes {list(spec.layer_sizes)} start with {spec.n_inputs} inputs but task "
                f"{self.name!r} has {self.n_inputs} input features"
            )
        if self.n_classes is not None and spec.n_outputs != self.n_classes:
            raise ValueError(
                f"layer_sizes {list(spec.layer_sizes)} end with {spec.n_outputs} outputs but task "
                f"{self.name!r} has {self.n_classes} classes"
            )

    # --------------------------------------------------------------- metrics
    @abstractmethod
    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """Mean loss per network.

        Args:
            logits: ``(..., N, C)``.
            y: ``(N,)`` labels shared by all networks or ``(..., N)`` one label batch per network.

        Returns:
            ``(...)`` mean over the ``N`` examples.
        """

    @abstractmethod
    def evaluate(
        self, spec: MLPSpec, flat: Tensor, split: str = "test", batch_size: int = 2048
    ) -> EvalResult:
        """Accuracy and mean loss of ``B`` networks on a split, batched over networks.

        Args:
            spec: architecture of the rows of ``flat``.
            flat: ``(B, P)`` parameters.
            split: ``"train"`` or ``"test"``.
            batch_size: examples per forward pass (bounds memory at ``B * batch_size * max width``).

        Returns:
            :class:`EvalResult` with ``(B,)`` tensors on ``flat``'s device.
        """

    @abstractmethod
    def loss_fn(
        self,
        spec: MLPSpec,
        split: str = "train",
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Callable[[Tensor], Tensor]:
        """A differentiable ``flat (B, P) -> (B,)`` mean loss, for guidance and alignment.

        Args:
            spec: architecture of the networks passed to the returned callable.
            split: which split the loss is measured on.
            batch_size: ``None`` for the full split, else a fresh random minibatch (shared by the
                ``B`` networks) on every call, drawn with ``generator``.
            generator: CPU generator for the minibatch indices.
        """

    def no_data_error(self) -> RuntimeError:
        """The error raised by the data methods of a task without data."""
        return RuntimeError(
            f"task {self.name!r} has no data: it has no inputs, labels, loss or accuracy; "
            "use a classification task for evaluation, guidance or loss-based alignment"
        )


class ClassificationTask(Task):
    """Shared cross-entropy loss, accuracy and loss closures of the classification tasks."""

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        y = y.expand(logits.shape[:-1])
        per_example = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none"
        )
        return per_example.view(logits.shape[:-1]).mean(-1)

    def evaluate(
        self, spec: MLPSpec, flat: Tensor, split: str = "test", batch_size: int = 2048
    ) -> EvalResult:
        self.check_spec(spec)
        spec.check_flat(flat)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        x, y = self.data().split(split)
        correct = torch.zeros(flat.shape[0], dtype=torch.float64, device=flat.device)
        loss_sum = torch.zeros_like(correct)
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                xb = x[start : start + batch_size].to(flat.device, flat.dtype)
                yb = y[start : start + batch_size].to(flat.device)
                logits = spec.forward(flat, xb)  # (B, n, C)
                correct += (logits.argmax(-1) == yb).sum(-1, dtype=torch.float64)
                loss_sum += self.loss(logits, yb).double() * xb.shape[0]
        n = x.shape[0]
        return EvalResult(accuracy=(correct / n).float(), loss=(loss_sum / n).float())

    def loss_fn(
        self,
        spec: MLPSpec,
        split: str = "train",
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Callable[[Tensor], Tensor]:
        self.check_spec(spec)
        x_all, y_all = self.data().split(split)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be None or >= 1, got {batch_size}")
        # Copies of the split per device, so a GPU caller does not re-upload the data per call.
        on_device: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

        def closure(flat: Tensor) -> Tensor:
            key = (flat.device, flat.dtype)
            if key not in on_device:
                on_device[key] = (x_all.to(flat.device, flat.dtype), y_all.to(flat.device))
            x, y = on_device[key]
            if batch_size is not None:
                # Without replacement, so a minibatch never counts an example twice.
                idx = torch.randperm(x.shape[0], generator=generator)[:batch_size].to(x.device)
                x, y = x[idx], y[idx]
            return self.loss(spec.forward(flat, x), y)

        return closure
