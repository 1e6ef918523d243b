"""The Gaussian toy: a "task" with no data, whose zoo is drawn directly in weight space."""

from __future__ import annotations

from .base import EvalResult, Task, TaskData

__all__ = ["GaussianTask"]


class GaussianTask(Task):
    """No inputs, labels, loss or accuracy: any architecture is accepted.

    The zoo of this task is ``n`` draws from ``N(mean, std^2 I)`` over the flat parameters
    (see :func:`lightning_wflow.zoo.sample_gaussian_zoo`); the reference's toy is
    ``p0 = N(0, I) -> p1 = N(1, I)`` over a 30-16-16-2 MLP.
    """

    name = "gaussian"
    n_inputs = None
    n_classes = None
    has_data = False

    def data(self) -> TaskData:
        raise self.no_data_error()

    def loss(self, logits, y):
        raise self.no_data_error()

    def evaluate(self, spec, flat, split="test", batch_size=2048) -> EvalResult:
        raise self.no_data_error()

    def loss_fn(self, spec, split="train", batch_size=None, generator=None):
        raise self.no_data_error()

    def metadata(self) -> dict:
        return {"name": self.name, "has_data": False}
