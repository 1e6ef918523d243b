"""WeightZooDataModule: a zoo of trained networks as batches of flat weight vectors.

Thin glue: the zoo is built by :mod:`lightning_wflow.zoo`, the data and loss come from
:mod:`lightning_wflow.tasks`, alignment and canonicalization from :mod:`lightning_wflow.symmetry`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader

from ..tasks import Task, get_task
from ..weights import POSITIVELY_HOMOGENEOUS, MLPSpec
from ..zoo import (
    Zoo,
    ZooCacheError,
    ZooCacheWarning,
    ZooConfig,
    build_zoo,
    sample_gaussian_zoo,
)
from ..zoo.store import read_manifest, read_tensors, write_manifest, write_tensors

__all__ = ["REFERENCES", "WeightZooDataModule"]

log = logging.getLogger(__name__)

#: How the alignment reference is chosen: ``best`` = final checkpoint of the training run with
#: the lowest training loss; ``first`` = final checkpoint of the first training run.
REFERENCES = ("best", "first")


def _is_int(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


class WeightZooDataModule(LightningDataModule):
    """Batches ``(B, P)`` of flat networks drawn from a zoo of training trajectories.

    ``prepare_data`` builds the zoo (or finds it in ``cache_dir``) and the aligned copy;
    ``setup`` loads them, holds out the last ``val_runs`` runs (whole trajectories) for
    validation and flattens runs x checkpoints into one set of networks per split. For the
    ``gaussian`` task the zoo is ``n_samples`` draws from ``N(gaussian_mean, gaussian_std^2 I)``
    (one "run" per draw).

    Args:
        task: base task name (:func:`lightning_wflow.tasks.available_tasks`).
        layer_sizes: MLP sizes ``(d_0, ..., d_L)`` of the zoo's networks.
        activation: MLP activation.
        data_root: torchvision data folder (``<root>/MNIST/raw``); ``None``:
            ``$LIGHTNING_WFLOW_DATA`` or ``./data``.
        download: let torchvision tasks download missing files.
        split_seed: task split seed (UCI) or pixel permutation seed (``mnist_permuted``).
        cache_dir: root of the zoo cache.
        n_runs: zoo training runs.
        epochs: epochs per zoo run.
        zoo_batch_size: minibatch size of zoo training.
        optimizer: zoo optimiser, ``"adam"`` or ``"sgd"``.
        lr: zoo learning rate.
        momentum: SGD momentum of zoo training.
        weight_decay: L2 coefficient of zoo training.
        init_mean: zoo prior initialisation mean.
        init_std: zoo prior initialisation standard deviation.
        burn_in_epochs: leading epochs not recorded.
        record_every: record every k-th iteration after the burn-in.
        zoo_seed: seed of the zoo runs (or of the Gaussian draws).
        chunk_runs: runs trained together and stored per file (unit of resumption).
        zoo_device: device of zoo training (``None``: CPU).
        n_samples: Gaussian task: number of draws.
        gaussian_mean: Gaussian task: mean of every coordinate.
        gaussian_std: Gaussian task: standard deviation of every coordinate.
        batch_size: networks per flow-training batch.
        val_runs: whole runs (trajectories; draws for ``gaussian``) held out for validation.
        num_workers: DataLoader workers.
        alignment: ``"none"`` or a method of :func:`lightning_wflow.symmetry.align`.
        alignment_kwargs: options passed on to the alignment method.
        reference: alignment reference, one of :data:`REFERENCES`.
        canonicalize: bring every network to the canonical ReLU scale (after alignment).
        progress: show progress bars while building the zoo.
    """

    def __init__(
        self,
        task: str,
        layer_sizes: list[int],
        activation: str = "relu",
        data_root: str | None = None,
        download: bool = True,
        split_seed: int = 0,
        cache_dir: str = "logs/zoo_cache",
        n_runs: int = 100,
        epochs: int = 50,
        zoo_batch_size: int = 32,
        optimizer: str = "adam",
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        init_mean: float = 0.0,
        init_std: float = 0.31622776601683794,
        burn_in_epochs: int = 10,
        record_every: int = 4,
        zoo_seed: int = 0,
        chunk_runs: int = 50,
        zoo_device: str | None = None,
        n_samples: int = 1024,
        gaussian_mean: float = 1.0,
        gaussian_std: float = 1.0,
        batch_size: int = 32,
        val_runs: int = 10,
        num_workers: int = 0,
        alignment: str = "none",
        alignment_kwargs: dict | None = None,
        reference: str = "best",
        canonicalize: bool = False,
        progress: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.task = task
        self.layer_sizes = list(layer_sizes)
        self.activation = activation
        self.data_root = data_root
        self.cache_dir = cache_dir
        self.chunk_runs = chunk_runs
        self.zoo_device = zoo_device
        self.download = download
        self.n_samples = n_samples
        self.gaussian_mean = gaussian_mean
        self.gaussian_std = gaussian_std
        self.zoo_seed = zoo_seed
        self.batch_size = batch_size
        self.val_runs = val_runs
        self.num_workers = num_workers
        self.alignment = alignment
        self.alignment_kwargs = dict(alignment_kwargs or {})
        self.reference = reference
        self.canonicalize = canonicalize
        self.progress = progress

        self._task = get_task(task, data_root=data_root, seed=split_seed, download=download)
        self._spec = MLPSpec(tuple(self.layer_sizes), activation)
        self._task.check_spec(self._spec)
        self._zoo_config: ZooConfig | None = None
        if self._task.has_data:
            self._zoo_config = ZooConfig(
                task=task, layer_sizes=tuple(self.layer_sizes), activation=activation,
                n_runs=n_runs, epochs=epochs, batch_size=zoo_batch_size, optimizer=optimizer,
                lr=lr, momentum=momentum, weight_decay=weight_decay, init_mean=init_mean,
                init_std=init_std, burn_in_epochs=burn_in_epochs, record_every=record_every,
                seed=zoo_seed, split_seed=split_seed, data_root=data_root,
            ).validate()
        self._validate()

        self._zoo: Zoo | None = None
        self._weights: Tensor | None = None  # (R, T, P) after alignment / canonicalization
        self._aligned_weights: Tensor | None = None  # (R, T, P) kept from prepare_data
        self._reference_index: int | None = None

    # ------------------------------------------------------------ validation
    def _validate(self) -> None:
        from ..symmetry import METHODS

        n_total = self.n_runs_total
        what = "n_runs" if self._task.has_data else "n_samples"
        if not self._task.has_data:
            if not _is_int(self.n_samples, 2):
                raise ValueError(f"n_samples must be an integer >= 2, got {self.n_samples!r}")
            if not self.gaussian_std > 0:
                raise ValueError(f"gaussian_std must be > 0, got {self.gaussian_std}")
        if not _is_int(self.val_runs, 1) or self.val_runs >= n_total:
            raise ValueError(
                f"val_runs must be an integer in [1, {what} - 1 = {n_total - 1}] (whole runs held "
                f"out for validation), got {self.val_runs!r}"
            )
        if not _is_int(self.batch_size, 1):
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not _is_int(self.num_workers, 0):
            raise ValueError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")
        if self.alignment not in METHODS:
            raise ValueError(f"alignment must be one of {list(METHODS)}, got {self.alignment!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {list(REFERENCES)}, got {self.reference!r}")
        if self.alignment == "none" and self.alignment_kwargs:
            raise ValueError(
                f"alignment_kwargs {sorted(self.alignment_kwargs)} given but alignment is 'none'"
            )
        if not self._task.has_data and self.alignment != "none":
            if self.reference == "best":
                raise ValueError(
                    f"reference 'best' needs a task loss; task {self.task!r} has none (use 'first')"
                )
            if self.alignment in ("sinkhorn_mid", "sinkhorn_rnd"):
                raise ValueError(
                    f"alignment {self.alignment!r} needs a task loss; task {self.task!r} has none"
                )
        if self.canonicalize and self.activation not in POSITIVELY_HOMOGENEOUS:
            raise ValueError(
                f"canonicalize needs a positively homogeneous activation "
                f"({sorted(POSITIVELY_HOMOGENEOUS)}), got activation {self.activation!r}"
            )

    # ------------------------------------------------------------ properties
    @property
    def spec(self) -> MLPSpec:
        """Architecture of the zoo's networks."""
        return self._spec

    @property
    def task_obj(self) -> Task:
        """The base task (data, loss, metrics)."""
        return self._task

    @property
    def zoo_config(self) -> ZooConfig | None:
        """The zoo's configuration (``None`` for tasks without data)."""
        return self._zoo_config

    @property
    def n_runs_total(self) -> int:
        """Runs in the zoo (draws for the Gaussian task)."""
        return self._zoo_config.n_runs if self._zoo_config is not None else self.n_samples

    @property
    def zoo(self) -> Zoo:
        """The zoo as stored (before alignment); available after :meth:`setup`."""
        if self._zoo is None:
            raise RuntimeError(
                "the zoo is loaded by setup(); call prepare_data() and setup() first"
            )
        return self._zoo

    @property
    def weights(self) -> Tensor:
        """``(R, T, P)`` all runs after alignment and canonicalization."""
        if self._weights is None:
            raise RuntimeError("weights are available after setup()")
        return self._weights

    @property
    def train_run_ids(self) -> list[int]:
        return list(range(self.n_runs_total - self.val_runs))

    @property
    def val_run_ids(self) -> list[int]:
        """The last ``val_runs`` runs (runs are i.i.d., so the last ones are as good as any)."""
        return list(range(self.n_runs_total - self.val_runs, self.n_runs_total))

    @property
    def train_weights(self) -> Tensor:
        """``(N_train, P)``: every checkpoint of the training runs, run-major."""
        return self.weights[: len(self.train_run_ids)].reshape(-1, self.spec.n_params)

    @property
    def val_weights(self) -> Tensor:
        """``(N_val, P)``: every checkpoint of the held-out runs, run-major."""
        return self.weights[len(self.train_run_ids) :].reshape(-1, self.spec.n_params)

    @property
    def target_accuracy(self) -> Tensor | None:
        """``(R,)`` test accuracy of each run's final network (``None`` without data)."""
        return self.zoo.target_accuracy

    @property
    def reference_index(self) -> int | None:
        """Run whose final checkpoint is the alignment reference (``None`` without alignment)."""
        return self._reference_index

    # ------------------------------------------------------------- lifecycle
    def _get_zoo(self) -> Zoo:
        if self._zoo is None:
            if self._zoo_config is None:
                self._zoo = sample_gaussian_zoo(
                    self.spec, self.n_samples, self.gaussian_mean, self.gaussian_std, self.zoo_seed
                )
            else:
                self._zoo = build_zoo(
                    self._zoo_config, cache_dir=self.cache_dir, progress=self.progress,
                    chunk_runs=self.chunk_runs, device=self.zoo_device, download=self.download,
                )
        return self._zoo

    def prepare_data(self) -> None:
        """Build or find the zoo and its aligned copy (Lightning calls this once per node)."""
        zoo = self._get_zoo()
        if self.alignment != "none" and zoo.path is not None:
            self._aligned(zoo)

    def setup(self, stage: str | None = None) -> None:
        """Load the zoo, align and canonicalize it, and split whole runs into train and val."""
        if self._weights is not None:
            return
        zoo = self._get_zoo()
        weights = zoo.weights
        if self.alignment != "none":
            weights = self._aligned(zoo)
        if self.canonicalize:
            from ..symmetry import canonicalize

            flat = canonicalize(
                self.spec, weights.reshape(-1, self.spec.n_params),
                last_layer_sphere=self._task.n_classes is not None,
            )
            weights = flat.view_as(weights)
        self._weights = weights

    # ------------------------------------------------------------- alignment
    def _select_reference(self, zoo: Zoo) -> int:
        n_train = len(self.train_run_ids)
        if self.reference == "first":
            return 0
        from ..symmetry import select_reference

        # Chosen by training loss among training runs only: neither test data nor the
        # held-out runs influence the reference.
        losses = self._task.evaluate(self.spec, zoo.final[:n_train], split="train").loss
        return select_reference(zoo.final[:n_train], losses)

    def _alignment_settings(self, zoo: Zoo) -> dict:
        return {
            "zoo_key": zoo.manifest.get("key"),
            "alignment": self.alignment,
            "alignment_kwargs": self.alignment_kwargs,
            "reference": self.reference,
            "val_runs": self.val_runs,
        }

    def _aligned(self, zoo: Zoo) -> Tensor:
        """``(R, T, P)`` the zoo aligned to the reference, cached next to a stored zoo."""
        if self._aligned_weights is not None:
            return self._aligned_weights
        settings = json.loads(json.dumps(self._alignment_settings(zoo), default=repr))
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        folder = None
        if zoo.path is not None:
            folder = Path(zoo.path) / "aligned" / f"{self.alignment}_{digest}"
            cached = self._load_aligned(folder, settings, tuple(zoo.weights.shape))
            if cached is not None:
                self._aligned_weights = cached
                return cached
        from ..symmetry import align

        ref = self._select_reference(zoo)
        loss_fn = self._task.loss_fn(self.spec) if self._task.has_data else None
        flat = zoo.weights.reshape(-1, self.spec.n_params)
        log.info("aligning %d networks to run %d with %s", flat.shape[0], ref, self.alignment)
        result = align(
            self.spec, flat, zoo.final[ref], self.alignment, loss_fn=loss_fn,
            **self.alignment_kwargs,
        )
        aligned = result.aligned.detach().to("cpu", torch.float32).reshape(zoo.weights.shape)
        self._reference_index = ref
        self._aligned_weights = aligned
        if folder is not None:
            name = "aligned.safetensors"
            entry = write_tensors(folder / name, {"weights": aligned})
            write_manifest(
                folder, {"settings": settings, "file": name, "reference_index": ref, **entry}
            )
        return aligned

    def _load_aligned(self, folder: Path, settings: dict, shape: tuple[int, ...]) -> Tensor | None:
        """The cached aligned weights, or ``None`` (with a warning when the entry is unusable)."""
        try:
            manifest = read_manifest(folder)
            if manifest is None:
                return None
            if manifest.get("settings") != settings:
                raise ZooCacheError("its settings differ from the requested alignment")
            weights = read_tensors(folder / manifest["file"], manifest).get("weights")
            if weights is None or tuple(weights.shape) != shape:
                raise ZooCacheError(f"it does not hold weights of shape {shape}")
            self._reference_index = int(manifest["reference_index"])
            return weights
        except (ZooCacheError, KeyError, TypeError, ValueError) as err:
            warnings.warn(
                f"aligned zoo cache {folder} is unusable ({err}); recomputing",
                ZooCacheWarning,
                stacklevel=3,
            )
            return None

    # ----------------------------------------------------------- dataloaders
    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_weights, batch_size=self.batch_size, shuffle=True,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_weights, batch_size=self.batch_size, shuffle=False,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
        )

    def test_dataloader(self) -> DataLoader:
        """``test`` evaluates the flow on the held-out trajectories (and runs the callbacks)."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        """Indices of the networks to draw: ``0 .. model.sampling.n_samples - 1``.

        ``predict`` draws networks rather than reading data; the indices select which of
        the seeded prior draws each rank integrates, so a DDP run draws the same networks
        as a single process.
        """
        sampling = self.trainer.lightning_module.sampling
        return DataLoader(torch.arange(sampling.n_samples), batch_size=sampling.batch_size, shuffle=False)
