"""28 x 28 grey-scale image classification through torchvision: MNIST, Fashion-MNIST, KMNIST,
and a fixed pixel permutation of MNIST (the offline transfer task).

Images are flattened row-major to 784 inputs, scaled to ``[0, 1]`` (``/ 255``) and normalised
with the dataset's usual constants, ``x' = (x - mean) / std``. The split is the dataset's own
(60,000 train / 10,000 test).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch

from .base import ClassificationTask, TaskData

__all__ = ["DATA_ROOT_ENV", "FashionMNISTTask", "KMNISTTask", "MNISTTask", "PermutedMNISTTask",
           "TorchvisionTask", "default_data_root"]

#: Environment variable read when no ``data_root`` is given; falls back to ``./data``.
DATA_ROOT_ENV = "LIGHTNING_WFLOW_DATA"

_RAW: dict[tuple[str, str], tuple[torch.Tensor, ...]] = {}
_LOCK = threading.Lock()


def default_data_root(data_root: str | None) -> Path:
    """``data_root`` if given, else ``$LIGHTNING_WFLOW_DATA``, else ``./data``."""
    return Path(data_root if data_root is not None else os.environ.get(DATA_ROOT_ENV, "data"))


class TorchvisionTask(ClassificationTask):
    """A torchvision 28 x 28 dataset (``dataset_class`` names a class of ``torchvision.datasets``).

    Args:
        data_root: folder holding ``<dataset_class>/raw/*-ubyte`` (torchvision's layout).
        seed: unused by the datasets with their own split (kept for a uniform registry).
        download: try to download the files when they are missing.
    """

    n_inputs = 784
    n_classes = 10
    dataset_class: str = ""
    mean: float = 0.0
    std: float = 1.0

    def __init__(self, data_root: str | None = None, seed: int = 0, download: bool = True) -> None:
        super().__init__(data_root=data_root, seed=seed)
        self.download = bool(download)

    @property
    def root(self) -> Path:
        return default_data_root(self.data_root)

    @property
    def raw_folder(self) -> Path:
        """Where torchvision looks for the raw IDX files."""
        return self.root / self.dataset_class / "raw"

    def _raw(self) -> tuple[torch.Tensor, ...]:
        """``(images_train uint8 (N,28,28), labels_train, images_test, labels_test)``, cached."""
        key = (self.dataset_class, str(self.root.resolve()))
        with _LOCK:
            if key not in _RAW:
                _RAW[key] = self._read_raw()
            return _RAW[key]

    def _read_raw(self) -> tuple[torch.Tensor, ...]:
        import torchvision

        cls = getattr(torchvision.datasets, self.dataset_class)
        try:
            train = cls(str(self.root), train=True, download=self.download)
            test = cls(str(self.root), train=False, download=self.download)
        except (RuntimeError, OSError) as err:
            how = (
                "download was attempted and failed"
                if self.download
                else "download is disabled (download=False)"
            )
            raise FileNotFoundError(
                f"task {self.name!r}: torchvision.datasets.{self.dataset_class} files not found in "
                f"'{self.raw_folder}' (torchvision looks there for train-images-idx3-ubyte, "
                f"train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte) and "
                f"{how}: {err}. To get them, run on a machine with internet "
                f"`python -c \"import torchvision; torchvision.datasets.{self.dataset_class}("
                f"'data', download=True)\"` and copy data/{self.dataset_class}/raw to "
                f"'{self.raw_folder}', or point data_root (or ${DATA_ROOT_ENV}) at a folder that "
                f"contains {self.dataset_class}/raw."
            ) from err
        return train.data, train.targets.long(), test.data, test.targets.long()

    def _preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, 28, 28)`` -> float32 ``(N, 784)``, normalised."""
        x = images.reshape(images.shape[0], -1).float().div_(255.0)
        return x.sub_(self.mean).div_(self.std)

    def data(self) -> TaskData:
        key = ("preprocessed", self.name, str(self.root.resolve()), self.seed)
        with _LOCK:
            cached = _RAW.get(key)
        if cached is None:
            xtr, ytr, xte, yte = self._raw()
            cached = (self._preprocess(xtr), ytr, self._preprocess(xte), yte)
            with _LOCK:
                _RAW[key] = cached
        return TaskData(*cached)

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "source": f"torchvision.datasets.{self.dataset_class} (raw IDX files)",
            "n_inputs": self.n_inputs,
            "n_classes": self.n_classes,
            "loss": "cross_entropy (mean over examples)",
            "split": "the dataset's own train (60000) / test (10000) files",
            "preprocessing": {
                "flatten": "row-major 28 x 28 -> 784",
                "scale": "x / 255",
                "normalize": "x' = (x - mean) / std",
                "mean": self.mean,
                "std": self.std,
            },
        }


class MNISTTask(TorchvisionTask):
    name = "mnist"
    dataset_class = "MNIST"
    mean, std = 0.1307, 0.3081


class FashionMNISTTask(TorchvisionTask):
    name = "fashion_mnist"
    dataset_class = "FashionMNIST"
    mean, std = 0.2860, 0.3530


class KMNISTTask(TorchvisionTask):
    name = "kmnist"
    dataset_class = "KMNIST"
    mean, std = 0.1918, 0.3483


class PermutedMNISTTask(MNISTTask):
    """MNIST with its 784 pixels shuffled by one fixed permutation (the offline transfer task).

    ``x'[:, j] = x[:, perm[j]]`` after MNIST's preprocessing, with
    ``perm = torch.randperm(784, generator=torch.Generator().manual_seed(seed))``. The labels and
    split are MNIST's. A network trained on MNIST is at chance level here, as an MNIST network
    is on Fashion-MNIST, yet the inputs have the same size and statistics, so transfer between
    the two can be tested without Fashion-MNIST's files. :meth:`metadata` lists ``perm``.
    """

    name = "mnist_permuted"

    @property
    def permutation(self) -> torch.Tensor:
        """``(784,)`` the fixed pixel order selected by ``seed``."""
        return torch.randperm(self.n_inputs, generator=torch.Generator().manual_seed(self.seed))

    def _preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return super()._preprocess(images)[:, self.permutation]

    def metadata(self) -> dict:
        meta = super().metadata()
        meta["preprocessing"]["permute"] = {
            "rule": "x'[:, j] = x[:, perm[j]] after normalisation",
            "seed": self.seed,
            "perm": self.permutation.tolist(),
        }
        return meta
