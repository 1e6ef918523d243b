"""Base tasks: data, preprocessing, split, loss and metrics of the networks in a zoo."""

from .base import SPLITS, ClassificationTask, EvalResult, Task, TaskData
from .gaussian import GaussianTask
from .registry import TASKS, available_tasks, get_task, task_class
from .uci import UCIBreastCancer
from .vision import (
    DATA_ROOT_ENV,
    FashionMNISTTask,
    KMNISTTask,
    MNISTTask,
    PermutedMNISTTask,
    TorchvisionTask,
    default_data_root,
)

__all__ = [
    "DATA_ROOT_ENV",
    "SPLITS",
    "TASKS",
    "ClassificationTask",
    "EvalResult",
    "FashionMNISTTask",
    "GaussianTask",
    "KMNISTTask",
    "MNISTTask",
    "PermutedMNISTTask",
    "Task",
    "TaskData",
    "TorchvisionTask",
    "UCIBreastCancer",
    "available_tasks",
    "default_data_root",
    "get_task",
    "task_class",
]
