"""Task registry: names -> task classes."""

from __future__ import annotations

from .base import Task
from .gaussian import GaussianTask
from .uci import UCIBreastCancer
from .vision import FashionMNISTTask, KMNISTTask, MNISTTask, PermutedMNISTTask, TorchvisionTask

__all__ = ["TASKS", "available_tasks", "get_task", "task_class"]

#: Every registered task by name.
TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        UCIBreastCancer,
        MNISTTask,
        FashionMNISTTask,
        KMNISTTask,
        PermutedMNISTTask,
        GaussianTask,
    )
}


def available_tasks() -> list[str]:
    """Sorted names accepted by :func:`get_task`."""
    return sorted(TASKS)


def task_class(name: str) -> type[Task]:
    """The class registered as ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available tasks: {', '.join(available_tasks())}")
    return TASKS[name]


def get_task(name: str, data_root: str | None = None, seed: int = 0, download: bool = True) -> Task:
    """Build task ``name``. No data is read until :meth:`Task.data` is called.

    Args:
        name: one of :func:`available_tasks`.
        data_root: folder of the torchvision datasets (``<root>/MNIST/raw``, ...); ignored by
            tasks with bundled data.
        seed: split seed (UCI), permutation seed (``mnist_permuted``); unused otherwise.
        download: let torchvision tasks download missing files.
    """
    cls = task_class(name)
    if issubclass(cls, TorchvisionTask):
        return cls(data_root=data_root, seed=seed, download=download)
    return cls(data_root=data_root, seed=seed)
