"""UCI Wisconsin diagnostic breast cancer (569 x 30, 2 classes), bundled with scikit-learn."""

from __future__ import annotations

import threading

import numpy as np
import torch

from .base import ClassificationTask, TaskData

__all__ = ["UCIBreastCancer"]

_CACHE: dict[int, tuple[TaskData, dict]] = {}
_LOCK = threading.Lock()


class UCIBreastCancer(ClassificationTask):
    """Binary classification of 30 cell-nucleus features.

    Split: ``sklearn.model_selection.train_test_split(test_size=0.2, stratify=y,
    random_state=seed)`` (455 train / 114 test). Preprocessing: ``x' = (x - mean) / std`` with
    the per-feature mean and (population) standard deviation of the training part only.
    :meth:`metadata` lists the test indices and the constants, so the split does not depend on
    scikit-learn's implementation staying the same.
    """

    name = "uci_breast_cancer"
    n_inputs = 30
    n_classes = 2
    test_size = 0.2

    def _load(self) -> tuple[TaskData, dict]:
        with _LOCK:
            if self.seed not in _CACHE:
                _CACHE[self.seed] = self._build()
            return _CACHE[self.seed]

    def _build(self) -> tuple[TaskData, dict]:
        from sklearn.datasets import load_breast_cancer
        from sklearn.model_selection import train_test_split

        x, y = load_breast_cancer(return_X_y=True)
        idx = np.arange(len(y))
        train_idx, test_idx = train_test_split(
            idx, test_size=self.test_size, stratify=y, random_state=self.seed
        )
        train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
        mean = x[train_idx].mean(0)
        std = x[train_idx].std(0)
        std = np.where(std > 0, std, 1.0)
        xs = (x - mean) / std
        data = TaskData(
            x_train=torch.as_tensor(xs[train_idx], dtype=torch.float32),
            y_train=torch.as_tensor(y[train_idx], dtype=torch.int64),
            x_test=torch.as_tensor(xs[test_idx], dtype=torch.float32),
            y_test=torch.as_tensor(y[test_idx], dtype=torch.int64),
        )
        meta = {
            "name": self.name,
            "source": "sklearn.datasets.load_breast_cancer (rows in the bundled order)",
            "n_inputs": self.n_inputs,
            "n_classes": self.n_classes,
            "loss": "cross_entropy (mean over examples)",
            "split": {
                "method": "sklearn.model_selection.train_test_split, stratified",
                "seed": self.seed,
                "test_size": self.test_size,
                "test_indices": test_idx.tolist(),
                "train_indices": "all other rows, in increasing order",
            },
            "preprocessing": {
                "standardize": "x' = (x - mean) / std, training statistics, std with ddof=0",
                "mean": mean.tolist(),
                "std": std.tolist(),
            },
        }
        return data, meta

    def data(self) -> TaskData:
        return self._load()[0]

    def metadata(self) -> dict:
        return self._load()[1]
